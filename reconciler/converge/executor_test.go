package converge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/cpitest"
	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/state"
)

func TestCreateThenNothingChanges(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, fake, agents := newFakeHarness(t, nil)
	res := h.deploy(ctx, spec{instances: 2, greeting: "hi", diskMiB: 100})
	if res.Failure != nil {
		t.Fatalf("failure: %+v", res.Failure)
	}
	if res.Created != 2 || len(res.Instances) != 2 {
		t.Fatalf("result %+v, want 2 created instances", res)
	}
	for _, in := range res.Instances {
		if in.State != "running" || in.VMCID == "" || len(in.IPs) != 1 {
			t.Errorf("instance %+v", in)
		}
	}
	if n := fake.Calls("create_stemcell"); n != 1 {
		t.Errorf("create_stemcell called %d times", n)
	}
	if agents.compiled != 2 {
		t.Errorf("compiled %d packages, want 2", agents.compiled)
	}
	if len(fake.Disks()) != 2 {
		t.Errorf("disks %+v, want 2", fake.Disks())
	}
	h.checkNoOrphans(ctx)
	before := h.vmCIDs(ctx)

	// The same manifest again: the plan is empty and nothing is called.
	agents.resetCalls()
	creates := fake.Calls("create_vm")
	tk := h.task(ctx, spec{instances: 2, greeting: "hi", diskMiB: 100})
	if !tk.Plan.Empty() {
		t.Fatalf("second plan is not empty:\n%v", tk.Plan)
	}
	res, err := h.exec.Run(ctx, tk, h.emit)
	if err != nil || res.Failure != nil {
		t.Fatalf("second run: %v, %+v", err, res.Failure)
	}
	if res.Unchanged != 2 || res.Created+res.Updated+res.Recreated != 0 {
		t.Errorf("second result %+v", res)
	}
	if fake.Calls("create_vm") != creates || fake.Calls("create_stemcell") != 1 || agents.compiled != 2 {
		t.Errorf("second run called the cloud or compiled: create_vm %d→%d, compiled %d", creates, fake.Calls("create_vm"), agents.compiled)
	}
	if got := h.vmCIDs(ctx); !equalMaps(got, before) {
		t.Errorf("VMs changed: %v → %v", before, got)
	}
	if len(agents.callsOf("apply")) != 0 {
		t.Errorf("second run applied: %v", agents.callsOf("apply"))
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestPropertyUpdateCanaryFirst(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, fake, agents := newFakeHarness(t, nil)
	h.deploy(ctx, spec{instances: 3, greeting: "hi"})
	before := h.vmCIDs(ctx)
	h.takeEvents()
	agents.resetCalls()
	res := h.deploy(ctx, spec{instances: 3, greeting: "hola", inFlight: "1"})
	if res.Failure != nil || res.Updated != 3 {
		t.Fatalf("result %+v, failure %+v", res, res.Failure)
	}
	checkCanaryFirst(t, h.takeEvents())
	if got := h.vmCIDs(ctx); !equalMaps(got, before) {
		t.Errorf("an update recreated VMs: %v → %v", before, got)
	}
	// Every instance was drained, stopped, applied and started, in that order.
	for _, name := range []string{"web/0", "web/1", "web/2"} {
		var seq []string
		for _, c := range agents.calls {
			m, n, _ := strings.Cut(c, " ")
			if n == name && m != "ping" && m != "get_state" {
				seq = append(seq, m)
			}
		}
		want := []string{"drain", "stop", "apply", "pre-start", "start", "post-start", "post-deploy"}
		if !slices.Equal(seq, want) {
			t.Errorf("%s calls %v, want %v", name, seq, want)
		}
	}
	if got := agents.callsOf("post-deploy"); len(got) != 3 {
		t.Errorf("post-deploy ran on %v", got)
	}
	// The packages compiled for the first deploy serve the second.
	if agents.compiled != 2 || fake.Calls("create_stemcell") != 1 {
		t.Errorf("compiled %d packages and uploaded %d stemcells over two deploys, want 2 and 1", agents.compiled, fake.Calls("create_stemcell"))
	}
}

func TestScaleUpAndDown(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, fake, _ := newFakeHarness(t, nil)
	h.deploy(ctx, spec{instances: 2, greeting: "hi", diskMiB: 10})
	ids := h.vmCIDs(ctx)
	res := h.deploy(ctx, spec{instances: 3, greeting: "hi", diskMiB: 10})
	if res.Created != 1 || res.Unchanged != 2 || len(res.Instances) != 3 {
		t.Fatalf("scale up: %+v", res)
	}
	for id, vm := range ids {
		if h.vmCIDs(ctx)[id] != vm {
			t.Errorf("scale up touched instance %s", id)
		}
	}
	h.checkNoOrphans(ctx)
	res = h.deploy(ctx, spec{instances: 1, greeting: "hi", diskMiB: 10})
	if res.Deleted != 2 || len(res.Instances) != 1 || res.Instances[0].Name != "web/0" {
		t.Fatalf("scale down: %+v", res)
	}
	h.checkNoOrphans(ctx)
	if len(fake.Disks()) != 1 {
		t.Errorf("disks after scaling down: %+v", fake.Disks())
	}
	disks, _ := h.store.Disks(ctx, h.name)
	if len(disks) != 1 {
		t.Errorf("disk rows after scaling down: %+v", disks)
	}
	// Deleting the deployment removes every VM, disk and instance.
	res = h.deploy(ctx, spec{deleted: true})
	if res.Deleted != 1 || len(res.Instances) != 0 {
		t.Fatalf("delete: %+v", res)
	}
	if len(fake.VMs()) != 0 || len(fake.Disks()) != 0 {
		t.Errorf("left in the cloud: %+v %+v", fake.VMs(), fake.Disks())
	}
	h.checkNoOrphans(ctx)
}

func TestRecreateKeepsDisk(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, fake, _ := newFakeHarness(t, nil)
	h.deploy(ctx, spec{instances: 2, greeting: "hi", diskMiB: 10})
	before := h.instances(ctx)
	h.recreate = true
	res := h.deploy(ctx, spec{instances: 2, greeting: "hi", diskMiB: 10})
	if res.Failure != nil || res.Recreated != 2 {
		t.Fatalf("recreate: %+v %+v", res, res.Failure)
	}
	after := h.instances(ctx)
	for i := range before {
		if before[i].VMCID == after[i].VMCID {
			t.Errorf("%s kept its VM", before[i].ID)
		}
		if before[i].DiskCID == "" || before[i].DiskCID != after[i].DiskCID {
			t.Errorf("%s disk %q → %q", before[i].ID, before[i].DiskCID, after[i].DiskCID)
		}
	}
	for _, d := range fake.Disks() {
		if d.VM == "" {
			t.Errorf("disk %s is not attached after the recreate", d.CID)
		}
	}
	h.checkNoOrphans(ctx)
}

func TestFailingCanaryStopsRollout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		prep    func(a *fakeAgents, id string)
		process string
		tail    string
	}{
		{"not running", func(a *fakeAgents, id string) { a.failRun[id] = true }, "web", "address already in use"},
		{"pre-start", func(a *fakeAgents, id string) { a.failPreStart[id] = true }, "pre-start", "migrations failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxFor(t, 5*time.Minute)
			h, _, agents := newFakeHarness(t, nil)
			h.deploy(ctx, spec{instances: 3, greeting: "hi"})
			is := h.instances(ctx)
			agents.mu.Lock()
			tc.prep(agents, is[0].ID)
			agents.mu.Unlock()
			agents.resetCalls()
			res := h.deploy(ctx, spec{instances: 3, greeting: "broken", watch: "10-300"})
			f := res.Failure
			if f == nil {
				t.Fatalf("no failure: %+v", res)
			}
			if !strings.Contains(f.Instance, "web/0") || !strings.Contains(f.Instance, is[0].ID) || f.Process != tc.process || !strings.Contains(f.LogTail, tc.tail) {
				t.Errorf("failure %+v", f)
			}
			if got := agents.callsOf("apply"); !slices.Equal(got, []string{"web/0"}) {
				t.Errorf("applied to %v, want only the canary", got)
			}
			if res.Updated != 0 {
				t.Errorf("result %+v", res)
			}
			if res.Instances[0].State != "failing" || res.Instances[1].State != "running" {
				t.Errorf("instances %+v", res.Instances)
			}
			// The next plan still wants every instance updated: nothing was recorded
			// as applied.
			tk := h.task(ctx, spec{instances: 3, greeting: "broken"})
			n := 0
			for _, in := range tk.Plan.Groups[0].Instances {
				if in.Action == "update" {
					n++
				}
			}
			if n != 3 {
				t.Errorf("next plan updates %d instances, want 3:\n%v", n, tk.Plan)
			}
		})
	}
}

