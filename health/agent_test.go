package health

import (
	"context"
	"testing"
	"time"

	boshagent "github.com/bosun-gitops/bosun/agent"
	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/state"
)

// The real agent's heartbeats, over the real bus with its own credentials, keep its
// instance healthy; when the agent stops, the instance is resurrected.
func TestRealAgentHeartbeatsThenDies(t *testing.T) {
	e := newEnv(t, Config{AgentTimeout: time.Minute})
	insts := e.deploy("web", map[string]int{"web": 1})
	e.analyze()
	nc := e.connect(e.nats.AgentURL("web-web-0"))
	a, err := boshagent.New(boshagent.Settings{AgentID: "web-web-0", Mbus: e.nats.AgentURL("web-web-0")}, bus.Conn{NC: nc},
		boshagent.Options{Root: t.TempDir(), HeartbeatInterval: 20 * time.Millisecond, Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent run: %v", err)
			}
		}
	}
	defer stop()

	for range 3 {
		e.clock.Advance(45 * time.Second)
		at := e.clock.Now()
		waitFor(t, "the agent's heartbeat", func() bool { return !e.m.LastHeartbeat("web-web-0").Before(at) })
		if rep := e.analyze(); len(rep.Unresponsive) > 0 {
			t.Fatalf("heartbeating agent unresponsive: %+v", rep)
		}
	}
	stop()
	// Heartbeats sent just before the stop may still be on their way: once the server
	// has the agent's last message (flush) and the monitor has a later one from another
	// sender, none is left to arrive after the clock moves.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	e.heartbeatSeen(e.agent("marker"), state.Instance{}, "running")
	e.clock.Advance(61 * time.Second)
	rep := e.analyze()
	if len(rep.Unresponsive) != 1 || len(rep.Enqueued) != 1 {
		t.Fatalf("after the agent stopped: %+v", rep)
	}
	if p := resurrectParams(t, e.tasks("web")[0]); len(p.Instances) != 1 || p.Instances[0] != insts["web-web-0"].ID {
		t.Errorf("params = %+v", p)
	}
	if st := e.m.Stats(); st.Dropped != 0 {
		t.Errorf("the real agent's heartbeats were dropped: %+v", st)
	}
}
