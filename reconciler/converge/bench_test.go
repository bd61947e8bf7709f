package converge_test

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkDeployBookkeeping converges a 100-instance group from nothing on the fake CPI
// and fake agents: what is left is converge's own work, mostly its Postgres round trips
// (instance, VM, intent and applied-state rows) per instance.
func BenchmarkDeployBookkeeping(b *testing.B) {
	ctx := ctxFor(b, 10*time.Minute)
	h, _, _ := newFakeHarness(b, nil)
	h.subnet = "10.1.0"
	n := 0
	for b.Loop() {
		n++
		h.name = fmt.Sprintf("bench-%d", n)
		res := h.deploy(ctx, spec{instances: 100, greeting: "hi", diskMiB: 10, canaries: "1", inFlight: "20", watch: "0-1000"})
		if res.Failure != nil || res.Created != 100 {
			b.Fatalf("%+v %+v", res, res.Failure)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n*100)/1000, "ms/instance")
}