// crashAfter is a CPI that acts and then "crashes" the director: it cancels the run's
// context once the nth call of method has reached the cloud, so the call's result is
// never recorded.
type crashAfter struct {
	forward
	method string
	n      int
	cancel context.CancelFunc

	mu    sync.Mutex
	calls int
}

func (c *crashAfter) hit() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.calls == c.n && c.cancel != nil {
		c.cancel()
	}
}

func (c *crashAfter) CreateVM(ctx context.Context, spec cpi.VMSpec) (cpi.VMCID, cpi.Networks, error) {
	cid, nets, err := c.CPI.CreateVM(context.WithoutCancel(ctx), spec)
	if c.method == "create_vm" {
		c.hit()
	}
	return cid, nets, err
}

func (c *crashAfter) DeleteVM(ctx context.Context, cid cpi.VMCID) error {
	err := c.CPI.DeleteVM(context.WithoutCancel(ctx), cid)
	if c.method == "delete_vm" {
		c.hit()
	}
	return err
}

func (c *crashAfter) CreateDisk(ctx context.Context, size int, props json.RawMessage, vm cpi.VMCID) (cpi.DiskCID, error) {
	cid, err := c.CPI.CreateDisk(context.WithoutCancel(ctx), size, props, vm)
	if c.method == "create_disk" {
		c.hit()
	}
	return cid, err
}

