package policy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func tree(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for p, s := range files {
		m[p] = &fstest.MapFile{Data: []byte(s)}
	}
	return m
}

func mustLoad(t *testing.T, files map[string]string, opts ...Option) *Engine {
	t.Helper()
	e, err := Load(context.Background(), tree(files), "policies", opts...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return e
}

// prod is a one-deployment snapshot with instance group web of n instances.
func prod(n int) Snapshot {
	return Snapshot{Deployments: map[string]any{"web-prod": map[string]any{
		"name":            "web-prod",
		"instance_groups": []any{map[string]any{"name": "web", "instances": n}},
	}}}
}

const minTwo = `package policies.scale
deny contains msg if {
	some name, d in input.changes.deployments
	some s in d.instance_groups.scaled
	s.to < 2
	msg := sprintf("%s/%s below 2", [name, s.name])
}
`

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"syntax", map[string]string{"policies/a.rego": "package policies.a\n\ndeny contains msg if {\n  msg := \n}\n"}, []string{"policies/a.rego:", "rego_parse_error"}},
		{"v0 syntax", map[string]string{"policies/a.rego": "package policies.a\n\ndeny[msg] { msg := \"x\" }\n"}, []string{"policies/a.rego:3"}},
		{"unknown function", map[string]string{"policies/a.rego": "package policies.a\n\ndeny contains msg if {\n\tmsg := nope(1)\n}\n"}, []string{"policies/a.rego:4", "undefined function nope"}},
		{"network builtin", map[string]string{"policies/a.rego": "package policies.a\n\ndeny contains msg if {\n\tr := http.send({})\n\tmsg := r.body\n}\n"}, []string{"policies/a.rego:4", "http.send"}},
		{"undefined input path", map[string]string{"policies/a.rego": "package policies.a\n\ndeny contains msg if {\n\tsome name in input.changes.delete\n\tmsg := name\n}\n"}, []string{"policies/a.rego:4", "undefined ref: input.changes.delete"}},
		{"undefined commit field", map[string]string{"policies/a.rego": "package policies.a\n\ndeny contains \"unsigned\" if input.commit.signature.state != \"valid\"\n"}, []string{"policies/a.rego:3", "input.commit.signature.state"}},
		{"bad yaml data", map[string]string{"policies/a.rego": minTwo, "policies/limits.yml": "a: 1\n b: [\n"}, []string{"policies/limits.yml", "line 2"}},
		{"bad json data", map[string]string{"policies/a.rego": minTwo, "policies/limits.json": "{\n\"a\": 1,\n}"}, []string{"policies/limits.json:3"}},
		{"conflicting data", map[string]string{"policies/a.json": `{"x": 1}`, "policies/b.json": `{"x": 2}`}, []string{`key "x" is already set`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(context.Background(), tree(tt.files), "policies")
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestEvaluateConftestRules(t *testing.T) {
	e := mustLoad(t, map[string]string{
		"policies/scale.rego": minTwo,
		"policies/msgs.rego": `package policies.msgs
import data.lib.names
deny_obj contains {"msg": sprintf("object form %d", [data.limits.max])} if input.commit.sha == "abc"
violation contains "violation form" if names.is_prod("web-prod")
warn_note contains "just a warning" if true
exception contains rules if {
	input.commit.trailers["Bosun-Waive"][_] == "obj"
	rules := ["obj"]
}
exception contains {"rules": [""], "reason": "incident 42"} if input.commit.sha == "abc"
`,
		"policies/lib.rego":         "package lib.names\nis_prod(n) if endswith(n, \"-prod\")\n",
		"policies/notpolicy.rego":   "package other\ndeny contains \"never asked\" if true\n",
		"policies/limits/data.yaml": "max: 7\n",
		"policies/x_test.rego":      "package policies.x_test\ndeny contains \"tests are not loaded\" if true\n",
	})
	for _, name := range []string{"policies.msgs.deny_obj", "policies.msgs.violation", "policies.scale.deny"} {
		found := false
		for _, r := range e.rules {
			found = found || r.id() == name
		}
		if !found {
			t.Errorf("rule %s not prepared", name)
		}
	}
	in := Input{
		Commit:   Commit{SHA: "abc", Message: "Scale down\n\nBosun-Waive: obj\n"},
		Previous: prod(3),
		Proposed: prod(1),
	}
	d, err := e.Evaluate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	want := Decision{
		PolicyRevision: e.Revision(),
		Denies:         []Message{{Rule: "policies.scale.deny", File: "policies/scale.rego", Line: 2, Msg: "web-prod/web below 2"}},
		Warnings:       []Message{{Rule: "policies.msgs.warn_note", File: "policies/msgs.rego", Line: 5, Msg: "just a warning"}},
		Exceptions: []Message{
			{Rule: "policies.msgs.deny_obj", File: "policies/msgs.rego", Line: 3, Msg: "object form 7", Reason: "exception in policies/msgs.rego:6"},
			{Rule: "policies.msgs.violation", File: "policies/msgs.rego", Line: 4, Msg: "violation form", Reason: "incident 42"},
		},
	}
	if diff := cmp.Diff(want, d, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Duration" }, cmp.Ignore())); diff != "" {
		t.Errorf("decision (-want +got):\n%s", diff)
	}
	if d.Allowed() || d.Duration <= 0 {
		t.Errorf("Allowed() = %v, Duration = %v; want a deny and a duration", d.Allowed(), d.Duration)
	}
	if !strings.HasPrefix(e.Revision(), "sha256:") {
		t.Errorf("revision %q is not a content digest", e.Revision())
	}
	if d, err := mustLoad(t, map[string]string{"README.md": "no policies here"}).Evaluate(context.Background(), in); err != nil || !d.Allowed() {
		t.Errorf("a repository without policies: %+v, %v", d, err)
	}
	if r := mustLoad(t, map[string]string{"policies/scale.rego": minTwo}, WithRevision("abc123")).Revision(); r != "abc123" {
		t.Errorf("WithRevision: got %q", r)
	}
}

func TestEvaluateFailsClosed(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		opts   []Option
		want   []string // in the deny message
	}{
		{"builtin error", "package policies.p\n\ndeny contains msg if {\n\tn := to_number(input.commit.sha)\n\tmsg := sprintf(\"%d\", [n])\n}\n", nil, []string{"policies/p.rego:4", "to_number"}},
		{"conflicting outputs", "package policies.p\n\ndeny := x if { x := \"a\" }\n\ndeny := x if { x := \"b\" }\n", nil, []string{"policies/p.rego", "conflict"}},
		{"timeout", "package policies.p\n\ndeny contains msg if {\n\txs := [x | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); x := i * j]\n\tcount(xs) < 0\n\tmsg := \"never\"\n}\n", []Option{WithLimits(20*time.Millisecond, 0)}, []string{"policies.p.deny", "policies/p.rego:3", "exceeded 20ms"}},
		{"memory", "package policies.p\n\ndeny contains msg if {\n\txs := [x | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); x := sprintf(\"%d-%d\", [i, j])]\n\tcount(xs) < 0\n\tmsg := \"never\"\n}\n", []Option{WithLimits(time.Minute, 8<<20)}, []string{"policies/p.rego:3", "heap by more than 8 MiB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustLoad(t, map[string]string{"policies/p.rego": tt.policy}, tt.opts...)
			d, err := e.Evaluate(context.Background(), Input{Commit: Commit{SHA: "not-a-number"}})
			if err == nil {
				t.Fatal("Evaluate succeeded, want an error")
			}
			if d.Allowed() || len(d.Denies) != 1 {
				t.Fatalf("want exactly one deny, got %+v", d.Denies)
			}
			got := d.Denies[0].String()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("deny %q does not mention %q", got, w)
				}
			}
		})
	}
}

