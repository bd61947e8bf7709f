package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/reconciler"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/state"
)

// planObserved serves the planner's Observed per deployment through the API, as the
// director's glue does (observedToAPI), so that the CLI's way back is tested with it.
type planObserved struct {
	mu  sync.Mutex
	obs map[string]plan.Observed
}

func (p *planObserved) Observed(ctx context.Context, deployment string) (api.ObservedState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := p.obs[deployment]
	o.IPsInUse = map[string][]string{"default": {"127.77.0.12"}} // held by web, say
	return observedToAPI(o), nil
}

func TestPlanAgainstDirector(t *testing.T) {
	po := &planObserved{}
	env := newCLIEnvWith(t, api.Options{Observed: po}, nil)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	if o, e, code := runCLI(t, "init", dir); code != 0 {
		t.Fatalf("init: %d\n%s%s", code, o, e)
	}
	// The director has demo as the repository describes it, with its own ids and VMs.
	rd, err := (&reconciler.Renderer{}).Render(ctx, "deployed", os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	p, err := plan.Compute(rd.Deployments["demo"].Desired, plan.Observed{}, plan.Options{NewID: func() string {
		n++
		return []string{"", "aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002"}[n]
	}})
	if err != nil {
		t.Fatal(err)
	}
	var demo plan.Observed
	for _, in := range p.Groups[0].Instances {
		demo.Instances = append(demo.Instances, plan.Instance{ID: in.ID, Group: in.Group, Index: in.Index, AZ: in.AZ, Bootstrap: in.Bootstrap,
			VMCID: "vm-" + in.ID, State: "started", IPs: map[string]string{"default": in.IPs[0].IP}, Applied: in.Applied})
	}
	var web plan.Observed
	for _, in := range env.web {
		web.Instances = append(web.Instances, plan.Instance{ID: in.ID, Group: in.Group, Index: in.Index, AZ: in.AZ, VMCID: in.VMCID, State: "started",
			IPs: map[string]string{"default": in.IPs[0]}})
	}
	po.obs = map[string]plan.Observed{"demo": demo, "web": web}
	if err := env.store.PutDeployment(ctx, state.Deployment{Name: "demo", Revision: "abc"}); err != nil {
		t.Fatal(err)
	}
	// A read token is enough.
	t.Setenv("BOSUN_TOKEN", cliReadToken)

	o, e, code := runCLI(t, "plan", "--director", dir)
	if code != 0 {
		t.Fatalf("plan --director: %d\n%s%s", code, o, e)
	}
	for _, want := range []string{"Planned against the state of the director at " + env.url, "Deployment demo: no changes",
		"Deployment web: deleted (its directory is gone)", "web/0 (" + env.web[0].ID + ") az=z1 default=10.0.0.5: delete (deployment deleted)", "Deployment db: deleted", "Policy: allowed"} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q:\n%s", want, o)
		}
	}

	// Scaled up: the director's two instances stay as they are, one is added on an
	// address neither they nor web hold.
	m := filepath.Join(dir, "deployments/demo/manifest.yml")
	b, _ := os.ReadFile(m)
	if err := os.WriteFile(m, []byte(strings.Replace(string(b), "instances: 2", "instances: 3", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	o, e, code = runCLI(t, "plan", "--director", "--json", dir)
	if code != 0 {
		t.Fatalf("plan --director --json: %d\n%s%s", code, o, e)
	}
	var pv reconciler.Preview
	if err := json.Unmarshal([]byte(o), &pv); err != nil {
		t.Fatalf("%v:\n%s", err, o)
	}
	if pv.Director != env.url || pv.Deployments[0].Name != "demo" || !pv.Deployments[0].Changed {
		t.Fatalf("preview = %+v", pv)
	}
	var got []string
	for _, in := range pv.Deployments[0].Plan.Groups[0].Instances {
		got = append(got, in.Name()+" "+in.ID+" "+in.IPs[0].IP+" "+string(in.Action))
	}
	want := []string{
		"web/0 aaaaaaaa-0000-4000-8000-000000000001 127.77.0.10 unchanged",
		"web/1 aaaaaaaa-0000-4000-8000-000000000002 127.77.0.11 unchanged",
		"web/2 demo-new-1 127.77.0.13 create",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("demo's plan (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"web", "db"}, pv.Deleted, cmpSorted); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}

	// -e alone is a mistake; a token the director refuses is one line.
	if _, e, code := runCLI(t, "plan", "-e", env.url, dir); code != 2 || !strings.Contains(e, "give --director too") {
		t.Errorf("-e without --director: %d %s", code, e)
	}
	t.Setenv("BOSUN_TOKEN", "bosun_revoked")
	if _, e, code := runCLI(t, "plan", "--director", dir); code != 1 || !strings.Contains(e, "token not accepted") || strings.Count(strings.TrimSpace(e), "\n") > 0 {
		t.Errorf("refused token: %d %q", code, e)
	}
}

var cmpSorted = cmp.Transformer("sorted", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

// Every field of the planner's Observed survives the API's mirror of it.
func TestObservedRoundTrip(t *testing.T) {
	o := plan.Observed{IPsInUse: map[string][]string{"default": {"10.0.0.9"}}, Instances: []plan.Instance{{
		ID: "id", Group: "web", Index: 3, AZ: "z2", Bootstrap: true, VMCID: "vm", State: "started", IPs: map[string]string{"default": "10.0.0.5"},
		Applied:   plan.Fingerprint{Stemcell: "ubuntu/1", VM: "v", Env: "e", Networks: "n", Jobs: "j", Disk: plan.Disk{Size: 1024, Type: "ssd"}},
		VMMissing: true, Unresponsive: true}}}
	b, err := json.Marshal(observedToAPI(o))
	if err != nil {
		t.Fatal(err)
	}
	var wire api.ObservedState
	if err := json.Unmarshal(b, &wire); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(o, observedFromAPI(wire)); diff != "" {
		t.Errorf("round trip (-sent +got):\n%s", diff)
	}
	// The wire form is the planner's own JSON, field for field.
	pb, _ := json.Marshal(o)
	var a, p map[string]any
	_ = json.Unmarshal(b, &a)
	_ = json.Unmarshal(pb, &p)
	delete(a, "deployment")
	delete(a, "known")
	if diff := cmp.Diff(p, a); diff != "" {
		t.Errorf("API JSON differs from the planner's (-planner +api):\n%s", diff)
	}
}