func (c *crashAfter) AttachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) (cpi.DiskHint, error) {
	hint, err := c.CPI.AttachDisk(context.WithoutCancel(ctx), vm, disk)
	if c.method == "attach_disk" {
		c.hit()
	}
	return hint, err
}

func (c *crashAfter) DetachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) error {
	err := c.CPI.DetachDisk(context.WithoutCancel(ctx), vm, disk)
	if c.method == "detach_disk" {
		c.hit()
	}
	return err
}

func (c *crashAfter) DeleteDisk(ctx context.Context, disk cpi.DiskCID) error {
	err := c.CPI.DeleteDisk(context.WithoutCancel(ctx), disk)
	if c.method == "delete_disk" {
		c.hit()
	}
	return err
}

// forward wraps a CPI keeping the optional methods the tests' CPIs rely on (and no
// others: resize_disk, for one, is not there).
type forward struct{ cpi.CPI }

func (c forward) ListVMs(ctx context.Context) ([]cpi.VMInfo, error) { return cpi.ListVMs(ctx, c.CPI) }
func (c forward) SetVMMetadata(ctx context.Context, cid cpi.VMCID, md cpi.Metadata) error {
	return cpi.SetVMMetadata(ctx, c.CPI, cid, md)
}
func (c forward) GetDisks(ctx context.Context, vm cpi.VMCID) ([]cpi.DiskCID, error) {
	return cpi.GetDisks(ctx, c.CPI, vm)
}

