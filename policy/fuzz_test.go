package policy

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"gopkg.in/yaml.v3"
)

// FuzzDiff: any two YAML documents as deployment manifests diff, redact and convert
// without panicking.
func FuzzDiff(f *testing.F) {
	f.Add(webV1, webV2)
	f.Add("instance_groups: 3", "instance_groups: [1, {name: 2}, {name: x, jobs: {a: b}}]")
	f.Add("stemcells: [{alias: a, version: 1}]", "stemcells: [{alias: a, version: [x]}]\n? [a]\n: b")
	f.Fuzz(func(t *testing.T, a, b string) {
		var ma, mb any
		if yaml.Unmarshal([]byte(a), &ma) != nil || yaml.Unmarshal([]byte(b), &mb) != nil {
			return
		}
		prev := Snapshot{Deployments: map[string]any{"d": ma}, CloudConfig: mapOf(ma)}
		next := Snapshot{Deployments: map[string]any{"d": mb}}
		Diff(prev, next)
		in := Input{Previous: prev, Proposed: next, Secrets: []string{a}}
		full := InputValue(in)
		n := &need{}
		n.add([]step{{key: "proposed"}, {key: "deployments"}, {key: "d"}, {key: "instance_groups"}})
		n.add([]step{{key: "previous"}, {key: "cloud_config"}, {key: "name"}})
		n.add([]step{{key: "changes"}, {key: "created"}})
		pruned := buildInput(in, n.normalize())
		for _, p := range []string{"proposed.deployments.d.instance_groups", "previous.cloud_config.name", "changes.created"} {
			want, werr := full.Find(ast.MustParseRef("x." + p)[1:])
			got, gerr := pruned.Find(ast.MustParseRef("x." + p)[1:])
			if (werr == nil) != (gerr == nil) || werr == nil && want.Compare(got) != 0 {
				t.Fatalf("input.%s: pruned %v (%v), whole %v (%v)", p, got, gerr, want, werr)
			}
		}
		Redact(mb, b)
	})
}

func FuzzParseTrailers(f *testing.F) {
	f.Add("Subject\n\nBosun-Allow-Delete: web\n")
	f.Add("a\r\n\r\n:\n")
	f.Fuzz(func(t *testing.T, msg string) {
		for k, vs := range ParseTrailers(msg) {
			if k == "" || len(vs) == 0 {
				t.Fatalf("empty trailer %q: %q", k, vs)
			}
		}
	})
}

func FuzzCompareVersions(f *testing.F) {
	f.Add("1.2.3", "1.10")
	f.Add("1.0-rc1", "1.0")
	f.Add("..", "-")
	f.Fuzz(func(t *testing.T, a, b string) {
		if x, y := CompareVersions(a, b), CompareVersions(b, a); x != -y {
			t.Fatalf("CompareVersions(%q, %q) = %d but reversed = %d", a, b, x, y)
		}
	})
}

// FuzzLoad: any policy source loads or fails with an error, never a panic.
func FuzzLoad(f *testing.F) {
	f.Add(minTwo, "max: 1")
	f.Add("package policies.x\ndeny contains 1 if {", "[")
	f.Add("package policies.x\nexception contains [\"\"] if true\n", "{}")
	f.Fuzz(func(t *testing.T, src, data string) {
		e, err := Load(context.Background(), tree(map[string]string{"policies/p.rego": src, "policies/d.yaml": data}), "policies")
		if err == nil {
			e.Evaluate(context.Background(), Input{}) //nolint:errcheck // only panics matter here
		}
	})
}
