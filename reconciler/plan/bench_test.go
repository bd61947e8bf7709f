package plan

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time: on a shared, loaded machine it says more
// about the planner's cost than wall time does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loop(b *testing.B, f func() error) {
	b.ReportAllocs()
	start := cpuTime()
	n := 0
	for b.Loop() {
		if err := f(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/1000/float64(n), "cpu-ms/op")
}

// benchDeployment is 1,000 instance groups of 10 instances over three AZs, each AZ with a
// /18 subnet of one shared network.
func benchDeployment() Desired {
	d := Desired{Name: "big", Cloud: testCloud()}
	for i := range d.Cloud.Networks[0].Subnets {
		s := &d.Cloud.Networks[0].Subnets[i]
		s.Range = fmt.Sprintf("10.%d.0.0/18", i+1)
		s.Gateway = fmt.Sprintf("10.%d.0.1", i+1)
		s.Reserved = []string{fmt.Sprintf("10.%d.0.2-10.%d.0.20", i+1, i+1)}
		s.Static = nil
	}
	for i := range 1000 {
		d.Groups = append(d.Groups, testGroup(fmt.Sprintf("g%04d", i), 10))
	}
	return d
}

func BenchmarkCompute(b *testing.B) {
	d := benchDeployment()
	fresh, err := Compute(d, Observed{}, Options{NewID: ids()})
	if err != nil {
		b.Fatal(err)
	}
	deployed := apply(fresh)
	b.Run("fresh", func(b *testing.B) {
		loop(b, func() error { _, err := Compute(d, Observed{}, Options{NewID: ids()}); return err })
	})
	b.Run("no-change", func(b *testing.B) {
		loop(b, func() error {
			p, err := Compute(d, deployed, Options{})
			if err == nil && !p.Empty() {
				err = fmt.Errorf("a no-change plan is not empty")
			}
			return err
		})
	})
	changed := benchDeployment()
	for i := range changed.Groups {
		changed.Groups[i].Jobs[0].Hash = "web-v2"
	}
	b.Run("all-jobs-changed", func(b *testing.B) {
		loop(b, func() error { _, err := Compute(changed, deployed, Options{}); return err })
	})
	// Every group consumes a link the next one provides; the providers scale 10 → 11, so
	// every consumer's link fingerprint moves.
	linked := benchDeployment()
	for i := range linked.Groups {
		linked.Groups[i].Links = []string{linked.Groups[(i+1)%len(linked.Groups)].Name}
	}
	linkedDeployed := apply(mustComputeB(b, linked, Observed{}, Options{NewID: ids()}))
	scaled := benchDeployment()
	for i := range scaled.Groups {
		scaled.Groups[i].Links = linked.Groups[i].Links
		scaled.Groups[i].Instances = 11
	}
	b.Run("links-no-change", func(b *testing.B) {
		loop(b, func() error { _, err := Compute(linked, linkedDeployed, Options{}); return err })
	})
	b.Run("links-providers-scaled", func(b *testing.B) {
		loop(b, func() error { _, err := Compute(scaled, linkedDeployed, Options{NewID: idsFrom(100_000)}); return err })
	})
	// A new stemcell recreates every instance create-swap-delete: each needs a second
	// address while its old VM holds the first.
	csd := benchDeployment()
	for i := range csd.Groups {
		csd.Groups[i].Update.VMStrategy = CreateSwapDelete
		csd.Groups[i].Stemcell.Version = "1.11"
	}
	b.Run("create-swap-delete-all", func(b *testing.B) {
		loop(b, func() error { _, err := Compute(csd, deployed, Options{}); return err })
	})
}

// BenchmarkComputeOneLargeGroup guards against costs quadratic in a group's size.
func BenchmarkComputeOneLargeGroup(b *testing.B) {
	d := benchDeployment()
	d.Groups = []Group{testGroup("big", 10_000)}
	deployed := apply(mustComputeB(b, d, Observed{}, Options{NewID: ids()}))
	d.Groups[0].Instances = 9_000
	b.Run("scale-down", func(b *testing.B) {
		loop(b, func() error { _, err := Compute(d, deployed, Options{}); return err })
	})
}

func mustComputeB(b *testing.B, d Desired, o Observed, opts Options) Plan {
	b.Helper()
	p, err := Compute(d, o, opts)
	if err != nil {
		b.Fatal(err)
	}
	return p
}