// crashRun runs tk until crash stops the "director" (arm may set other crash points
// with the same cancel), then settles intents as a restarted director does.
func crashRun(t *testing.T, ctx context.Context, h *harness, crash *crashAfter, tk converge.Task, arm func(context.CancelFunc)) {
	t.Helper()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	crash.mu.Lock()
	crash.cancel, crash.calls = cancel, 0
	crash.mu.Unlock()
	if arm != nil {
		arm(cancel)
	}
	if _, err := h.exec.Run(runCtx, tk, h.emit); !errors.Is(err, context.Canceled) {
		t.Fatalf("crashed run = %v, want context.Canceled", err)
	}
	crash.mu.Lock()
	crash.cancel = nil
	crash.mu.Unlock()
	if err := h.exec.Recover(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCrashThenRecover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		method string
		n      int
		first  spec
		second spec
		// same reruns the interrupted task itself rather than a fresh plan, as a
		// worker taking over the task does.
		same bool
	}{
		// The 4th create_vm: two compilation VMs, the canary, then one of the rest.
		{"create_vm", 4, spec{instances: 4, greeting: "hi", diskMiB: 10}, spec{instances: 4, greeting: "hi", diskMiB: 10}, false},
		{"create_vm", 4, spec{instances: 4, greeting: "hi", diskMiB: 10}, spec{instances: 4, greeting: "hi", diskMiB: 10}, true},
		{"create_vm", 1, spec{instances: 2, greeting: "hi"}, spec{instances: 2, greeting: "hi"}, false},
		{"create_vm", 3, spec{instances: 3, greeting: "hi"}, spec{instances: 3, greeting: "hi"}, true},
		{"delete_vm", 1, spec{instances: 3, greeting: "hi"}, spec{instances: 1, greeting: "hi"}, false},
		{"delete_vm", 1, spec{instances: 3, greeting: "hi"}, spec{instances: 1, greeting: "hi"}, true},
	} {
		t.Run(fmt.Sprintf("%s %d same=%v", tc.method, tc.n, tc.same), func(t *testing.T) {
			ctx := ctxFor(t, 5*time.Minute)
			var crash *crashAfter
			h, fake, _ := newFakeHarness(t, func(c cpi.CPI) cpi.CPI {
				crash = &crashAfter{forward: forward{c}, method: tc.method, n: tc.n}
				return crash
			})
			if tc.method == "delete_vm" {
				h.deploy(ctx, tc.first)
			}
			runCtx, cancel := context.WithCancel(ctx)
			crash.mu.Lock()
			crash.cancel = cancel
			crash.calls = 0
			crash.mu.Unlock()
			tk := h.task(ctx, tc.second)
			_, err := h.exec.Run(runCtx, tk, h.emit)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("crashed run = %v, want context.Canceled", err)
			}
			crash.mu.Lock()
			crash.cancel = nil
			crash.mu.Unlock()
			pending, _ := h.store.UnfinishedIntents(ctx)
			if tc.method == "create_vm" && len(pending) == 0 {
				t.Error("the crash left no pending intent; the test did not crash where it meant to")
			}
			// A director restart: settle intents, then plan and run again.
			if err := h.exec.Recover(ctx); err != nil {
				t.Fatal(err)
			}
			var res converge.Result
			if tc.same {
				res, err = h.exec.Run(ctx, tk, h.emit)
				if err != nil {
					t.Fatal(err)
				}
			} else {
				res = h.deploy(ctx, tc.second)
			}
			if res.Failure != nil {
				t.Fatalf("rerun failure: %+v", res.Failure)
			}
			// And a fresh plan afterwards has nothing left to do.
			if tk := h.task(ctx, tc.second); !tk.Plan.Empty() {
				t.Errorf("plan after the rerun is not empty:\n%v", tk.Plan)
			}
			if len(res.Instances) != tc.second.instances {
				t.Errorf("instances after rerun: %+v", res.Instances)
			}
			h.checkNoOrphans(ctx)
			if len(fake.VMs()) != tc.second.instances {
				t.Errorf("cloud holds %d VMs, want %d", len(fake.VMs()), tc.second.instances)
			}
			if len(fake.Disks()) != tc.second.instances*min(tc.second.diskMiB, 1) {
				t.Errorf("cloud holds disks %+v", fake.Disks())
			}
		})
	}
}

