package manifest

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

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

// bigManifest is a deployment of n instance groups (about 30 lines each) with placeholders,
// and ten ops files touching every part of it.
func bigManifest(n int) (string, []string) {
	var b strings.Builder
	b.WriteString("name: big\nreleases:\n- {name: r, version: latest}\nstemcells:\n- {alias: default, os: ubuntu-jammy, version: latest}\n")
	b.WriteString("update: {canaries: 1, max_in_flight: 10%, canary_watch_time: 1000-30000, update_watch_time: 1000-30000}\ninstance_groups:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `- name: ig%d
  instances: 2
  azs: [z1, z2]
  vm_type: ((vm_type))
  stemcell: default
  networks:
  - name: default
  jobs:
  - name: job%d
    release: r
    properties:
      password: ((pw%d))
      url: https://((host)):((port))/ig%d
      tls:
        ca: ((ca.ca))
        certificate: ((ca.certificate))
      limits:
        cpu: 2
        memory: 512
        tags: [a, b, c]
  - name: agent
    release: r
    properties:
      enabled: true
      level: info
  env:
    bosh:
      swap_size: 0
  update:
    max_in_flight: 1
`, i, i, i%50, i)
	}
	b.WriteString("variables:\n")
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&b, "- {name: pw%d, type: password}\n", i)
	}
	b.WriteString("- {name: ca, type: certificate, options: {is_ca: true, common_name: ca}}\n")
	var ops []string
	for k := 0; k < 10; k++ {
		var o strings.Builder
		for i := k; i < n; i += 10 {
			fmt.Fprintf(&o, "- {type: replace, path: /instance_groups/name=ig%d/instances, value: 3}\n", i)
			fmt.Fprintf(&o, "- {type: replace, path: \"/instance_groups/name=ig%d/jobs/name=agent/properties/extra?\", value: {k: ((host))}}\n", i)
		}
		fmt.Fprintf(&o, "- {type: replace, path: \"/tags?/op%d\", value: x}\n", k)
		ops = append(ops, o.String())
	}
	return b.String(), ops
}

func benchVars() StaticVars {
	s := StaticVars{"vm_type": Scalar("small", Pos{}), "host": Scalar("h.example", Pos{}), "port": Scalar(443, Pos{})}
	for i := 0; i < 50; i++ {
		s[fmt.Sprintf("pw%d", i)] = Scalar(fmt.Sprintf("secret%d", i), Pos{})
	}
	s["ca"] = &Node{Kind: MapNode, Pairs: []Pair{{Scalar("ca", Pos{}), Scalar("CA", Pos{})}, {Scalar("certificate", Pos{}), Scalar("CERT", Pos{})}}}
	return s
}

// BenchmarkInterpolate is bosun interpolate's work on a ~3,000-line manifest with ten ops
// files: parse everything, apply ops, interpolate, print.
func BenchmarkInterpolate(b *testing.B) {
	doc, opsTexts := bigManifest(100)
	static := benchVars()
	defer b.ReportMetric(float64(strings.Count(doc, "\n")), "lines")
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		n, err := Parse("m.yml", []byte(doc))
		if err != nil {
			b.Fatal(err)
		}
		var ops []Op
		for i, o := range opsTexts {
			parsed, err := ParseOps(fmt.Sprintf("ops%d.yml", i), []byte(o))
			if err != nil {
				b.Fatal(err)
			}
			ops = append(ops, parsed...)
		}
		out, err := Render(n, RenderOptions{Ops: ops, Static: static, InterpolateOptions: InterpolateOptions{ExpectAllKeys: true}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Marshal(out); err != nil {
			b.Fatal(err)
		}
	}
}

func storeManifest() *Node {
	var b strings.Builder
	b.WriteString("variables:\n- {name: ca, type: certificate, options: {is_ca: true, common_name: ca}}\n")
	for i := 0; i < 99; i++ {
		fmt.Fprintf(&b, "- {name: cert%d, type: certificate, options: {ca: ca, common_name: c%d.example, alternative_names: [c%d.example]}}\n", i, i, i)
	}
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&b, "- {name: pw%d, type: password}\n", i)
	}
	return mustParse(nil, b.String())
}

// BenchmarkVarsStoreGenerate generates a store of 100 certificates (2048-bit keys, one CA)
// and 50 passwords from nothing, keys made in parallel on every core. cpu-ns/op is the
// process's CPU time: against wall time it shows how well the cores were used.
func BenchmarkVarsStoreGenerate(b *testing.B) {
	dir := b.TempDir()
	defer reportCPU(b)()
	for i := 0; b.Loop(); i++ {
		store, err := OpenStore(filepath.Join(dir, fmt.Sprintf("s%d.yml", i)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Interpolate(storeManifest(), StaticVars{}, store, InterpolateOptions{ExpectAllKeys: true}); err != nil {
			b.Fatal(err)
		}
		if err := store.Save(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVarsStoreComplete re-runs against the complete store: nothing to generate.
func BenchmarkVarsStoreComplete(b *testing.B) {
	path := filepath.Join(b.TempDir(), "s.yml")
	store, err := OpenStore(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := Interpolate(storeManifest(), StaticVars{}, store, InterpolateOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := store.Save(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		store, err := OpenStore(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Interpolate(storeManifest(), StaticVars{}, store, InterpolateOptions{ExpectAllKeys: true}); err != nil {
			b.Fatal(err)
		}
		if store.Changed() {
			b.Fatal("complete store changed")
		}
	}
}
