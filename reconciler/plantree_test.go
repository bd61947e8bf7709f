package reconciler

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/state"
)

// treeOf is files, edited (an empty content deletes), as an uploaded tree.
func treeOf(files, edits map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for p, c := range files {
		m[p] = &fstest.MapFile{Data: []byte(c), Mode: 0o644}
	}
	for p, c := range edits {
		if c == "" {
			delete(m, p)
			continue
		}
		m[p] = &fstest.MapFile{Data: []byte(c), Mode: 0o644}
	}
	return m
}

// A deployment using a generated password, deployed: the director's plan of the same tree
// is "no changes", where a plan made off the director (throwaway values) shows its jobs
// changed. Nothing is stored, and the password appears nowhere in the answer.
func TestPlanTreeRendersWithTheDirectorsVariables(t *testing.T) {
	h := newHarness(t)
	files := templateFiles(t)
	files["deployments/demo/manifest.yml"] = strings.Replace(files["deployments/demo/manifest.yml"], "greeting: Hello from Bosun", "greeting: ((admin_password))", 1) +
		"\nvariables:\n- name: admin_password\n  type: password\n"
	// A policy that would print the password if the gate let it.
	files["policies/leak.rego"] = "package policies.leak\n\nwarn contains msg if {\n\tsome ig in input.proposed.deployments.demo.instance_groups\n\tsome j in ig.jobs\n\tmsg := sprintf(\"greeting is %v\", [j.properties.greeting])\n}\n"
	h.repo.commit("first", files)
	for _, task := range h.reconcile(state.RevisionAccepted).Tasks {
		h.mustRun(task)
	}
	vals, err := h.r.cfg.Renderer.Vars.Load(h.ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	pw := fmt.Sprint(vals.Get("admin_password").Value)
	if len(pw) < minSecret {
		t.Fatalf("password %q is too short to look for", pw)
	}
	sealed := func() map[string]string {
		out := map[string]string{}
		for _, d := range []string{"demo", "other"} {
			s, err := h.store.SealedVariables(h.ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			for n, v := range s {
				out[d+"/"+n] = string(v)
			}
		}
		return out
	}
	before := sealed()

	// Off the director: a throwaway password, so demo's jobs look changed (and say why).
	client, err := PreviewAgainst(h.ctx, treeOf(files, nil), PreviewOptions{Director: storeDirector{h}})
	if err != nil {
		t.Fatal(err)
	}
	if d := client.Deployments[0]; d.Name != "demo" || !d.Changed || !jobsChange(d.Plan) || len(d.Notes) != 1 {
		t.Fatalf("client-side demo: %+v", d)
	}

	// On the director: its own password, so nothing changes.
	pv, err := h.r.PlanTree(h.ctx, treeOf(files, nil), TreePlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !pv.ServerSide {
		t.Error("not marked server-side")
	}
	for _, d := range pv.Deployments {
		if d.Changed || d.New || len(d.Notes) > 0 || d.Unplanned != "" {
			t.Errorf("%s: changed=%v new=%v notes=%q unplanned=%q; want no changes:\n%s", d.Name, d.Changed, d.New, d.Notes, d.Unplanned, d.Plan)
		}
	}
	if !pv.Verdict.Allowed() || len(pv.Verdict.Warnings) == 0 {
		t.Errorf("verdict = %+v; want allowed with the leak policy's warning", pv.Verdict)
	}
	b, err := json.Marshal(pv)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), pw) {
		t.Errorf("the plan shows the password:\n%s", b)
	}

	// A tree with a new password: planned with a throwaway one, never stored.
	m := files["deployments/demo/manifest.yml"]
	m = strings.Replace(m, "greeting: ((admin_password))", "greeting: ((admin_password))\n      other: ((new_password))", 1) + "- name: new_password\n  type: password\n"
	pv, err = h.r.PlanTree(h.ctx, treeOf(files, map[string]string{"deployments/demo/manifest.yml": m}), TreePlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := pv.Deployments[0]; d.Name != "demo" || !d.Changed || len(d.Notes) != 1 || !strings.Contains(d.Notes[0], "new_password") || strings.Contains(d.Notes[0], "admin_password") {
		t.Errorf("demo with a new variable: %+v", d)
	}
	if diff := cmp.Diff(before, sealed()); diff != "" {
		t.Errorf("a plan stored variables (-before +after):\n%s", diff)
	}
	// A render error naming the password's value says nothing of it.
	bad := strings.Replace(files["deployments/demo/manifest.yml"], "instances: 2", "instances: ((admin_password))", 1)
	_, err = h.r.PlanTree(h.ctx, treeOf(files, map[string]string{"deployments/demo/manifest.yml": bad}), TreePlanOptions{})
	if err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("render error = %v; want one without the password", err)
	}
	if diff := cmp.Diff(before, sealed()); diff != "" {
		t.Errorf("a plan stored variables (-before +after):\n%s", diff)
	}
}

// A caller who may not read a deployment gets it listed as not planned, and the
// director's deployments it may not read are not shown deleted.
func TestPlanTreeKeepsToTheCallersDeployments(t *testing.T) {
	h := newHarness(t)
	files := templateFiles(t)
	h.repo.commit("first", files)
	for _, task := range h.reconcile(state.RevisionAccepted).Tasks {
		h.mustRun(task)
	}
	onlyDemo := func(name string) bool { return name == "demo" }
	pv, err := h.r.PlanTree(h.ctx, treeOf(files, nil), TreePlanOptions{Visible: onlyDemo})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range pv.Deployments {
		got[d.Name] = fmt.Sprintf("changed=%v unplanned=%v groups=%d", d.Changed, d.Unplanned != "", len(d.Plan.Groups))
	}
	want := map[string]string{"demo": "changed=false unplanned=false groups=1", "other": "changed=false unplanned=true groups=0"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plans (-want +got):\n%s", diff)
	}
	// Without other's directory: deleted for a reader of every deployment, unseen for the team.
	pv, err = h.r.PlanTree(h.ctx, treeOf(files, map[string]string{"deployments/other/manifest.yml": ""}), TreePlanOptions{Visible: onlyDemo})
	if err != nil {
		t.Fatal(err)
	}
	if len(pv.Deleted) != 0 || len(pv.Deployments) != 1 {
		t.Errorf("team plan: deleted %v, deployments %d; want other unseen", pv.Deleted, len(pv.Deployments))
	}
	pv, err = h.r.PlanTree(h.ctx, treeOf(files, map[string]string{"deployments/other/manifest.yml": ""}), TreePlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pv.Deleted, []string{"other"}) || pv.Verdict.Allowed() {
		t.Errorf("deleted %v, verdict %+v; want other deleted and denied without the trailer (the gate's policies)", pv.Deleted, pv.Verdict)
	}
	// A base that is not on the branch is the caller's mistake.
	if _, err := h.r.PlanTree(h.ctx, treeOf(files, nil), TreePlanOptions{Base: strings.Repeat("ab", 20)}); err == nil || !strings.Contains(err.Error(), ErrPlanInput.Error()) {
		t.Errorf("unknown base: %v", err)
	}
}