func TestCloudFaults(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, fake, _ := newFakeHarness(t, nil)
	h.deploy(ctx, spec{instances: 1, greeting: "hi"})
	fake.FailNext("create_vm", 1, nil)
	res := h.deploy(ctx, spec{instances: 3, greeting: "hi", inFlight: "1"})
	if res.Failure == nil || !strings.Contains(res.Failure.Error, "create_vm") || !strings.Contains(res.Failure.Error, "injected failure") {
		t.Fatalf("failure %+v", res.Failure)
	}
	h.checkNoOrphans(ctx)
	// The next run converges the rest.
	res = h.deploy(ctx, spec{instances: 3, greeting: "hi"})
	if res.Failure != nil || len(res.Instances) != 3 {
		t.Fatalf("rerun %+v %+v", res, res.Failure)
	}
	h.checkNoOrphans(ctx)

	fake.FailNext("delete_vm", 1, nil)
	res = h.deploy(ctx, spec{instances: 1, greeting: "hi"})
	if res.Failure == nil || !strings.Contains(res.Failure.Error, "delete_vm") {
		t.Fatalf("failure %+v", res.Failure)
	}
	res = h.deploy(ctx, spec{instances: 1, greeting: "hi"})
	if res.Failure != nil || len(res.Instances) != 1 {
		t.Fatalf("rerun %+v %+v", res, res.Failure)
	}
	h.checkNoOrphans(ctx)
}

func TestActions(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, fake, agents := newFakeHarness(t, nil)
	h.deploy(ctx, spec{instances: 2, greeting: "hi", diskMiB: 10})
	is := h.instances(ctx)
	one := []string{is[0].ID}
	task, err := h.store.Enqueue(ctx, state.Task{Type: state.TaskAction, Deployment: h.name})
	if err != nil {
		t.Fatal(err)
	}
	act := func(p state.ActionParams) converge.Result {
		t.Helper()
		h.takeEvents()
		res, err := h.exec.Act(converge.WithTask(ctx, task.ID), h.name, one, p, h.emit)
		for _, ev := range h.takeEvents() {
			if ev.TaskID != task.ID {
				t.Errorf("%+v: event %+v does not name task %d", p, ev, task.ID)
			}
		}
		if err != nil || res.Failure != nil {
			t.Fatalf("%+v: %v %+v", p, err, res.Failure)
		}
		return res
	}
	act(state.ActionParams{Action: state.ActionStop})
	if got := h.instances(ctx)[0]; got.State != state.InstanceStopped || got.VMCID != is[0].VMCID {
		t.Errorf("after stop: %+v", got)
	}
	// A deploy leaves a stopped instance stopped.
	h.deploy(ctx, spec{instances: 2, greeting: "hola", diskMiB: 10})
	if got := h.instances(ctx)[0]; got.State != state.InstanceStopped {
		t.Errorf("deploy started a stopped instance: %+v", got)
	}
	act(state.ActionParams{Action: state.ActionStart})
	if got := h.instances(ctx)[0]; got.State != state.InstanceStarted {
		t.Errorf("after start: %+v", got)
	}
	agents.resetCalls()
	act(state.ActionParams{Action: state.ActionRestart})
	if got := agents.callsOf("stop"); len(got) != 1 {
		t.Errorf("restart stopped %v", got)
	}
	res := act(state.ActionParams{Action: state.ActionRecreate})
	got := h.instances(ctx)[0]
	if res.Recreated != 1 || got.VMCID == is[0].VMCID || got.DiskCID != is[0].DiskCID || got.State != state.InstanceStarted {
		t.Errorf("after recreate: %+v (was %+v)", got, is[0])
	}
	act(state.ActionParams{Action: state.ActionStop, Hard: true})
	if got := h.instances(ctx)[0]; got.State != state.InstanceDetached || got.VMCID != "" || got.DiskCID != is[0].DiskCID {
		t.Errorf("after hard stop: %+v", got)
	}
	if len(fake.VMs()) != 1 {
		t.Errorf("VMs after hard stop: %d", len(fake.VMs()))
	}
	act(state.ActionParams{Action: state.ActionStart})
	if got := h.instances(ctx)[0]; got.State != state.InstanceStarted || got.VMCID == "" || got.DiskCID != is[0].DiskCID {
		t.Errorf("after starting a detached instance: %+v", got)
	}
	h.checkNoOrphans(ctx)
	if _, err := h.exec.Act(ctx, h.name, []string{uuid()}, state.ActionParams{Action: state.ActionStop}, nil); err == nil {
		t.Error("acting on an unknown instance succeeded")
	}
	if _, err := h.exec.Act(ctx, h.name, one, state.ActionParams{Action: "explode"}, nil); err == nil {
		t.Error("an unknown action succeeded")
	}
}

