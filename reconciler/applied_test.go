package reconciler

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/manifest"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/bosun-gitops/bosun/state/postgres/pgtest"
)

// A rollout that fails part-way: the instance converge finished is recorded (the next
// plan does not redo it), the one it did not is left as it was, a deletion it made is
// forgotten; and an address a VM holds that the recorded state does not name (a
// create-swap-delete move the failure kept from being recorded) is never handed out.
func TestFailedRolloutRecordsWhatConverged(t *testing.T) {
	ctx := testCtx(t)
	st, err := postgres.Open(ctx, pgtest.NewDatabase(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	r := &Reconciler{cfg: Config{Store: st}, log: slog.New(slog.DiscardHandler)}
	if err := st.PutDeployment(ctx, state.Deployment{Name: "demo"}); err != nil {
		t.Fatal(err)
	}
	put := func(idx int, ip string) state.Instance {
		in, err := st.PutInstance(ctx, state.Instance{Deployment: "demo", Group: "web", Index: idx, State: state.InstanceStarted,
			VMCID: "vm-" + ip, IPs: []string{ip}})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.PutVM(ctx, state.VM{CID: "vm-" + ip, Deployment: "demo", InstanceID: in.ID, IPs: []string{ip}}); err != nil {
			t.Fatal(err)
		}
		return in
	}
	oldFP := plan.Fingerprint{Stemcell: "s1", Jobs: "j1"}
	newFP := plan.Fingerprint{Stemcell: "s2", Jobs: "j1"}
	record := func(id, ip string, fp plan.Fingerprint) state.AppliedInstance {
		data, _ := json.Marshal(appliedData{Fingerprint: fp, IPs: map[string]string{"default": ip}})
		return state.AppliedInstance{InstanceID: id, Deployment: "demo", Data: data}
	}
	// web/0 was moved to .12 and finished; web/1 moved to .13 but failed to start
	// (converge recorded nothing for it); web/2 was deleted.
	a, b := put(0, "10.0.0.12"), put(1, "10.0.0.13")
	const gone = "0b9bd5a6-7c39-4e4a-9a33-4bd1e5f4c2a1"
	if err := st.PutAppliedInstances(ctx, []state.AppliedInstance{
		record(a.ID, "10.0.0.10", oldFP), record(b.ID, "10.0.0.11", oldFP), record(gone, "10.0.0.14", oldFP),
	}, nil); err != nil {
		t.Fatal(err)
	}
	fp, _ := json.Marshal(newFP)
	if err := st.SetApplied(ctx, state.Applied{InstanceID: a.ID, Fingerprint: fp}); err != nil {
		t.Fatal(err)
	}
	addr := func(ip string) []plan.Address { return []plan.Address{{Network: "default", IP: ip}} }
	p := plan.Plan{Deployment: "demo", Groups: []plan.GroupPlan{{Name: "web", Instances: []plan.InstancePlan{
		{ID: a.ID, Group: "web", Index: 0, Action: plan.Recreate, IPs: addr("10.0.0.12"), Applied: newFP},
		{ID: b.ID, Group: "web", Index: 1, Action: plan.Recreate, IPs: addr("10.0.0.13"), Applied: newFP},
		{ID: gone, Group: "web", Index: 2, Action: plan.Delete},
	}}}}
	if err := r.recordApplied(ctx, "demo", p, true); err != nil {
		t.Fatal(err)
	}
	rows, err := st.AppliedInstances(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]appliedData{}
	for _, row := range rows {
		var ad appliedData
		if err := json.Unmarshal(row.Data, &ad); err != nil {
			t.Fatal(err)
		}
		got[row.InstanceID] = ad
	}
	want := map[string]appliedData{
		a.ID: {Fingerprint: newFP, IPs: map[string]string{"default": "10.0.0.12"}},
		b.ID: {Fingerprint: oldFP, IPs: map[string]string{"default": "10.0.0.11"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("applied after the failed rollout (-want +got):\n%s", diff)
	}

	d := &Deployment{Name: "demo", Manifest: &manifest.Deployment{InstanceGroups: []manifest.InstanceGroup{
		{Name: "web", Networks: []manifest.InstanceGroupNetwork{{Name: "default"}}},
	}}}
	o, err := r.observed(ctx, d, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(o.IPsInUse["default"], "10.0.0.13") {
		t.Errorf("the address web/1's VM holds is free to the planner: in use %v", o.IPsInUse)
	}
	if slices.Contains(o.IPsInUse["default"], "10.0.0.12") {
		t.Errorf("web/0's own address is counted as another's: in use %v", o.IPsInUse)
	}
}

// Two deployments planned at the same time on one network: the second to reserve finds
// the address it picked claimed, and plans again around it.
func TestPlansReserveTheirAddresses(t *testing.T) {
	ctx := testCtx(t)
	st, err := postgres.Open(ctx, pgtest.NewDatabase(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	r := &Reconciler{cfg: Config{Store: st}, log: slog.New(slog.DiscardHandler)}
	cloud := plan.Cloud{Networks: []plan.Network{{Name: "default", Type: plan.Manual, Subnets: []plan.Subnet{
		{Range: "10.0.0.0/24", Gateway: "10.0.0.1", Reserved: []string{"10.0.0.2-10.0.0.9"}},
	}}}}
	dep := func(name string) *Deployment {
		return &Deployment{Name: name,
			Manifest: &manifest.Deployment{InstanceGroups: []manifest.InstanceGroup{{Name: "web", Networks: []manifest.InstanceGroupNetwork{{Name: "default"}}}}},
			Desired: plan.Desired{Name: name, Cloud: cloud, Groups: []plan.Group{{Name: "web", Instances: 1,
				Networks: []plan.GroupNetwork{{Name: "default"}}, VMType: "small",
				Update: plan.UpdateBlock{Canaries: "1", MaxInFlight: "1", CanaryWatchTime: "1000", UpdateWatchTime: "1000"}}}}}
	}
	a, b := dep("a"), dep("b")
	n := 0
	opts := plan.Options{NewID: func() string { n++; return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }}
	// Both observe before either reserves.
	obsA, err := r.observed(ctx, a, "a")
	if err != nil {
		t.Fatal(err)
	}
	obsB, err := r.observed(ctx, b, "b")
	if err != nil {
		t.Fatal(err)
	}
	pa, _, err := r.planReserved(ctx, a.Name, a.Desired, obsA, opts)
	if err != nil {
		t.Fatal(err)
	}
	pb, _, err := r.planReserved(ctx, b.Name, b.Desired, obsB, opts)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{planAddresses(pa)["default"][0], planAddresses(pb)["default"][0]}
	if diff := cmp.Diff([]string{"10.0.0.10", "10.0.0.11"}, got); diff != "" {
		t.Errorf("addresses of a and b (-want +got):\n%s", diff)
	}
	// A third plan sees both claims from the start; deleting a frees its address.
	obsC, err := r.observed(ctx, dep("c"), "c")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"10.0.0.10", "10.0.0.11"}, obsC.IPsInUse["default"]); diff != "" {
		t.Errorf("in use for c (-want +got):\n%s", diff)
	}
	if err := st.ForgetDeployment(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if left, _ := st.ReservedAddresses(ctx, ""); !slices.Equal(left["default"], []string{"10.0.0.11"}) {
		t.Errorf("reservations after deleting a: %v", left)
	}
}
