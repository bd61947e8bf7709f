package agent

import (
	"encoding/json"
	"testing"

	"github.com/bosun-gitops/bosun/agent/protocol"
)

type discard struct{}

func (discard) Publish(string, []byte) error { return nil }
func (discard) Subscribe(string, func(string, []byte)) (func() error, error) {
	return func() error { return nil }, nil
}

func newTestAgent(b *testing.B) *Agent {
	a, err := New(Settings{AgentID: "a", Mbus: "x"}, discard{}, Options{Root: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	a.spec = protocol.ApplySpec{Deployment: "d", Name: "web", ID: "uuid", Job: protocol.JobSpec{Name: "web", Templates: []protocol.JobTemplate{{Name: "web"}}}}
	return a
}

// BenchmarkHeartbeat measures building one heartbeat: vitals from /proc and statfs,
// job state, JSON encoding.
func BenchmarkHeartbeat(b *testing.B) {
	a := newTestAgent(b)
	for b.Loop() {
		a.heartbeat()
	}
}

// BenchmarkHeartbeatDecode measures what a health monitor pays per heartbeat.
func BenchmarkHeartbeatDecode(b *testing.B) {
	a := newTestAgent(b)
	msg := a.heartbeat()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		var hb protocol.Heartbeat
		if err := json.Unmarshal(msg, &hb); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHeartbeatEncode isolates JSON encoding from reading /proc.
func BenchmarkHeartbeatEncode(b *testing.B) {
	a := newTestAgent(b)
	var hb protocol.Heartbeat
	if err := json.Unmarshal(a.heartbeat(), &hb); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := json.Marshal(hb); err != nil {
			b.Fatal(err)
		}
	}
}
