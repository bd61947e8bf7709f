package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/reconciler"
)

// newDriftAgents returns the agent client the drift check asks get_state; nil leaves the
// agents out of it (VMs are still compared with the cloud).
var newDriftAgents = func(d *director) (reconciler.Agents, error) {
	if d.nats == nil {
		return nil, nil
	}
	// A client of its own, under a director id of its own, so the drift check's calls never
	// wait behind a rollout's; short timeouts, as an agent that does not answer is itself
	// the finding.
	var b [6]byte
	_, _ = rand.Read(b[:])
	c, err := protocol.NewClient(bus.Conn{NC: d.nats}, "drift-"+hex.EncodeToString(b[:]), protocol.ClientOptions{
		Timeouts:        map[string]time.Duration{protocol.MethodGetState: 10 * time.Second},
		GetStateRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("drift agent client: %w", err)
	}
	return c, nil
}
