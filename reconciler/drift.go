package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/reconciler/status"
	"github.com/bosun-gitops/bosun/state"
)

// Agents answers get_state for the drift check; *protocol.Client. Its own timeouts bound
// each call; the drift check adds driftAgentTimeout on top.
type Agents interface {
	GetState(ctx context.Context, agentID string, full bool) (protocol.State, error)
}

// AppliedRecords is read from the Store when it offers it (*postgres.Store does): what
// converge last applied to each instance, for the configuration-hash comparison. A Store
// without it skips that comparison.
type AppliedRecords interface {
	AppliedByInstance(ctx context.Context, deployment string) (map[string]state.Applied, error)
}

// TaskLocks is read from the Store when it offers it (*postgres.Store does): a deployment
// whose lock a task holds is being changed on purpose (jobs stopped, VMs recreated), so the
// drift check leaves it until the task ends.
type TaskLocks interface {
	Locks(ctx context.Context) ([]state.Lock, error)
}

// TaskHistory is read from the Store when it offers it (*postgres.Store does): after a
// failed rollout the agents are not asked, as their instances are knowingly not what was
// last applied (a failed canary runs the new spec, converge recorded the old one) and the
// failure's status commit must stay what the deployment shows until the next commit.
type TaskHistory interface {
	Tasks(ctx context.Context, f state.TaskFilter) ([]state.Task, error)
}

// Drift kinds.
const (
	// DriftVMMissing: the cloud no longer has the instance's VM (has_vm). Repair recreates
	// it (a resurrect task).
	DriftVMMissing = "vm missing"
	// DriftJobsNotRunning: the agent says failing or stopped on an instance whose desired
	// state is started. Repair restarts the instance (an instance_action restart task).
	DriftJobsNotRunning = "jobs not running"
	// DriftConfigChanged: the agent's applied configuration hash is not the one converge
	// applied. Repair restarts the instance, which re-applies the recorded spec: BOSH's
	// least invasive way back (no new VM, the disk stays attached).
	DriftConfigChanged = "configuration changed on the VM"
	// DriftAgentUnresponsive: get_state failed on a VM the cloud has. Never repaired by the
	// drift check: resurrecting unresponsive agents is the health monitor's, with its
	// meltdown guard, which a second resurrector would bypass. Report mode reports it.
	DriftAgentUnresponsive = "agent unresponsive"
)

// driftAgentTimeout bounds one get_state of the drift check; driftAgentCalls bounds how
// many run at once.
const (
	driftAgentTimeout = 30 * time.Second
	driftAgentCalls   = 8
)

func (r *Reconciler) driftLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.DriftInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := r.CheckDrift(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("drift check", "err", err)
		}
	}
}

// Drift is what one check newly found drifted in one deployment, and what was done.
type Drift struct {
	Deployment string
	Mode       string // repair or report
	// Instances and Names are the instances whose VM the cloud no longer has; Task is the
	// resurrect task enqueued to recreate them.
	Instances []string
	Names     []string
	Task      int64
	// Items is every drift found (VMs missing included), by instance name.
	Items []DriftItem
	// Meltdown is set when too many VMs were missing at once to recreate any: the drift
	// was reported, as in report mode.
	Meltdown bool
}

// DriftItem is one instance's drift.
type DriftItem struct {
	Kind     string // a Drift* constant
	Instance string // id
	Name     string // group/index
	// Processes names the processes not running (DriftJobsNotRunning); LogTail is the
	// first failing one's log tail as the agent gave it.
	Processes []string
	LogTail   string
	Detail    string
	// Task is the task enqueued to repair it (0 when reported or left to the monitor).
	Task int64
}

// key names a drift for "already acted on". The mode is part of it: a drift only reported
// is repaired once bosun.yml switches the deployment to repair (and a repair that did not
// help is reported once after a switch to report).
// DriftMemory keeps what each deployment's drift check acted on across director
// restarts; *postgres.Store is one. Without it the memory lasts as long as the process.
type DriftMemory interface {
	DriftSeen(ctx context.Context, deployment string) ([]string, error)
	PutDriftSeen(ctx context.Context, deployment string, keys []string) error
}

