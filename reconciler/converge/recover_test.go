package converge_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/state"
)

func TestRecoverAdoptsOrDeletes(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, fake, _ := newFakeHarness(t, nil)
	h.deploy(ctx, spec{instances: 2, greeting: "hi"})
	is := h.instances(ctx)
	sc, err := h.store.StemcellCID(ctx, "fake", h.sc.Name, h.sc.Version)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(agentID string) cpi.VMCID {
		cid, _, err := fake.CreateVM(ctx, cpi.VMSpec{AgentID: agentID, Stemcell: cpi.StemcellCID(sc)})
		if err != nil {
			t.Fatal(err)
		}
		return cid
	}
	intent := func(kind, instance, req, cid string) {
		if _, err := h.store.RecordIntent(ctx, state.Intent{Kind: kind, Deployment: h.name, InstanceID: instance, RequestID: req, CloudCID: cid}); err != nil {
			t.Fatal(err)
		}
	}
	// A VM made for instance 0 that the instance never came to name: deleted.
	stray := mk("req-stray")
	intent(state.IntentCreateVM, is[0].ID, "req-stray", "")
	// A VM the instance already names (the director died before completing the
	// intent): adopted.
	old := is[1].VMCID
	adopted := mk("req-adopt")
	is[1].VMCID, is[1].AgentID = string(adopted), "req-adopt"
	if _, err := h.store.PutInstance(ctx, is[1]); err != nil {
		t.Fatal(err)
	}
	intent(state.IntentCreateVM, is[1].ID, "req-adopt", "")
	// A deletion cut short: done again, and the instance no longer names the VM.
	intent(state.IntentDeleteVM, is[1].ID, "req-del", old)
	// A creation that never reached the cloud: just settled.
	intent(state.IntentCreateVM, is[0].ID, "req-nothing", "")

	if err := h.exec.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	var cids []string
	for _, vm := range fake.VMs() {
		cids = append(cids, string(vm.CID))
	}
	slices.Sort(cids)
	want := []string{is[0].VMCID, string(adopted)}
	slices.Sort(want)
	if !slices.Equal(cids, want) {
		t.Errorf("VMs after recover %v, want %v (stray %s, deleted %s)", cids, want, stray, old)
	}
	if pending, _ := h.store.UnfinishedIntents(ctx); len(pending) != 0 {
		t.Errorf("pending after recover: %+v", pending)
	}
	// Recover again: nothing to do.
	if err := h.exec.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	// The next run records the adopted VM's instance as it is and changes nothing else.
	h.checkNoOrphans(ctx)
}

func TestEmitErrorEndsRun(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, _, _ := newFakeHarness(t, nil)
	boom := errors.New("event log gone")
	_, err := h.exec.Run(ctx, h.task(ctx, spec{instances: 2, greeting: "hi"}), func(ev state.TaskEvent) error {
		if ev.Stage == "Updating instance" {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("run = %v, want %v", err, boom)
	}
}
