package policy

import (
	"context"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/open-policy-agent/opa/v1/ast"
)

// templateFiles reads repo-template/policies (without its tests) as a policy tree.
func templateFiles(t testing.TB) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := fs.WalkDir(os.DirFS("../repo-template"), "policies", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.rego") {
			return err
		}
		b, err := os.ReadFile("../repo-template/" + p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// policySets read input in every way the pruning must follow or give up on.
func policySets(t testing.TB) []struct {
	name  string
	files map[string]string
	need  string // what Load finds they read
} {
	return []struct {
		name  string
		files map[string]string
		need  string
	}{
		{"repo-template", templateFiles(t), "input.changes.deleted[_], input.changes.deployments[_].deleted, " +
			"input.changes.deployments[_].instance_groups.added[_], input.changes.deployments[_].instance_groups.scaled[_].from, " +
			"input.changes.deployments[_].instance_groups.scaled[_].name, input.changes.deployments[_].instance_groups.scaled[_].to, " +
			"input.changes.deployments[_].stemcells[_].alias, input.changes.deployments[_].stemcells[_].direction, " +
			"input.changes.deployments[_].stemcells[_].from, input.changes.deployments[_].stemcells[_].os, " +
			"input.changes.deployments[_].stemcells[_].to, input.commit.trailers.Bosun-Allow-Delete, " +
			"input.proposed.deployments[_].instance_groups[_].instances, input.proposed.deployments[_].instance_groups[_].lifecycle, " +
			"input.proposed.deployments[_].instance_groups[_].name, input.proposed.deployments[_].instance_groups[_].update.max_in_flight, " +
			"input.proposed.deployments[_].update.max_in_flight"},
		{"commit", map[string]string{"policies/commit.rego": `package policies.commit
deny contains msg if {
	input.commit.signature.status != "valid"
	not startswith(input.commit.author.email, "bot@")
	msg := sprintf("commit %s by %s is %s", [input.commit.sha, input.commit.author.name, input.commit.signature.status])
}
warn contains msg if {
	some k, vs in input.commit.trailers
	some v in vs
	msg := sprintf("trailer %s: %s", [k, v])
}
`}, "input.commit.author.email, input.commit.author.name, input.commit.sha, input.commit.signature.status, input.commit.trailers[_][_]"},
		{"previous, a library, iteration", map[string]string{
			"policies/history.rego": `package policies.history
import data.lib.groups
deny contains msg if {
	some name, was in input.previous.deployments
	now := input.proposed.deployments[name]
	count(groups(now)) < count(groups(was))
	msg := sprintf("%s lost instance groups", [name])
}
warn contains msg if {
	some name, _ in input.proposed.deployments
	not input.previous.deployments[name]
	msg := sprintf("%s is new", [name])
}
warn_az contains msg if {
	some name
	ig := input.proposed.deployments[name].instance_groups[_]
	some az in ig.azs
	not az in {"z1", "z2"}
	msg := sprintf("%s/%s in %s", [name, ig.name, az])
}
`,
			"policies/lib.rego": "package lib\ngroups(m) := {ig.name | some ig in m.instance_groups}\n",
		}, "input.previous.deployments[_], input.proposed.deployments[_]"}, // groups(m) takes them whole
		{"data", map[string]string{
			"policies/limits.rego": `package policies.limits
deny contains msg if {
	some name, d in input.proposed.deployments
	some ig in d.instance_groups
	ig.instances > data.limits.max_instances
	msg := sprintf("%s/%s has %d instances, more than %d", [name, ig.name, ig.instances, data.limits.max_instances])
}
warn contains msg if {
	some name in data.limits.watched
	input.changes.deployments[name]
	msg := sprintf("%s changed", [name])
}
`,
			"policies/limits.yml": "limits: {max_instances: 5, watched: [web-prod, db-prod, web]}\n",
		}, "input.changes.deployments[_], input.proposed.deployments[_].instance_groups[_].instances, input.proposed.deployments[_].instance_groups[_].name"},
		{"walk", map[string]string{"policies/walk.rego": `package policies.walk
warn contains msg if {
	walk(input.proposed.deployments, [path, value])
	path[count(path) - 1] == "log_level"
	value == "debug"
	msg := sprintf("debug logging at %v", [path])
}
deny contains msg if {
	walk(input.previous, [p, v])
	v == "[redacted]"
	msg := sprintf("redacted at %v", [p])
}
`}, "input.previous, input.proposed.deployments"},
		{"dynamic input[x]", map[string]string{"policies/dyn.rego": `package policies.dyn
warn contains k if {
	some k
	input[k]
}
deny contains k if {
	some k
	x := input[k]
	is_object(x)
	count(x) > 4
}
`}, "input[_]"}, // every key, whole: the full input
		{"input as a value", map[string]string{"policies/whole.rego": `package policies.whole
warn contains json.marshal(object.keys(input)) if true
deny contains "created web" if {
	x := input
	x.changes.created[_] == "web"
}
`}, "input"},
		{"changes only", map[string]string{"policies/changes.rego": `package policies.changes
deny contains name if some name in input.changes.created
warn contains p.path if {
	some p in input.changes.deployments[_].properties_changed
}
warn_update contains sprintf("%s %v -> %v", [u.key, u.from, u.to]) if {
	some u in input.changes.deployments[_].update_changed
}
warn_jobs contains sprintf("%s/%s", [j.instance_group, j.name]) if {
	some d in input.changes.deployments
	some j in array.concat(d.jobs_added, d.jobs_removed)
}
warn_config contains "cloud config" if input.changes.cloud_config_changed
warn_config contains name if some name in input.changes.runtime_configs_changed
`}, "input.changes.cloud_config_changed, input.changes.created[_], input.changes.deployments[_].jobs_added, " +
			"input.changes.deployments[_].jobs_removed, input.changes.deployments[_].properties_changed[_].path, " +
			"input.changes.deployments[_].update_changed[_].from, input.changes.deployments[_].update_changed[_].key, " +
			"input.changes.deployments[_].update_changed[_].to, input.changes.runtime_configs_changed[_]"},
		{"with, exceptions", map[string]string{
			"policies/with.rego": `package policies.modifiers
import data.lib2
deny contains "zero sha" if lib2.zero with input.commit.sha as "0"
deny_scale contains name if {
	some name, d in input.changes.deployments
	count(d.instance_groups.scaled) > 0
}
exception contains ["scale"] if input.commit.trailers["Bosun-Allow-Scale"]
`,
			"policies/lib2.rego": "package lib2\nzero if input.commit.sha == \"0\"\n",
		}, "input.changes.deployments[_].instance_groups.scaled, input.commit.sha, input.commit.trailers.Bosun-Allow-Scale"},
		{"configs, comparisons, every, object.get", map[string]string{"policies/cfg.rego": `package policies.cfg
deny contains n.name if {
	some n in input.proposed.cloud_config.networks
	not n.subnets
}
warn contains a.name if {
	some a in input.proposed.runtime_configs[_].addons
}
deny_same contains g if {
	some d in input.changes.deployments
	some g in d.instance_groups.added
	some ig in input.proposed.deployments[_].instance_groups
	ig.name == g
	ig == {"name": g, "instances": 1}
}
warn_small contains name if {
	some name, m in input.proposed.deployments
	every ig in m.instance_groups {
		ig.vm_type == "small"
	}
}
warn_dns contains sprintf("%s dns %v", [name, v]) if {
	some name, m in input.proposed.deployments
	v := object.get(m, ["features", "use_dns_addresses"], false)
}
warn_head := [ig.name | some ig in input.previous.deployments["web"].instance_groups]
`}, "input.changes.deployments[_].instance_groups.added[_], input.previous.deployments.web.instance_groups[_].name, " +
			"input.proposed.cloud_config.networks[_].name, input.proposed.cloud_config.networks[_].subnets, " +
			"input.proposed.deployments[_].features.use_dns_addresses, input.proposed.deployments[_].instance_groups, " +
			"input.proposed.runtime_configs[_].addons[_].name"},
		{"template strings", map[string]string{"policies/ts.rego": `package policies.ts
warn contains $"sha {input.commit.sha}: {[ig.name | some ig in input.proposed.deployments[_].instance_groups]}" if true
warn contains $"{d.update}" if {
	d := input.previous.deployments[_]
}
`}, "input.commit.sha, input.previous.deployments[_].update, input.proposed.deployments[_].instance_groups[_].name"},
		{"errors", map[string]string{"policies/err.rego": `package policies.err
deny contains x if {
	some m in input.proposed.deployments
	x := to_number(m.name)
}
`}, "input.proposed.deployments[_].name"},
	}
}

// judged are inputs covering first deploys, deletions, scaling, configs, secrets and
// YAML maps with non-string keys.
func judged(t testing.TB) map[string]Input {
	web := func(n int, logLevel string) map[string]any {
		m := manifest(t, webV1)
		igs := m["instance_groups"].([]any)
		igs[0].(map[string]any)["instances"] = n
		igs[0].(map[string]any)["jobs"].([]any)[0].(map[string]any)["properties"] = map[string]any{
			"log_level": logLevel, "admin_password": "hunter2", "tls": map[string]any{"private_key": "PK", "certificate": "CERT"},
			"url": "postgres://u:s3cr3t@db", "ports": map[any]any{80: "http", "443": "https"},
		}
		return m
	}
	cloud := map[string]any{"networks": []any{map[string]any{"name": "default", "subnets": []any{}}, map[string]any{"name": "bare"}}}
	return map[string]Input{
		"100 groups": hundredGroupChange(),
		"first deploy": {
			Commit: Commit{SHA: "0", Author: Person{Name: "Bot", Email: "bot@example.com"}, Signature: Signature{Status: "valid", Signer: "k"}},
			Proposed: Snapshot{
				Deployments: map[string]any{"web-prod": web(1, "debug"), "db-prod": map[string]any{
					"name": "db-prod", "features": map[string]any{"use_dns_addresses": true},
					"instance_groups": []any{
						map[string]any{"name": "pg", "instances": 1, "vm_type": "small"},
						map[string]any{"name": "migrate", "instances": 1, "lifecycle": "errand", "vm_type": "small"},
					},
				}},
				CloudConfig:    cloud,
				RuntimeConfigs: map[string]any{"dns": map[string]any{"addons": []any{map[string]any{"name": "bosh-dns"}}}},
			},
			Secrets: []string{"postgres://u:s3cr3t@db"},
		},
		"scale and delete": {
			Commit: Commit{SHA: "abc", Message: "Scale\n\nBosun-Allow-Delete: web-staging\nBosun-Allow-Scale: yes\n", Author: Person{Email: "me@example.com"}},
			Previous: Snapshot{
				Deployments:    map[string]any{"web": web(3, "info"), "web-staging": web(2, "info"), "old": web(1, "info")},
				CloudConfig:    map[string]any{"networks": []any{}},
				RuntimeConfigs: map[string]any{"dns": map[string]any{}, "gone": map[string]any{}},
			},
			Proposed: Snapshot{
				Deployments:    map[string]any{"web": web(1, "debug"), "new": manifest(t, webV2)},
				CloudConfig:    cloud,
				RuntimeConfigs: map[string]any{"dns": map[string]any{"addons": []any{map[string]any{"name": "bosh-dns"}}}},
			},
			Secrets: []string{"postgres://u:s3cr3t@db"},
		},
		"upgrade": {
			Commit:   Commit{SHA: "def", Trailers: map[string][]string{"Bosun-Allow-Scale": {"1"}}},
			Previous: Snapshot{Deployments: map[string]any{"web": manifest(t, webV1)}},
			Proposed: Snapshot{Deployments: map[string]any{"web": manifest(t, webV2)}},
		},
		"nothing": {},
	}
}

// TestPrunedInputJudgesAlike: every policy set gives, on every input, the decision the
// whole input gives, and the one the pre-pruning input builder gave.
func TestPrunedInputJudgesAlike(t *testing.T) {
	ctx := context.Background()
	ignoreDuration := cmpopts.IgnoreFields(Decision{}, "Duration")
	for _, set := range policySets(t) {
		t.Run(set.name, func(t *testing.T) {
			e := mustLoad(t, set.files)
			if got := e.need.String(); got != set.need {
				t.Errorf("need:\n got %s\nwant %s", got, set.need)
			}
			messages := 0
			for name, in := range judged(t) {
				pruned, perr := e.Evaluate(ctx, in)
				whole, werr := e.EvaluateValue(ctx, InputValue(in))
				old, oerr := e.EvaluateValue(ctx, referenceInput(in))
				if diff := cmp.Diff(whole, pruned, ignoreDuration); diff != "" {
					t.Errorf("%s: pruned input judged differently (-whole +pruned):\n%s", name, diff)
				}
				if diff := cmp.Diff(old, whole, ignoreDuration); diff != "" {
					t.Errorf("%s: input differs from the map-built one (-old +new):\n%s", name, diff)
				}
				if (perr == nil) != (werr == nil) || (werr == nil) != (oerr == nil) {
					t.Errorf("%s: errors differ: pruned %v, whole %v, old %v", name, perr, werr, oerr)
				}
				messages += len(pruned.Denies) + len(pruned.Warnings) + len(pruned.Exceptions)
			}
			if messages == 0 {
				t.Error("no input gave any message: the comparison proves nothing")
			}
		})
	}
}

// TestPrunedInputIsSmallerAndRedacted: what Evaluate builds for the repo-template is a
// fraction of the input, and secrets stay redacted along the paths it keeps.
func TestPrunedInputIsSmallerAndRedacted(t *testing.T) {
	e := mustLoad(t, map[string]string{"policies/p.rego": `package policies.p
warn contains json.marshal(input.proposed.deployments.db.properties) if true
warn contains input.proposed.deployments.db.properties.password if true
warn contains input.proposed.deployments.db.properties.tls.private_key if true
warn contains input.proposed.deployments.db.properties.url if true
warn contains input.proposed.deployments.db.properties.pem if true
`})
	in := Input{Proposed: Snapshot{Deployments: map[string]any{
		"db": map[string]any{"properties": map[string]any{
			"password": "hunter2", "tls": map[string]any{"private_key": "PK", "certificate": "CERT"},
			"url": "postgres://u:s3cr3t@db", "pem": "-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----",
		}},
		"vault-secrets": map[string]any{"name": "vault-secrets"},
	}}, Secrets: []string{"postgres://u:s3cr3t@db"}}
	d, err := e.Evaluate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range d.Warnings {
		for _, secret := range []string{"hunter2", "PK", "s3cr3t", "BEGIN"} {
			if strings.Contains(w.Msg, secret) {
				t.Errorf("policy saw secret %q: %s", secret, w.Msg)
			}
		}
	}
	if len(d.Warnings) != 2 { // the JSON, and "[redacted]" once for the four secrets
		t.Errorf("warnings %v", d.Warnings)
	}
	// A deployment whose name has a secret word is still a deployment, not redacted away.
	whole := InputValue(in).(ast.Object)
	got, err := whole.Find(ast.MustParseRef(`x.proposed.deployments["vault-secrets"].name`)[1:])
	if err != nil || got.Compare(ast.String("vault-secrets")) != 0 {
		t.Errorf("vault-secrets deployment: %v, %v", got, err)
	}

	tmpl := templateEngine(t)
	big := hundredGroupChange()
	if p, w := len(buildInput(big, tmpl.need).String()), len(InputValue(big).String()); p*5 > w {
		t.Errorf("pruned input is %d bytes of text, whole %d: want under a fifth", p, w)
	}
}