// loadDriftSeen returns what the deployment's last check acted on, from the store the
// first time this process checks it.
func (r *Reconciler) loadDriftSeen(ctx context.Context, deployment string) map[string]bool {
	r.driftMu.Lock()
	seen, ok := r.driftSeen[deployment]
	r.driftMu.Unlock()
	if ok {
		return seen
	}
	seen = map[string]bool{}
	if m, ok := r.cfg.Store.(DriftMemory); ok {
		keys, err := m.DriftSeen(ctx, deployment)
		if err != nil {
			r.log.Warn("drift check: what earlier checks acted on could not be read; a lasting drift may be acted on again", "deployment", deployment, "err", err)
		}
		for _, k := range keys {
			seen[k] = true
		}
	}
	r.driftMu.Lock()
	r.driftSeen[deployment] = seen
	r.driftMu.Unlock()
	return seen
}

// saveDriftSeen records what the check acted on when it differs from before.
func (r *Reconciler) saveDriftSeen(ctx context.Context, deployment string, before map[string]bool) {
	m, ok := r.cfg.Store.(DriftMemory)
	if !ok {
		return
	}
	r.driftMu.Lock()
	now := r.driftSeen[deployment]
	same := maps.Equal(before, now)
	keys := slices.Sorted(maps.Keys(now))
	r.driftMu.Unlock()
	if same {
		return
	}
	if err := m.PutDriftSeen(context.WithoutCancel(ctx), deployment, keys); err != nil {
		r.log.Warn("drift check: what it acted on could not be recorded; after a restart a lasting drift may be acted on again", "deployment", deployment, "err", err)
	}
}

func (it DriftItem) key(mode, vmcid string) string {
	return mode + "|" + it.Kind + "|" + it.Instance + "|" + vmcid
}

func (it DriftItem) describe() string {
	switch it.Kind {
	case DriftJobsNotRunning:
		return fmt.Sprintf("jobs not running on %s (%s)", it.Name, it.Detail)
	case DriftConfigChanged:
		return fmt.Sprintf("configuration changed on the VM of %s (%s)", it.Name, it.Detail)
	case DriftAgentUnresponsive:
		return fmt.Sprintf("agent of %s unresponsive", it.Name)
	}
	return it.Kind + " on " + it.Name
}

// CheckDrift compares every converged deployment with reality and, per deployment as
// bosun.yml says, repairs it (enqueues tasks) or reports it (commits a drifted status).
// VMs come from the cloud (has_vm); with Agents, every instance whose VM exists is asked
// get_state: failing or stopped jobs on a started instance and a configuration hash other
// than the one converge applied are drift too, as is an agent that does not answer.
//
// The rule for repair: the drift check repairs what only it sees (missing VMs, jobs not
// running, configuration changed); unresponsive agents are the health monitor's and are
// reported only. A drift already acted on is not acted on again while it lasts (a repair
// that did not help is not retried in a loop; it shows in the task's outcome). Suspended
// deployments and deployments a task is changing are skipped, and their drift is acted
// on once they are neither; the agents of a deployment whose last rollout failed are not
// asked until a rollout succeeds (TaskHistory).
func (r *Reconciler) CheckDrift(ctx context.Context) ([]Drift, error) {
	if r.cfg.Cloud == nil && r.cfg.Agents == nil {
		return nil, nil
	}
	renders, err := r.cfg.Store.DeploymentRenders(ctx)
	if err != nil {
		return nil, err
	}
	var cfg RepoConfig
	r.mu.Lock()
	if r.prev != nil {
		cfg = r.prev.Config
	}
	r.mu.Unlock()
	locked := map[string]bool{}
	if tl, ok := r.cfg.Store.(TaskLocks); ok {
		locks, err := tl.Locks(ctx)
		if err != nil {
			return nil, fmt.Errorf("drift check: deployment locks: %w", err)
		}
		for _, l := range locks {
			locked[l.Deployment] = true
		}
	}
	var out []Drift
	for _, dr := range renders {
		if locked[dr.Deployment] || r.suspended(ctx, cfg, dr.Deployment) {
			continue
		}
		d, err := r.checkDeployment(ctx, dr, cfg.DriftMode(dr.Deployment))
		if err != nil {
			return out, err
		}
		if len(d.Items) > 0 {
			out = append(out, d)
		}
	}
	return out, nil
}

