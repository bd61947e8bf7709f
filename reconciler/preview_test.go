package reconciler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/policy"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/state"
)

// fleet is a director's observed state, as the API would hand it to a preview.
type fleet struct {
	obs    map[string]plan.Observed
	hidden map[string]bool
	inUse  map[string][]string // addresses other deployments hold, given to every deployment
}

func (f fleet) Deployments(ctx context.Context) ([]string, error) {
	var out []string
	for n := range f.obs {
		if !f.hidden[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

func (f fleet) Observed(ctx context.Context, name string) (plan.Observed, bool, error) {
	if f.hidden[name] {
		return plan.Observed{}, false, fmt.Errorf("%w: token web-dev may not read deployment %s", ErrNotVisible, name)
	}
	o, ok := f.obs[name]
	o.IPsInUse = f.inUse
	return o, ok, nil
}

// deployedFleet renders fsys as a director would have and returns each deployment's
// observed state once converged, with ids and VM cids that are not the preview's.
func deployedFleet(t *testing.T, fsys map[string]string) map[string]plan.Observed {
	t.Helper()
	ctx := testCtx(t)
	rd, err := (&Renderer{}).Render(ctx, "deployed", templateFS(t, fsys))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]plan.Observed{}
	for name, d := range rd.Deployments {
		p, err := plan.Compute(d.Desired, plan.Observed{}, plan.Options{NewID: seqIDs("real-" + name)})
		if err != nil {
			t.Fatal(err)
		}
		o := observedAfter(p)
		for i := range o.Instances {
			o.Instances[i].VMCID = "i-0abc" + o.Instances[i].ID
		}
		out[name] = o
	}
	return out
}

type instanceView struct{ Name, ID, Action, IP string }

func instancesOf(p plan.Plan) []instanceView {
	var out []instanceView
	for _, g := range p.Groups {
		for _, in := range g.Instances {
			v := instanceView{Name: in.Name(), ID: in.ID, Action: string(in.Action)}
			for _, a := range in.IPs {
				v.IP += a.IP
			}
			out = append(out, v)
		}
	}
	return out
}

func TestPreviewAgainstDirector(t *testing.T) {
	ctx := testCtx(t)
	tmpl := templateFS(t, nil)
	manifest := string(tmpl["deployments/demo/manifest.yml"].Data)
	deployed := deployedFleet(t, nil)
	// Another deployment the director has, which the working tree lacks.
	deployed["old"] = plan.Observed{Instances: []plan.Instance{{ID: "old-1", Group: "db", Index: 0, AZ: "z1", VMCID: "i-0old", State: "started",
		IPs: map[string]string{"default": "127.77.0.40"}}}}
	inUse := map[string][]string{"default": {"127.77.0.12"}}

	tests := []struct {
		name     string
		edits    map[string]string
		fleet    fleet
		want     map[string][]instanceView // deployment → its instances' changes
		changed  map[string]bool
		new      []string
		deleted  []string
		unseen   []string
		denied   bool
		noteFor  string
		planErrs string
	}{{
		name:  "nothing changed: the director's instances are kept as they are",
		fleet: fleet{obs: map[string]plan.Observed{"demo": deployed["demo"]}, inUse: inUse},
		want: map[string][]instanceView{"demo": {
			{"web/0", "real-demo-1", "unchanged", "127.77.0.10"}, {"web/1", "real-demo-2", "unchanged", "127.77.0.11"}}},
		changed: map[string]bool{"demo": false},
	}, {
		name:  "scaled up: only the new instance is created, on an address nobody holds",
		edits: map[string]string{"deployments/demo/manifest.yml": strings.Replace(manifest, "instances: 2", "instances: 3", 1)},
		fleet: fleet{obs: map[string]plan.Observed{"demo": deployed["demo"]}, inUse: inUse},
		want: map[string][]instanceView{"demo": {
			{"web/0", "real-demo-1", "unchanged", "127.77.0.10"}, {"web/1", "real-demo-2", "unchanged", "127.77.0.11"},
			{"web/2", "demo-new-1", "create", "127.77.0.13"}}},
		changed: map[string]bool{"demo": true},
	}, {
		name:  "a property changed: the real instances update in place",
		edits: map[string]string{"deployments/demo/manifest.yml": strings.Replace(manifest, "Hello from Bosun", "Bonjour", 1)},
		fleet: fleet{obs: map[string]plan.Observed{"demo": deployed["demo"]}, inUse: inUse},
		want: map[string][]instanceView{"demo": {
			{"web/0", "real-demo-1", "update", "127.77.0.10"}, {"web/1", "real-demo-2", "update", "127.77.0.11"}}},
		changed: map[string]bool{"demo": true},
	}, {
		name:  "a deployment the director has and the tree lacks is deleted, instance by instance",
		fleet: fleet{obs: map[string]plan.Observed{"demo": deployed["demo"], "old": deployed["old"]}},
		// Without a base revision the policies see no previous state, so the deletion
		// policy has nothing to deny (bosun plan --director --base REV gives them one).
		want: map[string][]instanceView{
			"demo": {{"web/0", "real-demo-1", "unchanged", "127.77.0.10"}, {"web/1", "real-demo-2", "unchanged", "127.77.0.11"}},
			"old":  {{"db/0", "old-1", "delete", "127.77.0.40"}}},
		changed: map[string]bool{"demo": false, "old": true},
		deleted: []string{"old"},
	}, {
		name:  "a deployment the director does not have is created afresh, around the addresses others hold",
		fleet: fleet{obs: map[string]plan.Observed{}, inUse: map[string][]string{"default": {"127.77.0.10"}}},
		want: map[string][]instanceView{"demo": {
			{"web/0", "demo-new-1", "create", "127.77.0.11"}, {"web/1", "demo-new-2", "create", "127.77.0.12"}}},
		changed: map[string]bool{"demo": true},
		new:     []string{"demo"},
	}, {
		name:    "a deployment the token may not read is not planned",
		fleet:   fleet{obs: map[string]plan.Observed{"demo": deployed["demo"]}, hidden: map[string]bool{"demo": true}},
		want:    map[string][]instanceView{"demo": nil},
		changed: map[string]bool{"demo": false},
		unseen:  []string{"demo"},
	}, {
		name: "a generated variable: the jobs change is flagged as possibly only that",
		edits: map[string]string{"deployments/demo/manifest.yml": strings.Replace(manifest, "greeting: Hello from Bosun", "greeting: ((greeting_secret))", 1) +
			"\nvariables:\n- name: greeting_secret\n  type: password\n"},
		fleet: fleet{obs: map[string]plan.Observed{"demo": deployedFleet(t, map[string]string{"deployments/demo/manifest.yml": strings.Replace(manifest, "greeting: Hello from Bosun", "greeting: ((greeting_secret))", 1) +
			"\nvariables:\n- name: greeting_secret\n  type: password\n"})["demo"]}},
		want: map[string][]instanceView{"demo": {
			{"web/0", "real-demo-1", "update", "127.77.0.10"}, {"web/1", "real-demo-2", "update", "127.77.0.11"}}},
		changed: map[string]bool{"demo": true},
		noteFor: "demo",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pv, err := PreviewAgainst(ctx, templateFS(t, tt.edits), PreviewOptions{
				Commit:   policy.Commit{SHA: "working-tree"},
				Director: tt.fleet, DirectorName: "https://director.example:25555"})
			if err != nil {
				t.Fatal(err)
			}
			if pv.Director != "https://director.example:25555" {
				t.Errorf("director = %q", pv.Director)
			}
			got := map[string][]instanceView{}
			changed := map[string]bool{}
			var news, unseen []string
			for _, d := range pv.Deployments {
				got[d.Name] = instancesOf(d.Plan)
				changed[d.Name] = d.Changed
				if d.New {
					news = append(news, d.Name)
				}
				if d.Unplanned != "" {
					unseen = append(unseen, d.Name)
				}
				if d.Deleted != (d.Name == "old") {
					t.Errorf("%s: deleted = %v", d.Name, d.Deleted)
				}
				if (len(d.Notes) > 0) != (d.Name == tt.noteFor) {
					t.Errorf("%s: notes = %q", d.Name, d.Notes)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("plans (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.changed, changed); diff != "" {
				t.Errorf("changed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.new, news); diff != "" {
				t.Errorf("new (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.unseen, unseen); diff != "" {
				t.Errorf("unplanned (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.deleted, pv.Deleted); diff != "" {
				t.Errorf("deleted (-want +got):\n%s", diff)
			}
			if !pv.Verdict.Allowed() {
				t.Errorf("verdict = %+v; want allowed", pv.Verdict)
			}
		})
	}
}

// The policy verdict is evaluated as offline: head's policies (or --base's) judge head,
// whatever the director has.
func TestPreviewAgainstDirectorJudges(t *testing.T) {
	ctx := testCtx(t)
	tmpl := templateFS(t, nil)
	manifest := string(tmpl["deployments/demo/manifest.yml"].Data)
	big := templateFS(t, map[string]string{"deployments/demo/manifest.yml": strings.Replace(manifest, "max_in_flight: 1", "max_in_flight: 100%", 1)})
	off, err := PreviewRevisions(ctx, nil, big, policy.Commit{SHA: "working-tree"})
	if err != nil {
		t.Fatal(err)
	}
	on, err := PreviewAgainst(ctx, big, PreviewOptions{Commit: policy.Commit{SHA: "working-tree"}, Director: fleet{obs: deployedFleet(t, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(on.Verdict.Warnings) == 0 {
		t.Errorf("verdict = %+v; want max_in_flight's warning", on.Verdict)
	}
	for _, v := range []*policy.Decision{&off.Verdict, &on.Verdict} {
		v.Duration = 0
	}
	if diff := cmp.Diff(off.Verdict, on.Verdict); diff != "" {
		t.Errorf("verdict against a director differs from offline (-off +on):\n%s", diff)
	}

	// A director failing to answer fails the preview, naming the deployment.
	_, err = PreviewAgainst(ctx, tmpl, PreviewOptions{Director: failing{}})
	if err == nil || !strings.Contains(err.Error(), "plan demo: director at x: connection refused") {
		t.Errorf("err = %v", err)
	}
}

type failing struct{}

func (failing) Deployments(ctx context.Context) ([]string, error) { return nil, nil }
func (failing) Observed(ctx context.Context, name string) (plan.Observed, bool, error) {
	return plan.Observed{}, false, errors.New("director at x: connection refused")
}

// storeDirector is what the API and `bosun plan --director` read, without the HTTP in
// between: the reconciler's Observed and the store's deployments.
type storeDirector struct{ h *harness }

func (d storeDirector) Deployments(ctx context.Context) ([]string, error) {
	ds, err := d.h.store.Deployments(ctx)
	var out []string
	for _, x := range ds {
		out = append(out, x.Name)
	}
	return out, err
}

func (d storeDirector) Observed(ctx context.Context, name string) (plan.Observed, bool, error) {
	_, err := d.h.store.Deployment(ctx, name)
	known := err == nil
	o, err := d.h.r.Observed(ctx, name)
	return o, known, err
}

// A deployed fleet, planned against by the working tree: what the reconciler would plan.
func TestPreviewAgainstReconcilerObserved(t *testing.T) {
	h := newHarness(t)
	files := templateFiles(t)
	h.repo.commit("first", files)
	for _, task := range h.reconcile(state.RevisionAccepted).Tasks {
		h.mustRun(task)
	}
	insts, err := h.store.Instances(h.ctx, "demo")
	if err != nil || len(insts) != 2 {
		t.Fatalf("demo instances = %+v, %v", insts, err)
	}
	tree := func(edits map[string]string) fstest.MapFS {
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
	// Unchanged: nothing to do, not even for the fingerprints.
	pv, err := PreviewAgainst(h.ctx, tree(nil), PreviewOptions{Director: storeDirector{h}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range pv.Deployments {
		if d.Changed || d.New {
			t.Errorf("%s: changed=%v new=%v against its own deployed state:\n%s", d.Name, d.Changed, d.New, d.Plan)
		}
	}
	// Scaled up and other removed: demo keeps its instances and adds one; other goes.
	m := files["deployments/demo/manifest.yml"]
	pv, err = PreviewAgainst(h.ctx, tree(map[string]string{"deployments/demo/manifest.yml": strings.Replace(m, "instances: 2", "instances: 3", 1),
		"deployments/other/manifest.yml": ""}), PreviewOptions{Director: storeDirector{h}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"other"}, pv.Deleted); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}
	got := map[string][]string{}
	for _, d := range pv.Deployments {
		for _, v := range instancesOf(d.Plan) {
			got[d.Name] = append(got[d.Name], v.Name+" "+v.Action)
		}
		if d.Name == "demo" {
			for k, v := range instancesOf(d.Plan)[:2] {
				if v.ID != insts[k].ID || v.IP != insts[k].IPs[0] {
					t.Errorf("%s = %s %s; want the director's %s %s", v.Name, v.ID, v.IP, insts[k].ID, insts[k].IPs[0])
				}
			}
		}
	}
	want := map[string][]string{"demo": {"web/0 unchanged", "web/1 unchanged", "web/2 create"}, "other": {"web/0 delete"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plans (-want +got):\n%s", diff)
	}
}
