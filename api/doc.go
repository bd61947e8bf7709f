// Package api owns the director's HTTP API and the Go client the CLI uses.
package api
