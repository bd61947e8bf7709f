package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/state"
)

// Report says what one analysis found and did.
type Report struct {
	// Unresponsive, Failing and Rogue name instances (group/id) and, for rogue, agent ids.
	Unresponsive []string `json:"unresponsive,omitempty"`
	Failing      []string `json:"failing,omitempty"`
	Rogue        []string `json:"rogue,omitempty"`
	// Meltdown lists deployments in meltdown, where nothing was resurrected.
	Meltdown []string `json:"meltdown,omitempty"`
	// Enqueued lists the resurrect tasks queued.
	Enqueued []int64 `json:"enqueued,omitempty"`
}

// Analyze reloads the inventory, then looks at every expected agent's last heartbeat:
// raising alerts for unresponsive, failing and rogue agents and resurrecting unresponsive
// instances. Deployments a task holds are skipped (their VMs may be legitimately down),
// and get a fresh agent timeout when the task ends. Run calls it every AnalyzeInterval
// while this monitor is the active one.
func (m *Monitor) Analyze(ctx context.Context) (Report, error) {
	m.analyzeMu.Lock()
	defer m.analyzeMu.Unlock()
	var rep Report
	now := m.cfg.Now()
	locks, err := m.inv.Locks(ctx)
	if err != nil {
		return rep, fmt.Errorf("health analysis: %w", err)
	}
	locked := map[string]bool{}
	for _, l := range locks {
		locked[l.Deployment] = true
	}
	inv, err := m.loadInventory(ctx, now, locked)
	if err != nil {
		return rep, err
	}
	for d := range m.locked {
		if !locked[d] {
			m.unlockedAt[d] = now
		}
	}
	m.locked = locked

	// One pass under the heartbeat lock: copy what analysis needs, find rogues, forget
	// agents long gone.
	type seen struct {
		last     time.Time
		jobState jobState
	}
	heard := make(map[string]seen, len(inv.byAgent))
	var rogues []string
	// An agent without a spec may be a compilation VM a running task made: only rogue
	// when no task holds any deployment.
	busy := len(locked) > 0
	m.mu.Lock()
	for id, st := range m.agents {
		if _, ok := inv.byAgent[id]; ok {
			heard[id] = seen{time.Unix(0, st.last), st.jobState}
			continue
		}
		silent := now.Sub(time.Unix(0, st.last))
		switch {
		case silent > 2*m.cfg.AgentTimeout:
			delete(m.agents, id)
		case silent <= m.cfg.AgentTimeout && now.Sub(time.Unix(0, st.first)) >= m.cfg.RogueAfter && !(st.unapplied && busy):
			rogues = append(rogues, id)
		}
	}
	clear(m.badLogged)
	m.mu.Unlock()

	slices.Sort(rogues)
	rep.Rogue = rogues
	isRogue := map[string]bool{}
	for _, id := range rogues {
		isRogue[id] = true
		m.rogue[id] = true
		m.alert.send(Alert{
			Severity: SeverityCritical, Category: CategoryVMHealth, AgentID: id,
			Title:   "agent " + id + " is not a part of any deployment",
			Summary: fmt.Sprintf("agent %s has been heartbeating for more than %s, but no instance names it: an orphaned VM, or a VM the director lost track of", id, m.cfg.RogueAfter),
			key:     "rogue:" + id,
		})
	}
	for id := range m.rogue {
		if !isRogue[id] {
			delete(m.rogue, id)
			m.alert.resolve("rogue:" + id)
		}
	}

	since := time.Unix(0, m.since.Load())
	names := make([]string, 0, len(inv.deployments))
	for d := range inv.deployments {
		names = append(names, d)
	}
	slices.Sort(names)
	var errs []error
	for _, dep := range names {
		if locked[dep] {
			continue
		}
		var downNow []down
		for _, e := range inv.deployments[dep] {
			inst := e.inst
			if inst.VMCID == "" || inst.AgentID == "" {
				m.alert.send(Alert{
					Severity: SeverityCritical, Category: CategoryVMHealth, Deployment: dep, Instance: e.name(),
					Title:   e.name() + " has no VM",
					Summary: "the instance expects a VM but the director records none; `bosun cck` can recreate it",
					key:     "novm:" + inst.ID,
				})
				continue
			}
			m.alert.resolve("novm:" + inst.ID)
			h := heard[inst.AgentID]
			baseline := latest(h.last, since, e.knownSince, m.unlockedAt[dep])
			if silent := now.Sub(baseline); silent > m.cfg.AgentTimeout {
				what := fmt.Sprintf("no heartbeat for %s", silent.Round(time.Second))
				if h.last.IsZero() {
					what = fmt.Sprintf("no heartbeat heard since the monitor started watching it %s ago", silent.Round(time.Second))
				}
				rep.Unresponsive = append(rep.Unresponsive, e.name())
				downNow = append(downNow, down{e, silent})
				m.alert.send(Alert{
					Severity: SeverityCritical, Category: CategoryVMHealth, Deployment: dep, Instance: e.name(), AgentID: inst.AgentID,
					Title:   e.name() + " (agent " + inst.AgentID + ") has timed out",
					Summary: what + fmt.Sprintf(" (agent timeout %s)", m.cfg.AgentTimeout),
					key:     "timeout:" + inst.AgentID,
				})
				continue
			}
			if m.alert.active("timeout:" + inst.AgentID) {
				m.log.Info("agent heartbeating again", "deployment", dep, "instance", e.name(), "agent", inst.AgentID)
				m.alert.resolve("timeout:" + inst.AgentID)
			}
			m.alert.resolve("norez:" + inst.ID)
			delete(m.retry, inst.ID)
			if h.jobState == jobFailing && !h.last.IsZero() {
				rep.Failing = append(rep.Failing, e.name())
				m.alert.send(Alert{
					Severity: SeverityError, Category: CategoryVMHealth, Deployment: dep, Instance: e.name(), AgentID: inst.AgentID,
					Title:   e.name() + " is failing",
					Summary: "the agent reports job_state failing: a job's process is not running; see `bosun instances` and the job's logs",
					key:     "failing:" + inst.ID,
				})
			} else {
				m.alert.resolve("failing:" + inst.ID)
			}
		}
		ids, meltdown, err := m.resurrect(ctx, dep, inv.deployments[dep], downNow, now)
		if err != nil {
			errs = append(errs, err)
		}
		if meltdown {
			rep.Meltdown = append(rep.Meltdown, dep)
		}
		rep.Enqueued = append(rep.Enqueued, ids...)
	}
	for id := range m.retry {
		if _, ok := inv.byInstance[id]; !ok {
			delete(m.retry, id)
		}
	}
	// Forget the windows of deployments that are gone.
	for dep := range m.down {
		if _, ok := inv.deployments[dep]; !ok {
			delete(m.down, dep)
			m.alert.resolve("meltdown:" + dep)
		}
	}
	for dep := range m.unlockedAt {
		if _, ok := inv.deployments[dep]; !ok && !locked[dep] {
			delete(m.unlockedAt, dep)
		}
	}
	return rep, errors.Join(errs...)
}

