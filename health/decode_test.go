package health

import (
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
