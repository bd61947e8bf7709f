// Package agent owns the VM agent: it answers the director over NATS, installs jobs
// and packages, supervises processes and publishes heartbeats.
package agent
