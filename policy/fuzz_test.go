package policy

import (
	"context"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/open-policy-agent/opa/v1/ast"
	"gopkg.in/yaml.v3"
)

// FuzzDiff: any two YAML documents as deployment manifests diff, redact and convert
// without panicking, and every policy set of TestPrunedInputJudgesAlike judges them with
// the pruned input as with the whole one.
func FuzzDiff(f *testing.F) {
	var engines []*Engine
	for _, set := range policySets(f) {
		e, err := Load(context.Background(), tree(set.files), "policies")
		if err != nil {
			f.Fatal(err)
		}
		engines = append(engines, e)
	}
	f.Add(webV1, webV2)
	f.Add(webV2, "")
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
		in.Commit.Message = "x\n\nBosun-Allow-Delete: d\n"
		in.Proposed.Deployments["d-prod"] = mb
		in.Previous.Deployments["gone"] = ma
		for _, e := range engines {
			pruned, _ := e.Evaluate(context.Background(), in)
			whole, _ := e.EvaluateValue(context.Background(), InputValue(in))
			if diff := cmp.Diff(whole, pruned, cmpopts.IgnoreFields(Decision{}, "Duration")); diff != "" {
				t.Fatalf("reading %s, the pruned input is judged differently (-whole +pruned):\n%s", e.need, diff)
			}
		}
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

// FuzzLoad: any policy source loads or fails with an error, never a panic; and whatever
// it reads of input, it judges the input built for it as it judges the whole input.
func FuzzLoad(f *testing.F) {
	f.Add(minTwo, "max: 1")
	f.Add("package policies.x\ndeny contains 1 if {", "[")
	f.Add("package policies.x\nexception contains [\"\"] if true\n", "{}")
	for _, p := range []string{"max_in_flight", "prod_scale", "deletion", "stemcells"} {
		src, err := os.ReadFile("../repo-template/policies/" + p + ".rego")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(src), "{}")
	}
	f.Add("package policies.x\nwarn contains json.marshal(m) if {\n\tsome m in input.proposed.deployments\n\tm.name == data.n\n}\n", "n: web")
	f.Add("package policies.x\nwarn contains k if {\n\tx := input.proposed.deployments[k].instance_groups[0]\n\tobject.get(x, \"instances\", 0) > 1\n}\n", "{}")
	f.Add("package policies.x\nwarn contains [k, v] if {\n\td := input.previous.deployments.web\n\tsome k, v in d.update\n}\n", "{}")
	ins := judged(f)
	f.Fuzz(func(t *testing.T, src, data string) {
		e, err := Load(context.Background(), tree(map[string]string{"policies/p.rego": src, "policies/d.yaml": data}), "policies")
		if err != nil {
			return
		}
		for name, in := range ins {
			pruned, _ := e.Evaluate(context.Background(), in)
			whole, _ := e.EvaluateValue(context.Background(), InputValue(in))
			if diff := cmp.Diff(whole, pruned, cmpopts.IgnoreFields(Decision{}, "Duration")); diff != "" {
				t.Fatalf("%s: reading %s, the pruned input is judged differently (-whole +pruned):\n%s", name, e.need, diff)
			}
		}
	})
}
