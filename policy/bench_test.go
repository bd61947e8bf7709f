package policy

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// fleet is a deployment of n instance groups of `instances` instances, two jobs each.
func fleet(name string, n, instances int, stemcell, mif string) map[string]any {
	igs := make([]any, n)
	for i := range igs {
		igs[i] = map[string]any{
			"name": fmt.Sprintf("ig-%03d", i), "instances": instances, "azs": []any{"z1", "z2"},
			"vm_type": "small", "stemcell": "default", "networks": []any{map[string]any{"name": "default"}},
			"jobs": []any{
				map[string]any{"name": "app", "release": "app", "properties": map[string]any{
					"port": 8080 + instances, "log_level": "info", "db": map[string]any{"password": "pw", "host": "db.internal"},
				}},
				map[string]any{"name": "bpm", "release": "bpm"},
			},
		}
	}
	return map[string]any{
		"name":            name,
		"releases":        []any{map[string]any{"name": "app", "version": "1.2.3"}, map[string]any{"name": "bpm", "version": "1.1.0"}},
		"stemcells":       []any{map[string]any{"alias": "default", "os": "ubuntu-jammy", "version": stemcell}},
		"update":          map[string]any{"canaries": 1, "max_in_flight": mif, "canary_watch_time": 1000, "update_watch_time": 1000},
		"instance_groups": igs,
	}
}

// hundredGroupChange scales, reconfigures and moves the stemcell of 100 instance groups.
func hundredGroupChange() Input {
	return Input{
		Commit:   Commit{SHA: "0123456789abcdef", Message: "Scale everything\n\nBosun-Allow-Delete: old\n"},
		Previous: Snapshot{Deployments: map[string]any{"web-prod": fleet("web-prod", 100, 4, "1.500", "1")}},
		Proposed: Snapshot{Deployments: map[string]any{"web-prod": fleet("web-prod", 100, 6, "1.400", "75%")}},
	}
}

func templateEngine(b testing.TB) *Engine {
	e, err := Load(context.Background(), os.DirFS("../repo-template"), "policies")
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// TestBenchmarkInputIsJudged keeps the benchmark honest: its change trips the template's
// rules, so the benchmark measures real work.
func TestBenchmarkInputIsJudged(t *testing.T) {
	d, err := templateEngine(t).Evaluate(context.Background(), hundredGroupChange())
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Denies) != 1 || len(d.Warnings) != 100 {
		t.Fatalf("want 1 deny (stemcell) and 100 warnings (max_in_flight), got %d and %d: %v", len(d.Denies), len(d.Warnings), d.Denies)
	}
}

// BenchmarkEvaluate is the gate's cost per commit: diff, redaction, conversion to an OPA
// value of the part of input the rules read, and every rule of the repo-template
// policies, against a 100-instance-group change.
func BenchmarkEvaluate(b *testing.B) {
	e, in := templateEngine(b), hundredGroupChange()
	ctx := context.Background()
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := e.Evaluate(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateFullInput is the same with the whole input built, as Evaluate did
// before it pruned to what the rules read.
func BenchmarkEvaluateFullInput(b *testing.B) {
	e, in := templateEngine(b), hundredGroupChange()
	ctx := context.Background()
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := e.EvaluateValue(ctx, InputValue(in)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateValue is the rules alone, on the whole input converted beforehand.
func BenchmarkEvaluateValue(b *testing.B) {
	e, in := templateEngine(b), hundredGroupChange()
	v := InputValue(in)
	ctx := context.Background()
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := e.EvaluateValue(ctx, v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		templateEngine(b)
	}
}

// reportCPU adds the process's CPU time per op (user+system, GC included): on a shared,
// loaded machine wall time measures the neighbours as much as the code.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op") }
}

// BenchmarkInput is building the whole input: diff, redaction and conversion.
func BenchmarkInput(b *testing.B) {
	in := hundredGroupChange()
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		InputValue(in)
	}
}

// BenchmarkInputPruned is Evaluate's own share: building what the template's rules read.
func BenchmarkInputPruned(b *testing.B) {
	e, in := templateEngine(b), hundredGroupChange()
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		buildInput(in, e.need)
	}
}