type down struct {
	e      *expected
	silent time.Duration
}

func latest(ts ...time.Time) time.Time {
	var t time.Time
	for _, x := range ts {
		if x.After(t) {
			t = x
		}
	}
	return t
}

// loadInventory reads every deployment's instances and publishes them to the heartbeat
// handler. Instances first seen now get a full agent timeout before they can be
// unresponsive; those of the first load count from when the monitor began listening.
func (m *Monitor) loadInventory(ctx context.Context, now time.Time, locked map[string]bool) (*inventory, error) {
	deps, err := m.inv.Deployments(ctx)
	if err != nil {
		return nil, fmt.Errorf("health analysis: %w", err)
	}
	prev := m.invSnap.Load()
	first := prev.loadedAt.IsZero()
	inv := &inventory{
		byAgent:     make(map[string]*expected, len(prev.byAgent)),
		byInstance:  make(map[string]*expected, len(prev.byInstance)),
		deployments: make(map[string][]*expected, len(deps)),
		locked:      locked,
		loadedAt:    now,
	}
	for _, d := range deps {
		insts, err := m.inv.Instances(ctx, d.Name)
		if err != nil {
			return nil, fmt.Errorf("health analysis: %w", err)
		}
		list := make([]*expected, 0, len(insts))
		for _, i := range insts {
			if i.State == state.InstanceDetached {
				continue // no VM wanted
			}
			e := &expected{inst: i}
			switch p, ok := prev.byAgent[i.AgentID]; {
			case ok && p.inst.ID == i.ID:
				e.knownSince = p.knownSince
			case !first:
				e.knownSince = now
			}
			list = append(list, e)
			inv.byInstance[i.ID] = e
			if i.AgentID != "" && i.VMCID != "" {
				inv.byAgent[i.AgentID] = e
			}
		}
		inv.deployments[d.Name] = list
	}
	m.invSnap.Store(inv)
	return inv, nil
}

