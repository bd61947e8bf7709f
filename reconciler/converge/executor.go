package converge

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/state"
)

// Executor carries out plans and operator actions against one CPI and the agents.
type Executor struct {
	cfg Config
}

// New checks cfg and returns an Executor.
func New(cfg Config) (*Executor, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return &Executor{cfg: cfg}, nil
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// run is one Run or Act: the task, what is known of the deployment, and the event stream.
type run struct {
	e    *Executor
	t    Task
	task int64

	emitMu sync.Mutex
	emit   func(state.TaskEvent) error
	// emitErr is the first error emit returned; the run stops on it, as the task's
	// event log is how operators follow it.
	emitErr error

	mu       sync.Mutex
	current  map[string]state.Instance // by id
	disks    map[string]state.Disk     // by cid
	states   map[string]string         // instance id → process state seen last
	result   Result
	failure  *Failure
	stemcell string
	// compiled holds compiled packages by name for this task's stemcell.
	compiled map[string]compiledPackage
	// records are the instances' stored records, by id.
	records map[string]*record
}

func (r *run) event(ev state.TaskEvent) error {
	r.emitMu.Lock()
	defer r.emitMu.Unlock()
	if r.emit == nil || r.emitErr != nil {
		return r.emitErr
	}
	if r.task != 0 {
		ev.TaskID = r.task
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if err := r.emit(ev); err != nil {
		r.emitErr = fmt.Errorf("emit task event: %w", err)
	}
	return r.emitErr
}

func (r *run) fail(f *Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failure == nil {
		r.failure = f
	}
}

func (r *run) failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failure != nil
}

func (r *run) setInstance(i state.Instance) {
	r.mu.Lock()
	r.current[i.ID] = i
	r.mu.Unlock()
}

func (r *run) instanceRow(id string) (state.Instance, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.current[id]
	return i, ok
}

func (r *run) count(f func(*Result)) {
	r.mu.Lock()
	f(&r.result)
	r.mu.Unlock()
}

func (r *run) setState(id, s string) {
	r.mu.Lock()
	r.states[id] = s
	r.mu.Unlock()
}

func (e *Executor) newRun(ctx context.Context, t Task, emit func(state.TaskEvent) error) (*run, error) {
	r := &run{e: e, t: t, task: t.ID, emit: emit, current: map[string]state.Instance{}, disks: map[string]state.Disk{},
		states: map[string]string{}, compiled: map[string]compiledPackage{}, records: map[string]*record{}}
	if err := e.cfg.Store.EnsureDeployment(ctx, t.Deployment); err != nil {
		return nil, err
	}
	if err := r.reload(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *run) reload(ctx context.Context) error {
	is, err := r.e.cfg.Store.Instances(ctx, r.t.Deployment)
	if err != nil {
		return err
	}
	ds, err := r.e.cfg.Store.Disks(ctx, r.t.Deployment)
	if err != nil {
		return err
	}
	applied, err := r.e.cfg.Store.AppliedByInstance(ctx, r.t.Deployment)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, i := range is {
		r.current[i.ID] = i
	}
	for id, a := range applied {
		var rec record
		if len(a.Record) > 0 && json.Unmarshal(a.Record, &rec) == nil {
			r.records[id] = &rec
		}
	}
	for _, d := range ds {
		r.disks[d.CID] = d
	}
	return nil
}

// needsWork reports whether the instance's plan touches it.
func needsWork(ip plan.InstancePlan) bool {
	return ip.Action != plan.Keep || ip.Disk != plan.DiskKeep
}

// Run converges t.Deployment to t.Plan and streams progress to emit (which may be nil).
//
// A rollout that stops on an instance — a CPI call failing, an agent not answering, a job
// failing its pre-start or not running within the watch time — ends with Result.Failure
// set and a nil error: that is an outcome to report, not a fault of the director. The
// error is non-nil only when the run could not be carried out or recorded at all: the
// task is malformed, the store fails, ctx ends, or emit fails. Either way the returned
// Result lists the instances as they stand.
//
// Run is idempotent: after a crash, Recover and then the same Task converge without
// duplicating what the first attempt made.
func (e *Executor) Run(ctx context.Context, t Task, emit func(state.TaskEvent) error) (Result, error) {
	if t.Deployment == "" {
		return Result{}, errors.New("converge: task has no deployment")
	}
	log := e.cfg.Log.With("deployment", t.Deployment, "task", t.ID)
	groups := map[string]*plan.GroupPlan{}
	needApply := false
	for gi := range t.Plan.Groups {
		g := &t.Plan.Groups[gi]
		groups[g.Name] = g
		for _, ip := range g.Instances {
			if ip.Action == plan.Delete || !needsWork(ip) {
				continue
			}
			needApply = true
			if _, ok := t.Instances[ip.ID]; !ok {
				return Result{}, fmt.Errorf("converge %s: the plan changes %s (%s) but the task carries no instance spec for it", t.Deployment, ip.Name(), ip.ID)
			}
		}
	}
	staged := map[string]bool{}
	for _, stage := range t.Plan.Stages {
		for _, name := range stage {
			if groups[name] == nil {
				return Result{}, fmt.Errorf("converge %s: plan stage names instance group %q, which the plan lacks", t.Deployment, name)
			}
			staged[name] = true
		}
	}
	for _, g := range t.Plan.Groups {
		batched := map[string]bool{}
		for _, b := range g.Batches {
			for _, id := range b.Instances {
				batched[id] = true
			}
		}
		for _, ip := range g.Instances {
			if needsWork(ip) && (!batched[ip.ID] || !staged[g.Name]) {
				// Work no batch or stage carries would be skipped in silence.
				return Result{}, fmt.Errorf("converge %s: the plan changes %s (%s) but no stage and batch carries it", t.Deployment, ip.Name(), ip.ID)
			}
		}
	}
	if err := e.recover(ctx, t.Deployment); err != nil {
		return Result{}, err
	}
	r, err := e.newRun(ctx, t, emit)
	if err != nil {
		return Result{}, fmt.Errorf("converge %s: %w", t.Deployment, err)
	}
	if needApply {
		if err := r.prepare(ctx); err != nil {
			if r.failed() && ctx.Err() == nil {
				// A package that does not compile is the rollout's failure.
				return r.finish(ctx, r.emitErr)
			}
			return r.finish(ctx, err)
		}
		if r.failed() || r.emitErr != nil {
			return r.finish(ctx, r.emitErr)
		}
	}
	changed := false
	for _, stage := range t.Plan.Stages {
		var wg sync.WaitGroup
		errs := make([]error, len(stage))
		for i, name := range stage {
			g := groups[name]
			for _, ip := range g.Instances {
				if needsWork(ip) {
					changed = true
				} else {
					r.count(func(res *Result) { res.Unchanged++ })
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = r.group(ctx, g)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return r.finish(ctx, err)
		}
		if r.failed() {
			log.Warn("rollout stopped", "instance", r.failure.Instance, "error", r.failure.Error)
			return r.finish(ctx, nil)
		}
	}
	if err := r.refreshKept(ctx); err != nil {
		return r.finish(ctx, err)
	}
	if changed {
		if err := r.postDeploy(ctx); err != nil {
			return r.finish(ctx, err)
		}
	}
	return r.finish(ctx, nil)
}

// finish lists the deployment's instances for the result.
func (r *run) finish(ctx context.Context, runErr error) (Result, error) {
	if runErr == nil {
		runErr = r.emitErr
	}
	res := r.result
	res.Failure = r.failure
	is, err := r.e.cfg.Store.Instances(context.WithoutCancel(ctx), r.t.Deployment)
	if err != nil {
		return res, errors.Join(runErr, fmt.Errorf("converge %s: %w", r.t.Deployment, err))
	}
	order := map[string]int{}
	for i, g := range r.t.Plan.Groups {
		order[g.Name] = i
	}
	slices.SortStableFunc(is, func(a, b state.Instance) int {
		oa, oka := order[a.Group]
		ob, okb := order[b.Group]
		if oka != okb {
			if oka {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(oa, ob); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Group, b.Group); c != 0 {
			return c
		}
		return cmp.Compare(a.Index, b.Index)
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, i := range is {
		st := r.states[i.ID]
		if st == "" {
			switch i.State {
			case state.InstanceStarted:
				st = "running"
			default:
				st = i.State
			}
		}
		res.Instances = append(res.Instances, InstanceResult{Name: fmt.Sprintf("%s/%d", i.Group, i.Index), ID: i.ID, AZ: i.AZ,
			State: st, VMCID: i.VMCID, IPs: i.IPs})
	}
	if runErr != nil {
		runErr = fmt.Errorf("converge %s: %w", r.t.Deployment, runErr)
	}
	return res, runErr
}

// group converges one instance group batch by batch; a failure in a batch stops it.
func (r *run) group(ctx context.Context, g *plan.GroupPlan) error {
	byID := map[string]plan.InstancePlan{}
	for _, ip := range g.Instances {
		byID[ip.ID] = ip
	}
	total := 0
	for _, b := range g.Batches {
		total += len(b.Instances)
	}
	index := 0
	for _, b := range g.Batches {
		if r.failed() {
			return nil
		}
		watch := g.Strategy.UpdateWatchTime
		if b.Kind == plan.BatchCanary {
			watch = g.Strategy.CanaryWatchTime
		}
		var wg sync.WaitGroup
		errs := make([]error, len(b.Instances))
		for i, id := range b.Instances {
			ip, ok := byID[id]
			if !ok {
				return fmt.Errorf("instance group %s: batch names instance %s, which the group's plan lacks", g.Name, id)
			}
			index++
			n := index
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = r.instance(ctx, g, ip, b.Kind, watch, n, total)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	return nil
}

func eventTask(ip plan.InstancePlan, kind plan.BatchKind) string {
	s := fmt.Sprintf("%s/%s (%d)", ip.Group, ip.ID, ip.Index)
	if kind == plan.BatchCanary {
		s += " (canary)"
	}
	return s
}

// instance converges one instance and reports its outcome as events; a failure of the
// instance is recorded on the run, an error is the director's own.
func (r *run) instance(ctx context.Context, g *plan.GroupPlan, ip plan.InstancePlan, kind plan.BatchKind, watch plan.WatchTime, index, total int) error {
	stage := "Updating instance"
	if ip.Action == plan.Delete {
		stage = "Deleting unneeded instances"
	}
	ev := state.TaskEvent{Stage: stage, Tags: []string{g.Name}, Task: eventTask(ip, kind), Index: index, Total: total}
	ev.State = "started"
	if err := r.event(ev); err != nil {
		return err
	}
	f, err := r.converge(ctx, g, ip, watch)
	if err != nil {
		ev.State, ev.Error = "failed", err.Error()
		r.event(ev) //nolint:errcheck // the run already ends with err
		return err
	}
	if f != nil {
		if f.Instance == "" {
			f.Instance = fmt.Sprintf("%s/%d (%s)", ip.Group, ip.Index, ip.ID)
		}
		r.fail(f)
		r.setState(ip.ID, "failing")
		ev.State, ev.Error = "failed", f.Error
		return r.event(ev)
	}
	ev.State, ev.Progress = "finished", 100
	return r.event(ev)
}

// converge dispatches on the instance's action.
func (r *run) converge(ctx context.Context, g *plan.GroupPlan, ip plan.InstancePlan, watch plan.WatchTime) (*Failure, error) {
	if ip.Action == plan.Delete {
		f, err := r.deleteInstance(ctx, ip.ID)
		if f == nil && err == nil {
			r.count(func(res *Result) { res.Deleted++ })
		}
		return f, err
	}
	want := r.t.Instances[ip.ID]
	f, err := r.update(ctx, ip, want, watch)
	if f == nil && err == nil {
		r.count(func(res *Result) {
			switch ip.Action {
			case plan.Create:
				res.Created++
			case plan.Recreate:
				res.Recreated++
			default:
				res.Updated++
			}
		})
	}
	return f, err
}

// postDeploy runs every started instance's post-deploy scripts once the rollout is done.
func (r *run) postDeploy(ctx context.Context) error {
	r.mu.Lock()
	var is []state.Instance
	for _, i := range r.current {
		if i.VMCID != "" && i.AgentID != "" && i.State == state.InstanceStarted {
			is = append(is, i)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(is, func(a, b state.Instance) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Index, b.Index))
	})
	for n, i := range is {
		ev := state.TaskEvent{Stage: "Running post-deploy", Tags: []string{i.Group}, Task: fmt.Sprintf("%s/%s (%d)", i.Group, i.ID, i.Index), Index: n + 1, Total: len(is), State: "started"}
		if err := r.event(ev); err != nil {
			return err
		}
		if err := r.e.cfg.Agents.RunScript(ctx, i.AgentID, "post-deploy", nil); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.fail(&Failure{Instance: fmt.Sprintf("%s/%d (%s)", i.Group, i.Index, i.ID), Process: "post-deploy", Error: err.Error(), LogTail: tail(err.Error())})
			ev.State, ev.Error = "failed", err.Error()
			return r.event(ev)
		}
		ev.State, ev.Progress = "finished", 100
		if err := r.event(ev); err != nil {
			return err
		}
	}
	return nil
}

// tail keeps the end of a long message, where scripts put the reason they failed.
func tail(s string) string {
	const max = 2048
	if len(s) <= max {
		return s
	}
	return s[len(s)-max:]
}
