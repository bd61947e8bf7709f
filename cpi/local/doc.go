// Package local is the CPI whose VMs are bosun-agent processes on this machine, each
// with its own root directory and loopback address.
package local
