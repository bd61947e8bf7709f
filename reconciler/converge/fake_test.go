package converge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/cpitest"
	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/reconciler/plan"
)

// fakeAgents stands in for the bus and the agents of the fake CPI's VMs: an agent
// answers while its VM exists.
type fakeAgents struct {
	mu      sync.Mutex
	alive   map[string]bool
	byVM    map[cpi.VMCID]string
	specs   map[string]protocol.ApplySpec
	started map[string]bool
	calls   []string
	// failRun and failPreStart name instance ids whose jobs never run or whose
	// pre-start fails.
	failRun      map[string]bool
	failPreStart map[string]bool
	compiled     int
	failCompile  string // package name whose packaging fails
	// bootDead makes the agents of VMs created from now on never answer.
	bootDead bool
	// mounted and target are each agent's disk at the store and migration target;
	// data is what each disk holds, copied by migrate_disk.
	mounted, target map[string]string
	migrated        map[string]string // the disk each agent's last migration ended on
	data            map[string]string
	// afterMigrate, when set, runs after a migrate_disk has copied the data.
	afterMigrate func()
	// settings are the arguments of each agent's update_settings calls.
	settings map[string][]json.RawMessage
}

func newFakeAgents(c *cpitest.Fake) *fakeAgents {
	a := &fakeAgents{alive: map[string]bool{}, byVM: map[cpi.VMCID]string{}, specs: map[string]protocol.ApplySpec{},
		started: map[string]bool{}, failRun: map[string]bool{}, failPreStart: map[string]bool{},
		mounted: map[string]string{}, target: map[string]string{}, migrated: map[string]string{}, data: map[string]string{}, settings: map[string][]json.RawMessage{}}
	c.OnVM(func(vm cpitest.FakeVM) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.alive[vm.Spec.AgentID] = !a.bootDead
		a.byVM[vm.CID] = vm.Spec.AgentID
	}, func(cid cpi.VMCID) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.alive[a.byVM[cid]] = false
	})
	return a
}

func (a *fakeAgents) enter(method, id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	name := id
	if s, ok := a.specs[id]; ok && s.Name != "" {
		name = fmt.Sprintf("%s/%d", s.Name, s.Index)
	}
	a.calls = append(a.calls, method+" "+name)
	if !a.alive[id] {
		return fmt.Errorf("%s on agent %s: %w", method, id, protocol.ErrTimeout)
	}
	return nil
}

func (a *fakeAgents) callsOf(method string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, c := range a.calls {
		if strings.HasPrefix(c, method+" ") {
			out = append(out, strings.TrimPrefix(c, method+" "))
		}
	}
	return out
}

func (a *fakeAgents) resetCalls() {
	a.mu.Lock()
	a.calls = nil
	a.mu.Unlock()
}

func (a *fakeAgents) Ping(ctx context.Context, id string) error { return a.enter("ping", id) }

