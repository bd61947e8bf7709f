package converge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/cpi"
)

// checkDisks checks that every instance has one active, attached disk that holds its
// data and that its agent mounts.
func checkDisks(t *testing.T, ctx context.Context, h *harness, agents *fakeAgents, sizeMiB int) {
	t.Helper()
	rows, err := h.store.Disks(ctx, h.name)
	if err != nil {
		t.Fatal(err)
	}
	is := h.instances(ctx)
	if len(rows) != len(is) {
		t.Errorf("disk rows %+v for %d instances", rows, len(is))
	}
	for _, d := range rows {
		if !d.Active || d.SizeMB != sizeMiB {
			t.Errorf("disk row %+v, want active and %d MiB", d, sizeMiB)
		}
	}
	for _, i := range is {
		agents.mu.Lock()
		data, mounted, target := agents.data[i.DiskCID], agents.mounted[i.AgentID], agents.target[i.AgentID]
		agents.mu.Unlock()
		if data != "data of "+i.ID || mounted != i.DiskCID || target != "" {
			t.Errorf("%s: disk %s holds %q; agent mounts %q, target %q", i.ID, i.DiskCID, data, mounted, target)
		}
		on, err := cpi.GetDisks(ctx, h.cpi, cpi.VMCID(i.VMCID))
		if err != nil || len(on) != 1 || string(on[0]) != i.DiskCID {
			t.Errorf("%s: VM %s holds disks %v (%v), want %s", i.ID, i.VMCID, on, err, i.DiskCID)
		}
	}
}

func seedData(h *harness, ctx context.Context, agents *fakeAgents) {
	for _, i := range h.instances(ctx) {
		agents.mu.Lock()
		agents.data[i.DiskCID] = "data of " + i.ID
		agents.mu.Unlock()
	}
}

func TestGrowWithoutResizeMigrates(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, fake, agents := newFakeHarness(t, func(c cpi.CPI) cpi.CPI { return forward{c} }) // forward has no resize_disk
	h.deploy(ctx, spec{instances: 2, greeting: "hi", diskMiB: 10})
	seedData(h, ctx, agents)
	before := fake.Disks()
	res := h.deploy(ctx, spec{instances: 2, greeting: "hi", diskMiB: 20})
	if res.Failure != nil {
		t.Fatalf("grow: %+v", res.Failure)
	}
	for _, d := range fake.Disks() {
		for _, b := range before {
			if d.CID == b.CID {
				t.Errorf("disk %s kept: a CPI without resize_disk gets a new disk", d.CID)
			}
		}
	}
	checkDisks(t, ctx, h, agents, 20)
	h.checkNoOrphans(ctx)
}

func TestDiskMigrationCrash(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"create_disk", "migrate_disk", "detach_disk", "delete_disk"} {
		t.Run(point, func(t *testing.T) {
			ctx := ctxFor(t, 5*time.Minute)
			var crash *crashAfter
			h, fake, agents := newFakeHarness(t, func(c cpi.CPI) cpi.CPI {
				crash = &crashAfter{forward: forward{c}, method: point, n: 1}
				return crash
			})
			h.deploy(ctx, spec{instances: 2, greeting: "hi", diskMiB: 20})
			seedData(h, ctx, agents)
			s := spec{instances: 2, greeting: "hi", diskMiB: 5}
			crashRun(t, ctx, h, crash, h.task(ctx, s), func(cancel context.CancelFunc) {
				if point == "migrate_disk" {
					agents.mu.Lock()
					agents.afterMigrate = func() { cancel(); agents.afterMigrate = nil }
					agents.mu.Unlock()
				}
			})
			for range 2 {
				if res := h.deploy(ctx, s); res.Failure != nil {
					t.Fatalf("rerun failure: %+v", res.Failure)
				}
			}
			if tk := h.task(ctx, s); !tk.Plan.Empty() {
				t.Errorf("plan after the rerun is not empty:\n%v", tk.Plan)
			}
			checkDisks(t, ctx, h, agents, 5)
			h.checkNoOrphans(ctx)
			if n := len(fake.Disks()); n != 2 {
				t.Errorf("cloud holds %d disks, want 2: %s", n, fmt.Sprint(fake.Disks()))
			}
		})
	}
}

func TestCrashBetweenAttachAndMount(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	var crash *crashAfter
	h, _, agents := newFakeHarness(t, func(c cpi.CPI) cpi.CPI {
		crash = &crashAfter{forward: forward{c}, method: "attach_disk", n: 1}
		return crash
	})
	h.deploy(ctx, spec{instances: 2, greeting: "hi"})
	s := spec{instances: 2, greeting: "hi", diskMiB: 10}
	crashRun(t, ctx, h, crash, h.task(ctx, s), nil)
	if res := h.deploy(ctx, s); res.Failure != nil {
		t.Fatalf("rerun failure: %+v", res.Failure)
	}
	seedData(h, ctx, agents)
	checkDisks(t, ctx, h, agents, 10)
	h.checkNoOrphans(ctx)
}

// resizing is crashAfter on a CPI that can resize disks.
type resizing struct {
	*crashAfter
	inner cpi.CPI
}

func (r resizing) ResizeDisk(ctx context.Context, cid cpi.DiskCID, mib int) error {
	return cpi.ResizeDisk(ctx, r.inner, cid, mib)
}

// TestRevertedGrowAfterCrashKeepsData: a grow cut short between attach_disk and
// mount_disk (the disk row already says the new size), then reverted in git with a job
// change — a shrink by the rows' account, with nothing mounted at the store. The new disk
// must not take the store's place empty, and the only copy of the data must survive.
func TestRevertedGrowAfterCrashKeepsData(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	var crash *crashAfter
	h, _, agents := newFakeHarness(t, func(c cpi.CPI) cpi.CPI {
		crash = &crashAfter{forward: forward{c}, method: "attach_disk", n: 1}
		return resizing{crash, c}
	})
	h.deploy(ctx, spec{instances: 1, greeting: "hi", diskMiB: 10})
	seedData(h, ctx, agents)
	crashRun(t, ctx, h, crash, h.task(ctx, spec{instances: 1, greeting: "hi", diskMiB: 20}), nil)
	s := spec{instances: 1, greeting: "hello", diskMiB: 10}
	for range 2 {
		if res := h.deploy(ctx, s); res.Failure != nil {
			t.Fatalf("deploy after the crash: %+v", res.Failure)
		}
	}
	checkDisks(t, ctx, h, agents, 10)
	h.checkNoOrphans(ctx)
}
