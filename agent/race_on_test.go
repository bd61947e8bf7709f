//go:build race

package agent_test

// The agent binary is built with the race detector when the tests are.
var buildFlags = []string{"-race"}
