//go:build !race

package agent_test

var buildFlags []string