// checkDeployment finds one deployment's drift and acts on what is new.
func (r *Reconciler) checkDeployment(ctx context.Context, dr state.DeploymentRender, mode string) (Drift, error) {
	d := Drift{Deployment: dr.Deployment, Mode: mode}
	insts, err := r.cfg.Store.Instances(ctx, dr.Deployment)
	if err != nil {
		return d, err
	}
	var applied map[string]state.Applied
	if ar, ok := r.cfg.Store.(AppliedRecords); ok && r.cfg.Agents != nil {
		if applied, err = ar.AppliedByInstance(ctx, dr.Deployment); err != nil {
			return d, fmt.Errorf("drift check of %s: applied records: %w", dr.Deployment, err)
		}
	}
	var alive []state.Instance
	vmOf := map[string]string{}
	var found []DriftItem
	for _, in := range insts {
		if in.VMCID == "" || in.State == state.InstanceDetached {
			continue
		}
		vmOf[in.ID] = in.VMCID
		name := fmt.Sprintf("%s/%d", in.Group, in.Index)
		if r.cfg.Cloud != nil {
			ok, err := r.cfg.Cloud.HasVM(ctx, cpi.VMCID(in.VMCID))
			if err != nil {
				return d, fmt.Errorf("drift check of %s: has_vm %s: %w", dr.Deployment, in.VMCID, err)
			}
			if !ok {
				found = append(found, DriftItem{Kind: DriftVMMissing, Instance: in.ID, Name: name, Detail: "VM " + in.VMCID})
				continue
			}
		}
		if r.cfg.Agents != nil && in.AgentID != "" {
			alive = append(alive, in)
		}
	}
	if len(alive) > 0 && r.rolloutFailed(ctx, dr.Deployment) {
		alive = nil
	}
	found = append(found, r.checkAgents(ctx, alive, applied)...)

	// Act only on items not acted on before; forget items that went away, so a drift that
	// comes back is acted on again.
	missing, total := 0, 0
	for _, in := range insts {
		if in.State != state.InstanceDetached {
			total++
		}
	}
	for _, it := range found {
		if it.Kind == DriftVMMissing {
			missing++
		}
	}
	meltdown := ""
	if m := r.cfg.DriftMeltdown; mode == DriftRepair && missing >= m.MinDown && float64(missing) >= m.Percent*float64(total) {
		meltdown = fmt.Sprintf("meltdown: %d of %d VMs missing at once, so none is recreated (fix the cloud, then bosun cck)", missing, total)
	}
	// Missing VMs reported in a meltdown are remembered as such, not as repaired: once
	// the meltdown is over, those still missing are recreated.
	keyMode := func(it DriftItem) string {
		if meltdown != "" && it.Kind == DriftVMMissing {
			return "meltdown"
		}
		return mode
	}
	seenNow := map[string]bool{}
	var fresh []DriftItem
	seen := r.loadDriftSeen(ctx, dr.Deployment)
	defer r.saveDriftSeen(ctx, dr.Deployment, seen)
	r.driftMu.Lock()
	for _, it := range found {
		k := it.key(keyMode(it), vmOf[it.Instance])
		seenNow[k] = true
		if !seen[k] {
			fresh = append(fresh, it)
		}
	}
	r.driftSeen[dr.Deployment] = seenNow
	r.driftMu.Unlock()
	if len(fresh) == 0 {
		return d, nil
	}
	slices.SortFunc(fresh, func(a, b DriftItem) int { return strings.Compare(a.Name+a.Kind, b.Name+b.Kind) })
	for _, it := range fresh {
		if it.Kind == DriftVMMissing {
			d.Instances = append(d.Instances, it.Instance)
			d.Names = append(d.Names, it.Name)
		}
	}
	if meltdown != "" {
		r.log.Warn("drift check: meltdown, reporting instead of repairing", "deployment", dr.Deployment, "missing", missing, "instances", total)
	}
	if mode == DriftReport || meltdown != "" {
		d.Meltdown = meltdown != ""
		r.reportDrift(ctx, dr, fresh, meltdown)
	} else if err := r.repairDrift(ctx, dr, &d, fresh); err != nil {
		// Forget what was not acted on, so the next check tries again.
		r.driftMu.Lock()
		for _, it := range fresh {
			if it.Task == 0 && it.Kind != DriftAgentUnresponsive {
				delete(r.driftSeen[dr.Deployment], it.key(keyMode(it), vmOf[it.Instance]))
			}
		}
		r.driftMu.Unlock()
		return d, err
	}
	d.Items = fresh
	var kinds []string
	var tasks []int64
	for _, it := range fresh {
		kinds = append(kinds, it.Name+": "+it.Kind)
		if it.Task != 0 && !slices.Contains(tasks, it.Task) {
			tasks = append(tasks, it.Task)
		}
	}
	r.log.Warn("drift found", "deployment", dr.Deployment, "mode", mode, "drift", kinds, "tasks", tasks)
	return d, nil
}

