package converge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/bosun-gitops/bosun/state/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func testLog(t testing.TB) *slog.Logger {
	if os.Getenv("CONVERGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func openStore(t testing.TB) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(ctxFor(t, time.Minute), pgtest.NewDatabase(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func uuid() string {
	b := make([]byte, 16)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// spec is what a test deploys: one instance group "web" of the demo-like job.
type spec struct {
	instances int
	greeting  string
	diskMiB   int
	canaries  string
	inFlight  string
	watch     string // canary and update watch time, "min-max" ms
	deleted   bool
	port      int
	strategy  string // update.vm_strategy
	diskType  string
}

// harness drives an Executor the way the reconciler does: plan from what the store
// observes, build the task, run it.
type harness struct {
	t      testing.TB
	store  *postgres.Store
	cpi    cpi.CPI
	exec   *converge.Executor
	name   string
	subnet string // "a.b.c" of the manual network's /24
	// render makes the instance's rendered templates (their digest, configuration hash).
	render   func(in plan.InstancePlan, ip string, s spec) (blobstore.Digest, string)
	jobs     []converge.Job
	pkgs     []converge.Package
	sc       converge.Stemcell
	recreate bool

	mu     sync.Mutex
	events []state.TaskEvent
}

func (h *harness) desired(s spec) plan.Desired {
	if s.canaries == "" {
		s.canaries = "1"
	}
	if s.inFlight == "" {
		s.inFlight = "2"
	}
	if s.watch == "" {
		s.watch = "100-30000"
	}
	hash := fmt.Sprintf("%s:%d", s.greeting, s.port)
	return plan.Desired{
		Name:    h.name,
		Deleted: s.deleted,
		Cloud: plan.Cloud{
			AZs: []plan.AZ{{Name: "z1"}},
			Networks: []plan.Network{{Name: "default", Type: plan.Manual, Subnets: []plan.Subnet{{
				Range: h.subnet + ".0/24", Gateway: h.subnet + ".1", Reserved: []string{h.subnet + ".2-" + h.subnet + ".9"}, AZs: []string{"z1"},
			}}}},
		},
		Groups: []plan.Group{{
			Name: "web", Instances: s.instances, AZs: []string{"z1"},
			Networks: []plan.GroupNetwork{{Name: "default"}},
			VMType:   "default", Stemcell: plan.Stemcell{OS: h.sc.OS, Version: h.sc.Version},
			Disk: plan.Disk{Size: s.diskMiB, Type: s.diskType},
			Jobs: []plan.Job{{Name: "web", Release: "demo", Version: "1", Hash: hash}},
			Update: plan.UpdateBlock{Canaries: s.canaries, MaxInFlight: s.inFlight, Serial: true, CanaryWatchTime: s.watch, UpdateWatchTime: s.watch,
				VMStrategy: s.strategy},
		}},
	}
}

func (h *harness) observed(ctx context.Context) plan.Observed {
	h.t.Helper()
	is, err := h.store.Instances(ctx, h.name)
	if err != nil {
		h.t.Fatal(err)
	}
	applied, err := h.store.AppliedByInstance(ctx, h.name)
	if err != nil {
		h.t.Fatal(err)
	}
	obs, err := converge.Observed(is, applied)
	if err != nil {
		h.t.Fatal(err)
	}
	return plan.Observed{Instances: obs}
}

// task plans s against what the store holds and builds the converge task.
func (h *harness) task(ctx context.Context, s spec) converge.Task {
	h.t.Helper()
	p, err := plan.Compute(h.desired(s), h.observed(ctx), plan.Options{NewID: uuid, Recreate: h.recreate})
	if err != nil {
		h.t.Fatal(err)
	}
	t := converge.Task{ID: 0, Deployment: h.name, Plan: p, Instances: map[string]converge.Instance{}, Stemcell: h.sc, Packages: h.pkgs,
		Compilation: converge.Compilation{Workers: 2}}
	for _, g := range p.Groups {
		for _, in := range g.Instances {
			if in.Action == plan.Delete {
				continue
			}
			ip := ""
			if len(in.IPs) > 0 {
				ip = in.IPs[0].IP
			}
			rendered, hash := h.render(in, ip, s)
			t.Instances[in.ID] = converge.Instance{
				ID: in.ID, Group: in.Group, Index: in.Index, AZ: in.AZ, Bootstrap: in.Bootstrap,
				VM: converge.VM{Networks: cpi.Networks{"default": {Type: "manual", IP: ip, Netmask: "255.255.255.0",
					Gateway: h.subnet + ".1", Default: []string{"dns", "gateway"}}}},
				Jobs:              h.jobs,
				RenderedTemplates: rendered, ConfigurationHash: hash, TemplateHashes: map[string]string{"web": hash},
				PersistentDisk: converge.Disk{SizeMiB: s.diskMiB, CloudProperties: diskProps(s.diskType)},
				Fingerprint:    in.Applied,
			}
		}
	}
	return t
}

func (h *harness) emit(ev state.TaskEvent) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, ev)
	return nil
}