// resurrect applies meltdown protection and the deployment's rules to the instances down
// now, and queues one resurrect task for those that may and are not already queued.
func (m *Monitor) resurrect(ctx context.Context, dep string, all []*expected, downNow []down, now time.Time) (enqueued []int64, meltdown bool, err error) {
	w := m.down[dep]
	if w == nil {
		w = map[string]time.Time{}
		m.down[dep] = w
	}
	for _, d := range downNow {
		w[d.e.inst.ID] = now
	}
	present := make(map[string]bool, len(all))
	for _, e := range all {
		present[e.inst.ID] = true
	}
	for id, at := range w {
		if now.Sub(at) > m.cfg.Meltdown.Window || !present[id] {
			delete(w, id)
		}
	}
	unhealthy, total := len(w), len(all)
	key := "meltdown:" + dep
	if unhealthy >= m.cfg.Meltdown.MinDown && total > 0 && float64(unhealthy) >= m.cfg.Meltdown.Percent*float64(total) {
		if m.alert.send(Alert{
			Severity: SeverityAlert, Category: CategoryDeploymentHealth, Deployment: dep,
			Title: "We are in meltdown: " + dep,
			Summary: fmt.Sprintf("%d of %d instances of %s went unresponsive within %s (thresholds: at least %d and %.0f%%); "+
				"the resurrector recreates nothing until fewer are down — look for a common cause (an AZ, the network, the cloud)",
				unhealthy, total, dep, m.cfg.Meltdown.Window, m.cfg.Meltdown.MinDown, 100*m.cfg.Meltdown.Percent),
			key: key,
		}) {
			m.meltdowns.Add(1)
		}
		return nil, true, nil
	}
	if m.alert.active(key) {
		m.alert.resolve(key)
		m.log.Info("meltdown over", "deployment", dep, "unhealthy", unhealthy, "total", total)
	}
	if len(downNow) == 0 {
		return nil, false, nil
	}
	rules := m.RulesFor(dep)
	var cands []down
	for _, d := range downNow {
		if ok, why := rules.Allows(d.e.inst.Group, d.e.inst.DiskCID != ""); !ok {
			m.alert.send(Alert{
				Severity: SeverityWarning, Category: CategoryVMHealth, Deployment: dep, Instance: d.e.name(), AgentID: d.e.inst.AgentID,
				Title:   d.e.name() + " is unresponsive and will not be resurrected",
				Summary: "not resurrected: " + why + "; `bosun cck` can recreate it",
				key:     "norez:" + d.e.inst.ID,
			})
			continue
		}
		cands = append(cands, d)
	}
	if len(cands) == 0 {
		return nil, false, nil
	}
	// BOSH skips when it cannot tell whether a scan is already queued: a duplicate
	// recreate is worse than waiting one more interval.
	pending, err := m.queue.UnfinishedTasks(ctx, dep, state.TaskResurrect)
	if err != nil {
		return nil, false, fmt.Errorf("resurrect in %s: %w", dep, err)
	}
	queued := map[string]bool{}
	for _, t := range pending {
		var p state.ResurrectParams
		if json.Unmarshal(t.Params, &p) == nil {
			for _, id := range p.Instances {
				queued[id] = true
			}
		}
	}
	cands = slices.DeleteFunc(cands, func(d down) bool {
		r := m.retry[d.e.inst.ID]
		return queued[d.e.inst.ID] || r != nil && now.Before(r.next)
	})
	if len(cands) == 0 {
		return nil, false, nil
	}
	slices.SortFunc(cands, func(a, b down) int { return strings.Compare(a.e.name(), b.e.name()) })
	var ids, names, reasons []string
	for _, d := range cands {
		ids = append(ids, d.e.inst.ID)
		names = append(names, d.e.name())
		reasons = append(reasons, fmt.Sprintf("%s unresponsive for %ds", d.e.name(), int(d.silent.Seconds())))
	}
	params, _ := json.Marshal(state.ResurrectParams{Instances: ids, Reason: truncate(strings.Join(reasons, ", "), 1000)})
	t, err := m.queue.Enqueue(ctx, state.Task{
		Type:        state.TaskResurrect,
		Deployment:  dep,
		Description: truncate("resurrect "+strings.Join(names, ", "), 500),
		Params:      params,
		User:        "health_monitor",
	})
	if err != nil {
		return nil, false, fmt.Errorf("resurrect in %s: %w", dep, err)
	}
	m.enqueued.Add(1)
	for _, d := range cands {
		// The next try of the same instance waits 1, 2, 4… agent timeouts (at most the
		// meltdown window) after this one.
		r := m.retry[d.e.inst.ID]
		if r == nil {
			r = &retryState{}
			m.retry[d.e.inst.ID] = r
		}
		wait := m.cfg.AgentTimeout << min(r.attempts, 16)
		r.attempts++
		r.next = now.Add(min(wait, max(m.cfg.Meltdown.Window, m.cfg.AgentTimeout)))
	}
	m.log.Info("resurrection queued", "deployment", dep, "task", t.ID, "instances", names)
	m.alert.send(Alert{
		Severity: SeverityWarning, Category: CategoryDeploymentHealth, Deployment: dep,
		Title:   fmt.Sprintf("Recreating %d unresponsive instance(s) of %s", len(ids), dep),
		Summary: fmt.Sprintf("task %d recreates %s", t.ID, strings.Join(names, ", ")),
	})
	return []int64{t.ID}, false, nil
}