var _ = cpitest.NewFake

func TestDiskChanges(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, fake, agents := newFakeHarness(t, nil)
	disks := func() (cids []string, sizes []int) {
		for _, d := range fake.Disks() {
			cids = append(cids, string(d.CID))
			sizes = append(sizes, d.SizeMiB)
			if d.VM == "" {
				t.Errorf("disk %s is detached", d.CID)
			}
		}
		return
	}
	h.deploy(ctx, spec{instances: 2, greeting: "hi"})
	if cids, _ := disks(); len(cids) != 0 {
		t.Fatalf("disks %v", cids)
	}
	vms := h.vmCIDs(ctx)
	// A disk added to running instances.
	res := h.deploy(ctx, spec{instances: 2, greeting: "hi", diskMiB: 10})
	if res.Failure != nil {
		t.Fatal(res.Failure)
	}
	first, sizes := disks()
	if len(first) != 2 || sizes[0] != 10 {
		t.Fatalf("after adding disks: %v %v", first, sizes)
	}
	// Grown in place.
	res = h.deploy(ctx, spec{instances: 2, greeting: "hi", diskMiB: 20})
	if res.Failure != nil {
		t.Fatal(res.Failure)
	}
	grown, sizes := disks()
	if !slices.Equal(first, grown) || sizes[0] != 20 || sizes[1] != 20 {
		t.Errorf("after growing: %v %v (was %v)", grown, sizes, first)
	}
	rows, _ := h.store.Disks(ctx, h.name)
	for _, d := range rows {
		if d.SizeMB != 20 {
			t.Errorf("disk row %+v", d)
		}
	}
	// Shrinking copies the data to a new, smaller disk; so does a new disk type.
	for _, step := range []spec{
		{instances: 2, greeting: "hi", diskMiB: 5},
		{instances: 2, greeting: "hi", diskMiB: 5, diskType: "ssd"},
	} {
		before, _ := disks()
		for _, i := range h.instances(ctx) {
			agents.mu.Lock()
			agents.data[i.DiskCID] = "data of " + i.ID
			agents.mu.Unlock()
		}
		res = h.deploy(ctx, step)
		if res.Failure != nil {
			t.Fatalf("migrate to %d MiB %q: %+v", step.diskMiB, step.diskType, res.Failure)
		}
		after, sizes := disks()
		if len(after) != 2 || slices.ContainsFunc(after, func(c string) bool { return slices.Contains(before, c) }) || sizes[0] != 5 {
			t.Errorf("migrate to %d MiB %q: disks %v %v (were %v)", step.diskMiB, step.diskType, after, sizes, before)
		}
		for _, i := range h.instances(ctx) {
			agents.mu.Lock()
			data, mounted := agents.data[i.DiskCID], agents.mounted[i.AgentID]
			agents.mu.Unlock()
			if data != "data of "+i.ID || mounted != i.DiskCID {
				t.Errorf("%s after migrating: disk %s holds %q, agent mounts %q", i.ID, i.DiskCID, data, mounted)
			}
		}
		rows, _ := h.store.Disks(ctx, h.name)
		if len(rows) != 2 || !rows[0].Active || !rows[1].Active {
			t.Errorf("disk rows after migrating: %+v", rows)
		}
		if tk := h.task(ctx, step); !tk.Plan.Empty() {
			t.Errorf("plan after migrating is not empty:\n%v", tk.Plan)
		}
		h.checkNoOrphans(ctx)
	}
	// Removed.
	res = h.deploy(ctx, spec{instances: 2, greeting: "hi", diskType: "ssd"})
	if res.Failure != nil {
		t.Fatal(res.Failure)
	}
	if left := fake.Disks(); len(left) != 0 {
		t.Errorf("disks after removal: %+v", left)
	}
	if !equalMaps(vms, h.vmCIDs(ctx)) {
		t.Errorf("disk changes recreated VMs")
	}
	h.checkNoOrphans(ctx)
}

func TestPrepareFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		method, want string
	}{
		{"create_stemcell", "stemcell"},
		{"create_vm", "compilation"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			ctx := ctxFor(t, 5*time.Minute)
			h, fake, _ := newFakeHarness(t, nil)
			fake.FailNext(tc.method, 1, nil)
			res, err := h.exec.Run(ctx, h.task(ctx, spec{instances: 2, greeting: "hi"}), h.emit)
			if err != nil {
				t.Fatalf("run = %v; a cloud failure is the rollout's failure, not an error", err)
			}
			if res.Failure == nil || !strings.Contains(res.Failure.Instance, tc.want) || !strings.Contains(res.Failure.Error, "injected") {
				t.Errorf("failure %+v", res.Failure)
			}
			if len(res.Instances) != 0 || len(fake.VMs()) != 0 {
				t.Errorf("instances %+v, VMs %+v", res.Instances, fake.VMs())
			}
			res = h.deploy(ctx, spec{instances: 2, greeting: "hi"})
			if res.Failure != nil || res.Created != 2 {
				t.Errorf("rerun %+v %+v", res, res.Failure)
			}
		})
	}
}

func TestCompileFailure(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, fake, agents := newFakeHarness(t, nil)
	agents.failCompile = "greeter"
	res, err := h.exec.Run(ctx, h.task(ctx, spec{instances: 2, greeting: "hi"}), h.emit)
	if err != nil {
		t.Fatal(err)
	}
	f := res.Failure
	if f == nil || f.Instance != "compilation" || f.Process != "package greeter" || !strings.Contains(f.LogTail, "go: command not found") {
		t.Fatalf("failure %+v", f)
	}
	if len(fake.VMs()) != 0 {
		t.Errorf("compilation VMs left: %+v", fake.VMs())
	}
	// golang compiled before greeter failed, and is kept for the next run.
	agents.failCompile = ""
	res = h.deploy(ctx, spec{instances: 2, greeting: "hi"})
	if res.Failure != nil || agents.compiled != 2 {
		t.Errorf("rerun %+v, compiled %d (want golang once, greeter once)", res.Failure, agents.compiled)
	}
}

func TestMalformedTasks(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	h, fake, _ := newFakeHarness(t, nil)
	for _, tc := range []struct {
		name   string
		break_ func(*converge.Task)
		want   string
	}{
		{"no deployment", func(tk *converge.Task) { tk.Deployment = "" }, "no deployment"},
		{"missing instance spec", func(tk *converge.Task) {
			delete(tk.Instances, tk.Plan.Groups[0].Instances[1].ID)
		}, "carries no instance spec"},
		{"unknown stage group", func(tk *converge.Task) { tk.Plan.Stages = [][]string{{"web", "db"}} }, `instance group "db"`},
		{"unstaged group", func(tk *converge.Task) { tk.Plan.Stages = nil }, "no stage and batch"},
		{"unbatched instance", func(tk *converge.Task) { tk.Plan.Groups[0].Batches = tk.Plan.Groups[0].Batches[:1] }, "no stage and batch"},
	} {
		tk := h.task(ctx, spec{instances: 2, greeting: "hi"})
		tc.break_(&tk)
		_, err := h.exec.Run(ctx, tk, h.emit)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: run = %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if n := fake.Calls("create_vm") + fake.Calls("create_stemcell"); n != 0 {
		t.Errorf("a malformed task reached the cloud (%d calls)", n)
	}
}