func (a *fakeAgents) GetState(ctx context.Context, id string, full bool) (protocol.State, error) {
	if err := a.enter("get_state", id); err != nil {
		return protocol.State{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := protocol.State{ApplySpec: a.specs[id], AgentID: id, JobState: protocol.JobStopped}
	if a.started[id] {
		s.JobState = protocol.JobRunning
		s.Processes = []protocol.Process{{Name: "web", Job: "web", State: protocol.JobRunning}}
		if a.failRun[s.ID] {
			s.JobState = protocol.JobFailing
			s.Processes = []protocol.Process{{Name: "web", Job: "web", State: protocol.JobFailing, LogTail: "greeter: listen tcp: address already in use"}}
		}
	}
	return s, nil
}

func (a *fakeAgents) Apply(ctx context.Context, id string, spec protocol.ApplySpec) error {
	a.mu.Lock()
	a.specs[id] = spec
	a.mu.Unlock()
	return a.enter("apply", id)
}

func (a *fakeAgents) Start(ctx context.Context, id string) error {
	if err := a.enter("start", id); err != nil {
		return err
	}
	a.mu.Lock()
	a.started[id] = true
	a.mu.Unlock()
	return nil
}

func (a *fakeAgents) Stop(ctx context.Context, id string) error {
	if err := a.enter("stop", id); err != nil {
		return err
	}
	a.mu.Lock()
	a.started[id] = false
	a.mu.Unlock()
	return nil
}

func (a *fakeAgents) Drain(ctx context.Context, id, kind string, next *protocol.ApplySpec) (int, error) {
	return 0, a.enter("drain", id)
}

func (a *fakeAgents) RunScript(ctx context.Context, id, name string, env map[string]string) error {
	if err := a.enter(name, id); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if name == "pre-start" && a.failPreStart[a.specs[id].ID] {
		return &protocol.Error{Code: protocol.CodeJobFailed, Message: "pre-start of web failed: exit status 1; last output:\nmigrations failed", Op: "run_script on agent " + id}
	}
	return nil
}

func (a *fakeAgents) CompilePackage(ctx context.Context, id string, pkg protocol.BlobRef, name, version string, deps map[string]protocol.CompileDependency) (protocol.BlobResult, error) {
	if err := a.enter("compile_package", id); err != nil {
		return protocol.BlobResult{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if name == a.failCompile {
		return protocol.BlobResult{}, &protocol.Error{Code: protocol.CodeCompileFailed, Op: "compile_package on agent " + id,
			Message: "compile package " + name + ": packaging exit status 1; last output:\ngo: command not found"}
	}
	a.compiled++
	d := blobstore.DigestOf([]byte("compiled " + name + version))
	return protocol.BlobResult{BlobstoreID: d.Hex(), SHA1: string(d)}, nil
}

func (a *fakeAgents) CompilePackageWithSignedURL(ctx context.Context, id string, req protocol.CompileWithSignedURL) (protocol.BlobResult, error) {
	return a.CompilePackage(ctx, id, protocol.BlobRef{}, req.Name, req.Version, req.Deps)
}

func (a *fakeAgents) MountDisk(ctx context.Context, id, disk string) error {
	if err := ctx.Err(); err != nil { // as a real client: nothing is sent
		return err
	}
	if err := a.enter("mount_disk", id); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch m, tg := a.mounted[id], a.target[id]; {
	case m == "" || m == disk:
		a.mounted[id] = disk
	case tg == "" || tg == disk:
		a.target[id] = disk
	default:
		return fmt.Errorf("mount_disk %s: %s is mounted and %s is the migration target", disk, m, tg)
	}
	return nil
}

func (a *fakeAgents) UnmountDisk(ctx context.Context, id, disk string) error {
	if err := ctx.Err(); err != nil { // as a real client: nothing is sent
		return err
	}
	if err := a.enter("unmount_disk", id); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mounted[id] == disk {
		delete(a.mounted, id)
	}
	if a.target[id] == disk {
		delete(a.target, id)
	}
	return nil
}

func (a *fakeAgents) Run(ctx context.Context, id, method string, args ...any) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil { // as a real client: nothing is sent
		return nil, err
	}
	if err := a.enter(method, id); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch method {
	case protocol.MethodUpdateSettings:
		b, err := json.Marshal(args)
		if err != nil {
			return nil, err
		}
		a.settings[id] = append(a.settings[id], b)
	case protocol.MethodListDisk: // as the agent: the disk at the store, then the target
		out := []string{}
		if m := a.mounted[id]; m != "" {
			out = append(out, m)
		}
		if tg := a.target[id]; tg != "" {
			out = append(out, tg)
		}
		return json.Marshal(out)
	case protocol.MethodMigrateDisk:
		m, tg := a.mounted[id], a.target[id]
		if tg == "" {
			if m != "" && a.migrated[id] == m {
				return json.RawMessage(`{}`), nil // done already
			}
			return nil, fmt.Errorf("migrate_disk: no disk is mounted as a migration target")
		}
		a.data[tg] = a.data[m]
		a.mounted[id] = tg
		a.migrated[id] = tg
		delete(a.target, id)
		if a.afterMigrate != nil {
			a.afterMigrate()
		}
	}
	return json.RawMessage(`{}`), nil
}

// newFakeHarness is a harness on the fake CPI and fake agents; c may wrap the fake.
func newFakeHarness(t testing.TB, wrap func(cpi.CPI) cpi.CPI) (*harness, *cpitest.Fake, *fakeAgents) {
	t.Helper()
	return newFakeHarnessConfig(t, wrap, nil)
}

// newFakeHarnessConfig is newFakeHarness with the executor's config changed by configure.
func newFakeHarnessConfig(t testing.TB, wrap func(cpi.CPI) cpi.CPI, configure func(*converge.Config)) (*harness, *cpitest.Fake, *fakeAgents) {
	t.Helper()
	fake := cpitest.NewFake("fake")
	agents := newFakeAgents(fake)
	var c cpi.CPI = fake
	if wrap != nil {
		c = wrap(fake)
	}
	store := openStore(t)
	cfg := converge.Config{
		CPI: c, CPIName: "fake", Agents: agents, Store: store, Log: testLog(t),
		Settings: func(id string) (cpi.AgentSettings, error) {
			return cpi.AgentSettings{Mbus: "nats://" + id + ":secret@127.0.0.1:1"}, nil
		},
		PollInterval: 5 * time.Millisecond, AgentWait: 5 * time.Second,
	}
	if configure != nil {
		configure(&cfg)
	}
	exec, err := converge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, store: store, cpi: c, exec: exec, name: "demo", subnet: "10.0.1",
		sc:   converge.Stemcell{Name: "fake-stemcell", OS: "ubuntu-noble", Version: "1.0", APIVersion: 2, CloudProperties: mustJSON(map[string]string{"name": "fake-stemcell", "version": "1.0"})},
		jobs: []converge.Job{{Name: "web", Release: "demo", Version: "j1", Blob: blobstore.DigestOf([]byte("job web")), Packages: []string{"greeter"}}},
		pkgs: []converge.Package{
			{Name: "greeter", Release: "demo", Version: "p1", Source: blobstore.DigestOf([]byte("src greeter")), Dependencies: []string{"golang"}},
			{Name: "golang", Release: "demo", Version: "p2", Source: blobstore.DigestOf([]byte("src golang"))},
		},
	}
	h.render = func(in plan.InstancePlan, ip string, s spec) (blobstore.Digest, string) {
		d := blobstore.DigestOf([]byte(fmt.Sprintf("%s %s %s %d", in.ID, ip, s.greeting, s.port)))
		return d, d.Hex()[:40]
	}
	return h, fake, agents
}
