package converge_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/reconciler/plan"
)

// callOrder records create_vm and delete_vm in the order the cloud saw them.
type callOrder struct {
	forward
	mu    sync.Mutex
	calls []string
}

func (c *callOrder) add(s string) {
	c.mu.Lock()
	c.calls = append(c.calls, s)
	c.mu.Unlock()
}

func (c *callOrder) CreateVM(ctx context.Context, spec cpi.VMSpec) (cpi.VMCID, cpi.Networks, error) {
	cid, nets, err := c.CPI.CreateVM(ctx, spec)
	c.add("create " + string(cid))
	return cid, nets, err
}

func (c *callOrder) DeleteVM(ctx context.Context, cid cpi.VMCID) error {
	c.add("delete " + string(cid))
	return c.CPI.DeleteVM(ctx, cid)
}

func (c *callOrder) ListVMs(ctx context.Context) ([]cpi.VMInfo, error) {
	return cpi.ListVMs(ctx, c.CPI)
}
func (c *callOrder) SetVMMetadata(ctx context.Context, cid cpi.VMCID, md cpi.Metadata) error {
	return cpi.SetVMMetadata(ctx, c.CPI, cid, md)
}
func (c *callOrder) GetDisks(ctx context.Context, vm cpi.VMCID) ([]cpi.DiskCID, error) {
	return cpi.GetDisks(ctx, c.CPI, vm)
}

func TestCreateSwapDelete(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	var order *callOrder
	h, fake, agents := newFakeHarness(t, func(c cpi.CPI) cpi.CPI { order = &callOrder{forward: forward{c}}; return order })
	s := spec{instances: 2, greeting: "hi", diskMiB: 10, strategy: plan.CreateSwapDelete}
	h.deploy(ctx, s)
	before := h.instances(ctx)
	order.mu.Lock()
	order.calls = nil
	order.mu.Unlock()
	agents.resetCalls()

	h.recreate = true
	res := h.deploy(ctx, s)
	if res.Failure != nil || res.Recreated != 2 {
		t.Fatalf("recreate: %+v %+v", res, res.Failure)
	}
	after := h.instances(ctx)
	for i := range before {
		b, a := before[i], after[i]
		if b.VMCID == a.VMCID || b.AgentID == a.AgentID {
			t.Errorf("%s kept its VM %s", b.ID, b.VMCID)
		}
		if b.DiskCID == "" || b.DiskCID != a.DiskCID {
			t.Errorf("%s disk %q → %q", b.ID, b.DiskCID, a.DiskCID)
		}
		if slices.Equal(b.IPs, a.IPs) {
			t.Errorf("%s kept its address %v: the old VM held it while the new one booted", b.ID, b.IPs)
		}
	}
	// Each old VM goes only after its replacement was made (and, serially, the canary's
	// swap is over before the next instance starts).
	order.mu.Lock()
	calls := slices.Clone(order.calls)
	order.mu.Unlock()
	want := []string{
		"create " + after[0].VMCID, "delete " + before[0].VMCID,
		"create " + after[1].VMCID, "delete " + before[1].VMCID,
	}
	if fmt.Sprint(calls) != fmt.Sprint(want) && fmt.Sprint(calls) != fmt.Sprint([]string{want[2], want[3], want[0], want[1]}) {
		t.Errorf("cloud calls %v, want %v (either instance first)", calls, want)
	}
	for _, d := range fake.Disks() {
		if d.VM == "" {
			t.Errorf("disk %s is not attached after the swap", d.CID)
		}
	}
	// The old agents were stopped before their disk moved; the new ones started.
	if n := len(agents.callsOf("stop")); n != 2 {
		t.Errorf("stop calls %v, want one per old VM", agents.callsOf("stop"))
	}
	h.recreate = false
	if tk := h.task(ctx, s); !tk.Plan.Empty() {
		t.Errorf("plan after the swap is not empty:\n%v", tk.Plan)
	}
	h.checkNoOrphans(ctx)
}