func TestEvaluateRedactsSecrets(t *testing.T) {
	e := mustLoad(t, map[string]string{"policies/leak.rego": `package policies.leak
warn contains json.marshal(input.proposed.deployments) if true
`})
	in := Input{Proposed: Snapshot{Deployments: map[string]any{"db": map[string]any{
		"instance_groups": []any{map[string]any{"name": "pg", "jobs": []any{map[string]any{"name": "pg", "properties": map[string]any{
			"admin_password": "hunter2", "tls": map[string]any{"certificate": "CERT", "private_key": "PK"}, "url": "postgres://u:s3cr3t@db", "port": 5432,
		}}}}},
	}}}, Secrets: []string{"postgres://u:s3cr3t@db"}}
	d, err := e.Evaluate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	got := d.Warnings[0].Msg
	for _, secret := range []string{"hunter2", "PK", "s3cr3t"} {
		if strings.Contains(got, secret) {
			t.Errorf("policy saw secret %q: %s", secret, got)
		}
	}
	for _, kept := range []string{"CERT", "5432", `"admin_password":"[redacted]"`} {
		if !strings.Contains(got, kept) {
			t.Errorf("policy input lacks %q: %s", kept, got)
		}
	}
}

// TestGateJudgesWithPreviousPolicies: policies of revision N judge revision N+1, even
// when N+1 deletes or weakens them, or breaks them.
func TestGateJudgesWithPreviousPolicies(t *testing.T) {
	ctx := context.Background()
	revN := tree(map[string]string{"policies/scale.rego": minTwo})
	first, err := Load(ctx, revN, "policies", WithRevision("N"))
	if err != nil {
		t.Fatal(err)
	}
	g := NewGate(first, "policies")
	violation := Input{Previous: prod(3), Proposed: prod(1)}
	for name, next := range map[string]fstest.MapFS{
		"deletes the policy": tree(map[string]string{"policies/README": "gone"}),
		"weakens the policy": tree(map[string]string{"policies/scale.rego": "package policies.scale\ndeny contains msg if { false; msg := \"\" }\n"}),
		"breaks the policy":  tree(map[string]string{"policies/scale.rego": "package policies.scale\ndeny contains msg if {\n"}),
	} {
		v, _ := g.Judge(ctx, violation, next)
		if v.Allowed() || v.PolicyRevision != "N" {
			t.Errorf("%s: verdict %+v, want rejected by revision N", name, v.Decision)
		}
		g.Accept(v)
		if g.Engine() != first {
			t.Errorf("%s: a rejected commit replaced the judging policies", name)
		}
	}

	// A compliant commit that weakens the policy is accepted; its policy judges from then on.
	weak := tree(map[string]string{"policies/scale.rego": "package policies.scale\ndeny contains msg if { false; msg := \"\" }\n"})
	v, err := g.Judge(ctx, Input{Previous: prod(3), Proposed: prod(4)}, weak)
	if err != nil || !v.Allowed() {
		t.Fatalf("compliant commit: %+v, %v", v.Decision, err)
	}
	g.Accept(v)
	if v, _ := g.Judge(ctx, violation, weak); !v.Allowed() || v.PolicyRevision == "N" {
		t.Errorf("after acceptance the new policies should judge: %+v", v.Decision)
	}

	// Broken policies in an otherwise compliant commit: rejected, naming file and line.
	v, err = g.Judge(ctx, Input{}, tree(map[string]string{"policies/x.rego": "package policies.x\ndeny contains msg if {\n"}))
	if err == nil || v.Allowed() || !strings.Contains(v.Denies[len(v.Denies)-1].Msg, "policies/x.rego:") {
		t.Errorf("broken policies: %+v, %v", v.Decision, err)
	}
}

