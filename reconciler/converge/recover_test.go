package converge_test

import (
	"context"
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

// TestRecoverLeavesLiveTasks: a director starting while another's task runs must not
// undo that task's cloud calls; the task's own next run settles them.
func TestRecoverLeavesLiveTasks(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	var crash *crashAfter
	h, fake, _ := newFakeHarness(t, func(c cpi.CPI) cpi.CPI {
		crash = &crashAfter{forward: forward{c}, method: "create_vm", n: 3}
		return crash
	})
	task, err := h.store.Enqueue(ctx, state.Task{Type: state.TaskDeploy, Deployment: h.name})
	if err != nil {
		t.Fatal(err)
	}
	s := spec{instances: 3, greeting: "hi"}
	tk := h.task(ctx, s)
	tk.ID = task.ID
	runCtx, cancel := context.WithCancel(ctx)
	crash.cancel = cancel
	if _, err := h.exec.Run(runCtx, tk, h.emit); !errors.Is(err, context.Canceled) {
		t.Fatalf("crashed run = %v", err)
	}
	crash.mu.Lock()
	crash.cancel = nil
	crash.mu.Unlock()
	pending, _ := h.store.UnfinishedIntents(ctx)
	vms := len(fake.VMs())
	if len(pending) == 0 || vms == 0 {
		t.Fatalf("the crash left %d intents and %d VMs", len(pending), vms)
	}
	if err := h.exec.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if again, _ := h.store.UnfinishedIntents(ctx); len(again) != len(pending) || len(fake.VMs()) != vms {
		t.Errorf("Recover touched a live task's intents: %d → %d pending, %d → %d VMs", len(pending), len(again), vms, len(fake.VMs()))
	}
	// The task's next run (a worker taking it over) settles them and converges.
	res, err := h.exec.Run(ctx, tk, h.emit)
	if err != nil || res.Failure != nil || len(res.Instances) != 3 {
		t.Fatalf("rerun: %v %+v %+v", err, res, res.Failure)
	}
	h.checkNoOrphans(ctx)
	if len(fake.VMs()) != 3 {
		t.Errorf("cloud holds %d VMs, want 3", len(fake.VMs()))
	}
}

// TestRecoverSettlesEndedTasks: intents of a task that ended (cancelled, timed out, lost
// to an error) are settled at start.
func TestRecoverSettlesEndedTasks(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	var crash *crashAfter
	h, fake, _ := newFakeHarness(t, func(c cpi.CPI) cpi.CPI {
		crash = &crashAfter{forward: forward{c}, method: "create_vm", n: 3}
		return crash
	})
	if _, err := h.store.Enqueue(ctx, state.Task{Type: state.TaskDeploy, Deployment: h.name}); err != nil {
		t.Fatal(err)
	}
	claimed, err := h.store.Claim(ctx, "test-worker", []string{state.TaskDeploy})
	if err != nil || claimed == nil {
		t.Fatalf("claim: %v, %v", claimed, err)
	}
	tk := h.task(ctx, spec{instances: 3, greeting: "hi"})
	tk.ID = claimed.ID
	runCtx, cancel := context.WithCancel(ctx)
	crash.cancel = cancel
	if _, err := h.exec.Run(runCtx, tk, h.emit); !errors.Is(err, context.Canceled) {
		t.Fatalf("crashed run = %v", err)
	}
	crash.mu.Lock()
	crash.cancel = nil
	crash.mu.Unlock()
	if pending, _ := h.store.UnfinishedIntents(ctx); len(pending) == 0 {
		t.Fatal("the crash left no pending intent")
	}
	if err := h.store.Finish(ctx, claimed.ID, "test-worker", state.TaskError, "director died"); err != nil {
		t.Fatal(err)
	}
	if err := h.exec.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if pending, _ := h.store.UnfinishedIntents(ctx); len(pending) != 0 {
		t.Errorf("pending after recovering an ended task: %+v", pending)
	}
	// What is left in the cloud is what the instances name (or nothing more).
	named := map[string]bool{}
	for _, i := range h.instances(ctx) {
		named[i.VMCID] = true
	}
	for _, vm := range fake.VMs() {
		if !named[string(vm.CID)] {
			t.Errorf("VM %s is named by no instance after recovery", vm.CID)
		}
	}
}