// checkAgents asks every instance's agent its state, a few at a time.
func (r *Reconciler) checkAgents(ctx context.Context, insts []state.Instance, applied map[string]state.Applied) []DriftItem {
	items := make([]*DriftItem, len(insts))
	sem := make(chan struct{}, driftAgentCalls)
	var wg sync.WaitGroup
	for i, in := range insts {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			actx, cancel := context.WithTimeout(ctx, driftAgentTimeout)
			defer cancel()
			st, err := r.cfg.Agents.GetState(actx, in.AgentID, false)
			if ctx.Err() != nil {
				return
			}
			items[i] = agentDrift(in, st, err, converge.AppliedConfigurationHash(applied[in.ID]))
		})
	}
	wg.Wait()
	var out []DriftItem
	for _, it := range items {
		if it != nil {
			out = append(out, *it)
		}
	}
	return out
}

// agentDrift judges one agent's answer; nil means no drift. A configuration change comes
// before stopped jobs: restarting re-applies the recorded spec and mends both.
func agentDrift(in state.Instance, st protocol.State, err error, appliedHash string) *DriftItem {
	it := &DriftItem{Instance: in.ID, Name: fmt.Sprintf("%s/%d", in.Group, in.Index)}
	switch {
	case err != nil:
		it.Kind, it.Detail = DriftAgentUnresponsive, err.Error()
	case appliedHash != "" && st.ConfigurationHash != appliedHash:
		it.Kind = DriftConfigChanged
		it.Detail = fmt.Sprintf("applied %s, the agent has %s", shortHash(appliedHash), firstNonEmpty(shortHash(st.ConfigurationHash), "none"))
	case in.State == state.InstanceStarted && (st.JobState == protocol.JobFailing || st.JobState == protocol.JobStopped):
		it.Kind = DriftJobsNotRunning
		for _, p := range st.Processes {
			if p.State != protocol.JobRunning {
				it.Processes = append(it.Processes, p.Name)
				if it.LogTail == "" {
					it.LogTail = p.LogTail
				}
			}
		}
		it.Detail = "job state " + st.JobState
		if len(it.Processes) > 0 {
			it.Detail = fmt.Sprintf("process %s %s", strings.Join(it.Processes, ", "), st.JobState)
		}
	default:
		return nil
	}
	return it
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// reportDrift commits one drifted status naming every new drift of the deployment.
func (r *Reconciler) reportDrift(ctx context.Context, dr state.DeploymentRender, items []DriftItem, why string) {
	var missing, parts []string
	for _, it := range items {
		if it.Kind == DriftVMMissing {
			missing = append(missing, it.Name)
		} else {
			parts = append(parts, it.describe())
		}
	}
	if len(missing) > 0 {
		parts = append([]string{fmt.Sprintf("%d VM(s) missing (%s)", len(missing), strings.Join(missing, ", "))}, parts...)
	}
	f := &status.Failure{Message: strings.Join(parts, "; ")}
	if len(missing) > 0 && len(parts) == 1 {
		f.Message = "the cloud no longer has the VMs of " + strings.Join(missing, ", ")
	}
	// The first instance whose jobs stopped is named with its process and log, as a failed
	// rollout names its failing instance.
	for _, it := range items {
		if it.Kind == DriftJobsNotRunning {
			f.Instance = it.Name + " (" + it.Instance + ")"
			if len(it.Processes) > 0 {
				f.Process = it.Processes[0]
			}
			f.LogTail = it.LogTail
			break
		}
	}
	now := r.cfg.Now()
	r.writeStatus(ctx, status.Outcome{Deployment: dr.Deployment, SourceCommit: dr.Revision, Result: status.Drifted,
		StartedAt: now, FinishedAt: now,
		Summary: fmt.Sprintf("drift: %s; %s", strings.Join(parts, "; "), firstNonEmpty(why, "reported only, as bosun.yml says")),
		Error:   f})
}

// repairDrift enqueues one resurrect task for the missing VMs and one restart task per
// instance whose jobs stopped or whose configuration changed; unresponsive agents are left
// to the health monitor.
func (r *Reconciler) repairDrift(ctx context.Context, dr state.DeploymentRender, d *Drift, items []DriftItem) error {
	if len(d.Instances) > 0 {
		params, _ := json.Marshal(state.ResurrectParams{Instances: d.Instances, Reason: ReasonVMMissing})
		t, err := r.cfg.Store.Enqueue(ctx, state.Task{Type: state.TaskResurrect, Deployment: dr.Deployment, Params: params, User: "bosun",
			Description: fmt.Sprintf("repair drift of %s: recreate %s", dr.Deployment, strings.Join(d.Names, ", "))})
		if err != nil {
			return fmt.Errorf("drift repair of %s: %w", dr.Deployment, err)
		}
		d.Task = t.ID
		for i := range items {
			if items[i].Kind == DriftVMMissing {
				items[i].Task = t.ID
			}
		}
	}
	restarted := map[string]bool{}
	for i := range items {
		it := &items[i]
		switch it.Kind {
		case DriftVMMissing, DriftAgentUnresponsive:
			continue
		}
		if restarted[it.Instance] {
			continue
		}
		restarted[it.Instance] = true
		group, _, _ := strings.Cut(it.Name, "/")
		params, _ := json.Marshal(state.ActionParams{Action: state.ActionRestart, Group: group, Instance: it.Instance,
			Reason: fmt.Sprintf("drift repair: %s (%s)", it.Kind, it.Detail)})
		t, err := r.cfg.Store.Enqueue(ctx, state.Task{Type: state.TaskAction, Deployment: dr.Deployment, Params: params, User: "bosun",
			Description: fmt.Sprintf("repair drift of %s: restart %s (%s)", dr.Deployment, it.Name, it.describe())})
		if err != nil {
			return fmt.Errorf("drift repair of %s: %w", dr.Deployment, err)
		}
		it.Task = t.ID
	}
	return nil
}

// rolloutFailed reports whether the deployment's newest finished deploy task failed.
func (r *Reconciler) rolloutFailed(ctx context.Context, deployment string) bool {
	th, ok := r.cfg.Store.(TaskHistory)
	if !ok {
		return false
	}
	ts, err := th.Tasks(ctx, state.TaskFilter{Deployment: deployment, Limit: 50})
	if err != nil {
		r.log.Warn("drift check: could not read the deployment's tasks; asking its agents anyway", "deployment", deployment, "err", err)
		return false
	}
	for _, t := range ts { // newest first
		if t.Type == state.TaskDeploy && state.TaskFinal(t.State) {
			return t.State != state.TaskDone
		}
	}
	return false
}

// Meltdown is the point at which missing VMs are too many to recreate: at least MinDown
// instances and Percent (0 to 1) of the deployment's.
type Meltdown struct {
	MinDown int
	Percent float64
}
