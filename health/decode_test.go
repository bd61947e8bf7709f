package health

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/bosun-gitops/bosun/state"
)

func FuzzDecodeHeartbeat(f *testing.F) {
	f.Add(realisticHeartbeat(state.Instance{ID: "i-1", Deployment: "d", Group: "web"}))
	for _, s := range []string{
		`{}`, `null`, `[1]`, `"x"`, `{"deployment":null,"job_state":"running"}`, `{"JOB_STATE":"failing"}`,
		`{"node_id":"a\"b"}`, `{"deployment":"dé"}`, `{"deployment":1}`, `{"job_state":"a","job_state":"b"}`,
		`{"job_state":"a","job_state":null}`, `{"vitals":{"x":[1,{"y":"}"}]},"node_id":"n"}`, ` { "node_id" : "n" } `,
		`{"a":true,"b":false,"c":null,"d":-1.5e3,"node_id":"n"}`, `{"deployment":"d"`, `{"node_id":"n",}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast, std heartbeatWire
		errFast := decodeHeartbeat(data, &fast)
		errStd := json.Unmarshal(data, &std)
		if errStd != nil {
			if errFast == nil {
				t.Fatalf("%q: fast decode accepted what json.Unmarshal rejects (%v): %+v", data, errStd, fast)
			}
			return
		}
		if errFast != nil {
			if errFast != errNotObject {
				t.Fatalf("%q: fast decode rejected what json.Unmarshal takes: %v", data, errFast)
			}
			return
		}
		if fast != std {
			t.Fatalf("%q: fast %+v, json.Unmarshal %+v", data, fast, std)
		}
	})
}

// BenchmarkDecodeHeartbeat compares the monitor's decode with encoding/json's on a
// stock agent's heartbeat, in one run.
func BenchmarkDecodeHeartbeat(b *testing.B) {
	msg := realisticHeartbeat(state.Instance{ID: "00000000-0000-4000-8000-000000000000", Deployment: "dep-000", Group: "web"})
	b.Run("monitor", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			var hb heartbeatWire
			if err := decodeHeartbeat(msg, &hb); err != nil {
				b.Fatal(err)
			}
		}
		cpu.report(b, b.N)
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			var hb heartbeatWire
			if err := json.Unmarshal(msg, &hb); err != nil {
				b.Fatal(err)
			}
		}
		cpu.report(b, b.N)
	})
}

// FuzzHandleMessages: no subject or payload crashes the monitor or counts as a
// heartbeat unless it is one.
func FuzzHandleMessages(f *testing.F) {
	f.Add("hm.agent.heartbeat.a1", []byte(`{"job_state":"running","node_id":"00000000-0000-4000-8000-000000000000"}`))
	f.Add("hm.agent.alert.a1", []byte(`{"id":"x","severity":2,"title":"t","summary":"s","created_at":-1}`))
	f.Add("hm.agent.heartbeat.", []byte(`{}`))
	f.Add("hm.agent.heartbeat.a.b", []byte(`{}`))
	f.Add("hm.agent.alert.a1", []byte(`{"severity":"high"}`))
	f.Add("hm.agent.heartbeat.a1", []byte("\xff\xfe"))
	inv := newMemInventory(1, 2)
	m, err := New(Config{MaxMessageBytes: 1024}, inv, inv, nil)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := m.Analyze(context.Background()); err != nil {
		f.Fatal(err)
	}
	m.leader.Store(true)
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		before := m.Stats()
		m.HandleHeartbeat(subject, data)
		m.HandleAlert(subject, data)
		after := m.Stats()
		if after.Heartbeats > before.Heartbeats {
			var hb heartbeatWire
			if decodeHeartbeat(data, &hb) != nil {
				t.Fatalf("%q on %s counted as a heartbeat", data, subject)
			}
		}
	})
}