func (h *harness) takeEvents() []state.TaskEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	evs := h.events
	h.events = nil
	return evs
}

// deploy plans and converges s, failing the test on an error (not on a Failure).
func (h *harness) deploy(ctx context.Context, s spec) converge.Result {
	h.t.Helper()
	res, err := h.exec.Run(ctx, h.task(ctx, s), h.emit)
	if err != nil {
		h.t.Fatalf("run: %v", err)
	}
	return res
}

func (h *harness) instances(ctx context.Context) []state.Instance {
	h.t.Helper()
	is, err := h.store.Instances(ctx, h.name)
	if err != nil {
		h.t.Fatal(err)
	}
	return is
}

// vmCIDs returns the instances' VM cids by instance id.
func (h *harness) vmCIDs(ctx context.Context) map[string]string {
	out := map[string]string{}
	for _, i := range h.instances(ctx) {
		out[i.ID] = i.VMCID
	}
	return out
}

// checkNoOrphans compares the cloud's VMs with the instances' and the vms table: every
// VM belongs to exactly one instance, and every instance's VM exists.
func (h *harness) checkNoOrphans(ctx context.Context) {
	h.t.Helper()
	vms, err := cpi.ListVMs(ctx, h.cpi)
	if err != nil {
		h.t.Fatal(err)
	}
	var cloud []string
	for _, vm := range vms {
		cloud = append(cloud, string(vm.CID))
	}
	var named []string
	for _, i := range h.instances(ctx) {
		if i.VMCID != "" {
			named = append(named, i.VMCID)
		}
	}
	rows, err := h.store.VMs(ctx, h.name)
	if err != nil {
		h.t.Fatal(err)
	}
	var recorded []string
	for _, v := range rows {
		recorded = append(recorded, v.CID)
	}
	slices.Sort(cloud)
	slices.Sort(named)
	slices.Sort(recorded)
	if !slices.Equal(cloud, named) || !slices.Equal(cloud, recorded) {
		h.t.Errorf("VMs: cloud %v, named by instances %v, recorded %v", cloud, named, recorded)
	}
	pending, err := h.store.UnfinishedIntents(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	// The store is shared with tests running in parallel: only this deployment's count.
	pending = slices.DeleteFunc(pending, func(i state.Intent) bool { return i.Deployment != h.name })
	if len(pending) > 0 {
		h.t.Errorf("unfinished intents left: %+v", pending)
	}
}

// eventOrder returns the instance-update events as "state task" lines.
func eventLines(evs []state.TaskEvent, stage string) []string {
	var out []string
	for _, ev := range evs {
		if ev.Stage == stage {
			out = append(out, ev.State+" "+ev.Task)
		}
	}
	return out
}

// checkCanaryFirst asserts the canary finished before any other instance started.
func checkCanaryFirst(t *testing.T, evs []state.TaskEvent) {
	t.Helper()
	var lines []string
	canaryDone := false
	others := 0
	for _, ev := range evs {
		if ev.Stage != "Updating instance" {
			continue
		}
		lines = append(lines, ev.State+" "+ev.Task)
		isCanary := len(ev.Task) > 9 && ev.Task[len(ev.Task)-8:] == "(canary)"
		switch {
		case isCanary && ev.State == "finished":
			canaryDone = true
		case !isCanary && ev.State == "started":
			others++
			if !canaryDone {
				t.Errorf("an instance started before the canary finished: %q\nevents:\n%q", ev.Task, lines)
			}
		}
	}
	if !canaryDone {
		t.Errorf("no canary finished; events:\n%q", lines)
	}
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func diskProps(typ string) json.RawMessage {
	if typ == "" {
		return nil
	}
	return mustJSON(map[string]string{"type": typ})
}
