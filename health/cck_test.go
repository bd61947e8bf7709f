package health

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/state"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fakeCloud is a hand-written CPI view: which VMs and disks exist, what is attached.
type fakeCloud struct {
	vms      map[string]bool
	disks    map[string]bool
	attached map[string][]string // vm → disks; nil map means the CPI cannot say
	broken   string              // a VM whose has_vm fails
}

func (c *fakeCloud) HasVM(_ context.Context, _, cid string) (bool, error) {
	if cid == c.broken {
		return false, errors.New("cloud API unreachable")
	}
	return c.vms[cid], nil
}
func (c *fakeCloud) HasDisk(_ context.Context, _, cid string) (bool, error) { return c.disks[cid], nil }
func (c *fakeCloud) AttachedDisks(_ context.Context, _, vm string) ([]string, error) {
	if c.attached == nil {
		return nil, ErrUnsupported
	}
	return c.attached[vm], nil
}

type agentSet map[string]bool

func (a agentSet) Responsive(_ context.Context, id string) (bool, error) { return a[id], nil }

func TestCloudCheckScanAndResolve(t *testing.T) {
	e := newEnv(t, Config{})
	insts := e.deploy("app", map[string]int{"web": 3, "db": 2}, "db")
	// web-0: VM gone. web-1: VM there, agent silent. web-2: fine.
	// db-0: disk gone. db-1: disk there but not attached.
	cloud := &fakeCloud{
		vms:      map[string]bool{"vm-app-web-1": true, "vm-app-web-2": true, "vm-app-db-0": true, "vm-app-db-1": true},
		disks:    map[string]bool{"disk-app-db-1": true},
		attached: map[string][]string{},
	}
	agents := agentSet{"app-web-0": true, "app-web-2": true, "app-db-0": true, "app-db-1": true}
	sc := &Scanner{Store: e.store, Cloud: cloud, Agents: agents, Log: testLog()}
	problems, err := sc.Scan(e.ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	type brief struct{ Type, Agent, Default string }
	agentOfInstance := func(id string) string {
		for a, i := range insts {
			if i.ID == id {
				return a
			}
		}
		return "?"
	}
	var got []brief
	for _, p := range problems {
		got = append(got, brief{p.Type, agentOfInstance(p.InstanceID), p.Default})
	}
	want := []brief{
		{ProblemMissingDisk, "app-db-0", ResolutionIgnore},
		{ProblemMountInfoMismatch, "app-db-1", ResolutionIgnore},
		{ProblemMissingVM, "app-web-0", ResolutionRecreateVM},
		{ProblemUnresponsiveAgent, "app-web-1", ResolutionIgnore},
	}
	// Order is by instance name (group/uuid), which the uuids decide: compare as sets.
	less := func(a, b brief) bool { return a.Agent < b.Agent }
	if diff := cmp.Diff(want, got, cmpSortBriefs(less)); diff != "" {
		t.Fatalf("problems (-want +got):\n%s", diff)
	}

	// --auto: only the missing VM is acted on, by one resurrect task.
	res, err := sc.Resolve(e.ctx, problems, nil)
	if err != nil {
		t.Fatal(err)
	}
	tasks := e.tasks("app")
	if len(tasks) != 1 || tasks[0].Type != state.TaskResurrect || tasks[0].User != "cck" {
		t.Fatalf("tasks = %+v", tasks)
	}
	p := resurrectParams(t, tasks[0])
	if diff := cmp.Diff([]string{insts["app-web-0"].ID}, p.Instances); diff != "" || !strings.HasPrefix(p.Reason, ReasonVMMissing) {
		t.Errorf("params = %+v (%s)", p, diff)
	}
	for _, r := range res {
		if (r.TaskID != 0) != (r.Resolution == ResolutionRecreateVM) {
			t.Errorf("resolved = %+v", r)
		}
	}

	// Chosen resolutions; a bad choice is an error that changes nothing else.
	byAgent := map[string]Problem{}
	for _, p := range problems {
		byAgent[agentOfInstance(p.InstanceID)] = p
	}
	choices := map[string]string{
		byAgent["app-web-0"].ID: ResolutionDeleteVMReference,
		byAgent["app-web-1"].ID: ResolutionRecreateVM,
		byAgent["app-db-0"].ID:  ResolutionDeleteDiskReference,
		byAgent["app-db-1"].ID:  "format_everything",
	}
	_, err = sc.Resolve(e.ctx, problems, choices)
	if err == nil || !strings.Contains(err.Error(), `"format_everything" is not a resolution`) {
		t.Errorf("bad choice: err = %v", err)
	}
	after, err := e.store.Instances(e.ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range after {
		switch i.ID {
		case insts["app-web-0"].ID:
			if i.VMCID != "" || i.AgentID != "" {
				t.Errorf("web-0 still references its VM: %+v", i)
			}
		case insts["app-db-0"].ID:
			if i.DiskCID != "" {
				t.Errorf("db-0 still references its disk: %+v", i)
			}
		case insts["app-db-1"].ID:
			if i.DiskCID == "" {
				t.Errorf("db-1 lost its disk reference on a rejected choice")
			}
		}
	}
	if ts := e.tasks("app"); len(ts) != 2 {
		t.Errorf("tasks = %d, want 2 (one more recreate)", len(ts))
	}

	// While a task holds the deployment, references are not touched.
	if _, err := e.store.Claim(e.ctx, "w", nil); err != nil {
		t.Fatal(err)
	}
	_, err = sc.Resolve(e.ctx, []Problem{byAgent["app-db-1"]}, map[string]string{byAgent["app-db-1"].ID: ResolutionIgnore})
	if err != nil {
		t.Errorf("ignore while locked: %v", err)
	}
	missing := Problem{ID: "x", Type: ProblemMissingDisk, Deployment: "app", InstanceID: insts["app-db-1"].ID, DiskCID: "disk-app-db-1",
		Resolutions: []string{ResolutionIgnore, ResolutionDeleteDiskReference}, Default: ResolutionDeleteDiskReference}
	if _, err := sc.Resolve(e.ctx, []Problem{missing}, nil); err == nil || !strings.Contains(err.Error(), "a task holds deployment app") {
		t.Errorf("delete reference while locked: %v", err)
	}

	// A cloud that cannot answer is an error, not a missing VM.
	cloud.broken = "vm-app-web-2"
	problems, err = sc.Scan(e.ctx, "")
	if err == nil || !strings.Contains(err.Error(), "cloud API unreachable") {
		t.Errorf("scan with a broken cloud: err = %v", err)
	}
	for _, p := range problems {
		if p.InstanceID == insts["app-web-2"].ID {
			t.Errorf("unanswered check reported as a problem: %+v", p)
		}
	}
}

func cmpSortBriefs[T any](less func(a, b T) bool) cmp.Option {
	return cmpopts.SortSlices(less)
}