func TestEvaluateConcurrently(t *testing.T) {
	e := mustLoad(t, map[string]string{"policies/scale.rego": minTwo})
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for i := range 16 {
		wg.Go(func() {
			n := i % 4 // 0 and 1 violate
			d, err := e.Evaluate(context.Background(), Input{Previous: prod(5), Proposed: prod(n)})
			if err != nil || d.Allowed() != (n >= 2) {
				errs <- fmt.Sprintf("instances %d: allowed=%v err=%v", n, d.Allowed(), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestParseTrailers(t *testing.T) {
	tests := []struct {
		msg  string
		want map[string][]string
	}{
		{"Subject only", map[string][]string{}},
		{"Subject: with colon", map[string][]string{}},
		{"Delete web\n\nBecause.\n\nbosun-allow-delete: web\nBosun-Allow-Delete: db\nSigned-off-by: A <a@x>\n", map[string][]string{"Bosun-Allow-Delete": {"web", "db"}, "Signed-Off-By": {"A <a@x>"}}},
		{"Subject\n\nnot a trailer line\nKey: v\n", map[string][]string{}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, ParseTrailers(tt.msg)); diff != "" {
			t.Errorf("ParseTrailers(%q) (-want +got):\n%s", tt.msg, diff)
		}
	}
}