func TestCreateSwapDeleteKeepsOldVMWhenNewNeverAnswers(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, fake, agents := newFakeHarness(t, nil)
	s := spec{instances: 2, greeting: "hi", diskMiB: 10, strategy: plan.CreateSwapDelete}
	h.deploy(ctx, s)
	before := h.instances(ctx)
	agents.mu.Lock()
	agents.bootDead = true
	agents.mu.Unlock()
	h.recreate = true
	res := h.deploy(ctx, s)
	if res.Failure == nil {
		t.Fatalf("a canary whose new VM never answers succeeded: %+v", res)
	}
	after := h.instances(ctx)
	for i := range before {
		if before[i].VMCID != after[i].VMCID || before[i].DiskCID != after[i].DiskCID {
			t.Errorf("%s changed: %+v → %+v", before[i].ID, before[i], after[i])
		}
	}
	// The canary's old VM still runs its jobs, with its disk; the unused VM is gone.
	if got := len(fake.VMs()); got != 2 {
		t.Errorf("cloud holds %d VMs, want the 2 old ones", got)
	}
	for _, d := range fake.Disks() {
		if d.VM == "" {
			t.Errorf("disk %s was detached from a VM that keeps running", d.CID)
		}
	}
	if n := len(agents.callsOf("stop")); n != 0 {
		t.Errorf("old jobs were stopped: %v", agents.callsOf("stop"))
	}
	h.checkNoOrphans(ctx)
}

func TestCreateSwapDeleteCrash(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		method string
		n      int
	}{
		{"create_vm", 1}, // the canary's new VM, before the swap
		{"create_vm", 2}, // the second instance's, after the canary finished
		{"delete_vm", 1}, // the canary's old VM, after the swap
	} {
		t.Run(fmt.Sprintf("%s %d", tc.method, tc.n), func(t *testing.T) {
			ctx := ctxFor(t, 5*time.Minute)
			var crash *crashAfter
			h, fake, _ := newFakeHarness(t, func(c cpi.CPI) cpi.CPI {
				crash = &crashAfter{forward: forward{c}, method: tc.method, n: tc.n}
				return crash
			})
			s := spec{instances: 2, greeting: "hi", diskMiB: 10, strategy: plan.CreateSwapDelete}
			h.deploy(ctx, s)
			h.recreate = true
			crashRun(t, ctx, h, crash, h.task(ctx, s), nil)
			h.recreate = false
			var res converge.Result
			for range 2 { // what the crash left half-done is planned again, then nothing
				res = h.deploy(ctx, s)
				if res.Failure != nil {
					t.Fatalf("rerun failure: %+v", res.Failure)
				}
			}
			if tk := h.task(ctx, s); !tk.Plan.Empty() {
				t.Errorf("plan after the rerun is not empty:\n%v", tk.Plan)
			}
			h.checkNoOrphans(ctx)
			if len(fake.VMs()) != 2 || len(fake.Disks()) != 2 {
				t.Errorf("cloud holds VMs %+v disks %+v, want 2 each", fake.VMs(), fake.Disks())
			}
			for _, d := range fake.Disks() {
				if d.VM == "" {
					t.Errorf("disk %s is not attached", d.CID)
				}
			}
		})
	}
}

// noList is a CPI without list_vms, as most BOSH CPIs are.
type noList struct{ cpi.CPI }

// TestCreateSwapDeleteCrashWithoutListVMs: a director stopped while the new VM's agent
// boots, on a CPI that cannot list VMs: Recover finds the new VM by its row.
func TestCreateSwapDeleteCrashWithoutListVMs(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, fake, agents := newFakeHarness(t, func(c cpi.CPI) cpi.CPI { return noList{c} })
	s := spec{instances: 1, greeting: "hi", strategy: plan.CreateSwapDelete}
	h.deploy(ctx, s)
	h.recreate = true
	agents.mu.Lock()
	agents.bootDead = true
	agents.mu.Unlock()
	runCtx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	if _, err := h.exec.Run(runCtx, h.task(ctx, s), h.emit); err == nil {
		t.Fatal("the run ended before the director was stopped")
	}
	if err := h.exec.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	agents.mu.Lock()
	agents.bootDead = false
	agents.mu.Unlock()
	h.recreate = false
	if res := h.deploy(ctx, s); res.Failure != nil {
		t.Fatalf("deploy after the restart: %+v", res.Failure)
	}
	rows, _ := h.store.VMs(ctx, h.name)
	if len(fake.VMs()) != 1 || len(rows) != 1 {
		t.Errorf("after the restart: %d cloud VMs, %d VM rows; want 1 each", len(fake.VMs()), len(rows))
	}
}
