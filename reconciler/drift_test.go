package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/state"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fakeAgents answers get_state from a table by agent id; an agent not in it is healthy
// (running, with the hash converge applied).
type fakeAgents struct {
	mu     sync.Mutex
	states map[string]protocol.State
	errs   map[string]error
	calls  map[string]int
}

func newFakeAgents() *fakeAgents {
	return &fakeAgents{states: map[string]protocol.State{}, errs: map[string]error{}, calls: map[string]int{}}
}

func (a *fakeAgents) GetState(_ context.Context, agentID string, _ bool) (protocol.State, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls[agentID]++
	if err := a.errs[agentID]; err != nil {
		return protocol.State{}, err
	}
	if st, ok := a.states[agentID]; ok {
		return st, nil
	}
	st := protocol.State{AgentID: agentID, JobState: protocol.JobRunning, Processes: []protocol.Process{{Name: "web", State: protocol.JobRunning}}}
	st.ConfigurationHash = "hash-applied"
	return st, nil
}

func (a *fakeAgents) set(agentID string, st protocol.State, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.states, agentID)
	delete(a.errs, agentID)
	if err != nil {
		a.errs[agentID] = err
	} else if st.AgentID != "" {
		a.states[agentID] = st
	}
}

func (a *fakeAgents) callsOf(agentID string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[agentID]
}

func (a *fakeAgents) called() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		n += c
	}
	return n
}

// driftHarness deploys demo (drift: repair, web/0 and web/1) and other (drift: report,
// web/0), gives every instance an agent and an applied configuration hash, and checks
// drift with fake agents.
type driftHarness struct {
	*harness
	agents *fakeAgents
	insts  map[string]state.Instance // "demo web/0" → instance
	// after is the last task the deploys made: queued() lists only tasks after it.
	after int64
}

func newDriftHarness(t *testing.T) *driftHarness {
	h := newHarness(t)
	files := templateFiles(t)
	files["bosun.yml"] = strings.Replace(files["bosun.yml"], "deployments:\n  demo:\n", "deployments:\n  other:\n    drift: report\n  demo:\n", 1)
	h.repo.commit("first", files)
	for _, task := range h.reconcile(state.RevisionAccepted).Tasks {
		h.mustRun(task)
	}
	dh := &driftHarness{harness: h, agents: newFakeAgents(), insts: map[string]state.Instance{}}
	for _, dep := range []string{"demo", "other"} {
		insts, err := h.store.Instances(h.ctx, dep)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range insts {
			in.AgentID = "agent-" + in.ID
			if in, err = h.store.PutInstance(h.ctx, in); err != nil {
				t.Fatal(err)
			}
			if err := h.store.SetApplied(h.ctx, state.Applied{InstanceID: in.ID, Record: json.RawMessage(`{"spec":{"configuration_hash":"hash-applied"}}`)}); err != nil {
				t.Fatal(err)
			}
			dh.insts[dep+" "+in.Group+"/"+strconv.Itoa(in.Index)] = in
		}
	}
	h.r.cfg.Agents = dh.agents
	ts, err := h.store.Tasks(h.ctx, state.TaskFilter{Limit: 1})
	if err != nil || len(ts) == 0 {
		t.Fatalf("tasks after deploying: %v, %v", ts, err)
	}
	dh.after = ts[0].ID
	return dh
}

func (h *driftHarness) inst(name string) state.Instance {
	h.t.Helper()
	in, ok := h.insts[name]
	if !ok {
		h.t.Fatalf("no instance %q", name)
	}
	return in
}

func (h *driftHarness) check() []Drift {
	h.t.Helper()
	d, err := h.r.CheckDrift(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

// queued lists the queued tasks the drift checks made: type, deployment and params (keys
// sorted), oldest first.
func (h *driftHarness) queued() []string {
	h.t.Helper()
	ts, err := h.store.Tasks(h.ctx, state.TaskFilter{States: []string{state.TaskQueued}})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, t := range slices.Backward(ts) {
		if t.ID > h.after {
			out = append(out, taskLine(t.Type, t.Deployment, t.Params))
		}
	}
	return out
}

func taskLine(typ, dep string, params json.RawMessage) string {
	var m map[string]any
	_ = json.Unmarshal(params, &m)
	delete(m, "reason") // prose for the status commit; TestDriftReportedThenRepaired reads it
	b, _ := json.Marshal(m)
	return typ + " " + dep + " " + string(b)
}

func restartTask(dep, group, id string) string {
	p, _ := json.Marshal(state.ActionParams{Action: state.ActionRestart, Group: group, Instance: id})
	return taskLine(state.TaskAction, dep, p)
}

func failingState(agentID, jobState string) protocol.State {
	st := protocol.State{AgentID: agentID, JobState: jobState, Processes: []protocol.Process{
		{Name: "web", State: jobState, LogTail: "greeter: bind: address in use"}, {Name: "sidecar", State: protocol.JobRunning}}}
	st.ConfigurationHash = "hash-applied"
	return st
}

// TestDriftAgentKinds: each agent-side drift, on demo (repair) and other (report) at once.
func TestDriftAgentKinds(t *testing.T) {
	changed := func(id string) protocol.State {
		st := protocol.State{AgentID: id, JobState: protocol.JobRunning}
		st.ConfigurationHash = "hash-by-hand"
		return st
	}
	cases := []struct {
		name string
		// set makes agentID drift.
		set        func(a *fakeAgents, agentID string)
		kind       string
		repairs    bool     // demo gets a restart task
		reportHas  []string // in other's drifted status commit
		reportProc string   // the process the status file names
	}{
		{name: "jobs failing", set: func(a *fakeAgents, id string) { a.set(id, failingState(id, protocol.JobFailing), nil) },
			kind: DriftJobsNotRunning, repairs: true, reportHas: []string{"other: drift: jobs not running on web/0 (process web failing)"}, reportProc: "web"},
		{name: "jobs stopped", set: func(a *fakeAgents, id string) { a.set(id, failingState(id, protocol.JobStopped), nil) },
			kind: DriftJobsNotRunning, repairs: true, reportHas: []string{"other: drift: jobs not running on web/0 (process web stopped)"}, reportProc: "web"},
		{name: "configuration changed", set: func(a *fakeAgents, id string) { a.set(id, changed(id), nil) },
			kind: DriftConfigChanged, repairs: true, reportHas: []string{"other: drift: configuration changed on the VM of web/0 (applied hash-applied, the agent has hash-by-hand)"}},
		{name: "agent unresponsive", set: func(a *fakeAgents, id string) { a.set(id, protocol.State{}, errors.New("get_state: timeout")) },
			kind: DriftAgentUnresponsive, reportHas: []string{"other: drift: agent of web/0 unresponsive"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newDriftHarness(t)
			if d := h.check(); len(d) != 0 {
				t.Fatalf("healthy fleet drifted: %+v", d)
			}
			demo1, other0 := h.inst("demo web/1"), h.inst("other web/0")
			tc.set(h.agents, demo1.AgentID)
			tc.set(h.agents, other0.AgentID)
			statusBefore := len(h.repo.statusLog())

			drifts := h.check()
			type seen struct{ Deployment, Mode, Kind, Name string }
			var got []seen
			for _, d := range drifts {
				for _, it := range d.Items {
					got = append(got, seen{d.Deployment, d.Mode, it.Kind, it.Name})
				}
			}
			want := []seen{{"demo", DriftRepair, tc.kind, "web/1"}, {"other", DriftReport, tc.kind, "web/0"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("drift items (-want +got):\n%s", diff)
			}

			var wantTasks []string
			if tc.repairs {
				wantTasks = []string{restartTask("demo", "web", demo1.ID)}
				if drifts[0].Items[0].Task == 0 {
					t.Error("repaired drift item has no task")
				}
			}
			if diff := cmp.Diff(wantTasks, h.queued()); diff != "" {
				t.Errorf("queued tasks (-want +got):\n%s", diff)
			}
			// Only other (report) commits a status; demo's repair is its task's outcome.
			log := h.repo.statusLog()
			if len(log) != statusBefore+1 {
				t.Fatalf("%d status commits after the check; want 1 more than %d", len(log), statusBefore)
			}
			h.statusHead(append(tc.reportHas, "Bosun-Result: drifted")...)
			if tc.reportProc != "" {
				file := h.repo.statusFile("deployments/other.yml")
				for _, s := range []string{"process: " + tc.reportProc, "greeter: bind: address in use", "web/0 (" + other0.ID + ")"} {
					if !strings.Contains(file, s) {
						t.Errorf("status file lacks %q:\n%s", s, file)
					}
				}
			}

			// The same drift is not acted on again.
			if again := h.check(); len(again) != 0 {
				t.Fatalf("the same drift was acted on twice: %+v", again)
			}
			if diff := cmp.Diff(wantTasks, h.queued()); diff != "" {
				t.Errorf("queued tasks after a second check (-want +got):\n%s", diff)
			}
			if n := len(h.repo.statusLog()); n != statusBefore+1 {
				t.Errorf("a second check committed status again (%d commits)", n-statusBefore)
			}
			if tc.repairs {
				// The repair task runs as an operator's restart of that one instance.
				rt, err := h.store.Task(h.ctx, drifts[0].Items[0].Task)
				if err != nil {
					t.Fatal(err)
				}
				h.mustRun(rt)
				want := actCall{Deployment: "demo", IDs: []string{demo1.ID}, Params: state.ActionParams{Action: state.ActionRestart, Group: "web", Instance: demo1.ID}}
				if diff := cmp.Diff([]actCall{want}, h.conv.acts, cmpopts.IgnoreFields(state.ActionParams{}, "Reason")); diff != "" {
					t.Errorf("converge actions (-want +got):\n%s", diff)
				}
				if head := h.repo.statusLog()[0]; !strings.Contains(head, "restart web/1 (drift repair: "+tc.kind) {
					t.Errorf("the repair's status commit does not say why: %q", head)
				}
			}
		})
	}
}

// TestDriftRecursAfterRecovery: a drift that went away and came back is acted on again.
func TestDriftRecursAfterRecovery(t *testing.T) {
	h := newDriftHarness(t)
	in := h.inst("demo web/0")
	h.agents.set(in.AgentID, failingState(in.AgentID, protocol.JobFailing), nil)
	if d := h.check(); len(d) != 1 || d[0].Items[0].Task == 0 {
		t.Fatalf("drifts = %+v", d)
	}
	h.agents.set(in.AgentID, protocol.State{}, nil)
	if d := h.check(); len(d) != 0 {
		t.Fatalf("a recovered instance drifted: %+v", d)
	}
	h.agents.set(in.AgentID, failingState(in.AgentID, protocol.JobFailing), nil)
	if d := h.check(); len(d) != 1 {
		t.Fatalf("drifts = %+v", d)
	}
	want := []string{restartTask("demo", "web", in.ID), restartTask("demo", "web", in.ID)}
	if diff := cmp.Diff(want, h.queued()); diff != "" {
		t.Errorf("queued tasks (-want +got):\n%s", diff)
	}
}

// TestDriftMixedRepair: a missing VM and stopped jobs in one deployment give one resurrect
// task and one restart task; the agent of the missing VM is not asked.
func TestDriftMixedRepair(t *testing.T) {
	h := newDriftHarness(t)
	w0, w1 := h.inst("demo web/0"), h.inst("demo web/1")
	h.cloud.lose(w0.VMCID)
	h.agents.set(w0.AgentID, protocol.State{}, errors.New("no VM, no agent"))
	h.agents.set(w1.AgentID, failingState(w1.AgentID, protocol.JobStopped), nil)
	d := h.check()
	if len(d) != 1 || d[0].Task == 0 || !slices.Equal(d[0].Names, []string{"web/0"}) || len(d[0].Items) != 2 {
		t.Fatalf("drifts = %+v", d)
	}
	rp, _ := json.Marshal(state.ResurrectParams{Instances: []string{w0.ID}, Reason: ReasonVMMissing})
	want := []string{taskLine(state.TaskResurrect, "demo", rp), restartTask("demo", "web", w1.ID)}
	if diff := cmp.Diff(want, h.queued()); diff != "" {
		t.Errorf("queued tasks (-want +got):\n%s", diff)
	}
	if asked := h.agents.callsOf(w0.AgentID); asked != 0 {
		t.Errorf("the agent of a missing VM was asked %d times", asked)
	}
}

// TestDriftLeavesAlone: stopped instances, suspended deployments and deployments a task
// is changing are not drift; the last two are acted on once they are free again.
func TestDriftLeavesAlone(t *testing.T) {
	h := newDriftHarness(t)

	// An instance an operator stopped is meant to have stopped jobs.
	w0 := h.inst("demo web/0")
	w0.State = state.InstanceStopped
	if _, err := h.store.PutInstance(h.ctx, w0); err != nil {
		t.Fatal(err)
	}
	h.agents.set(w0.AgentID, failingState(w0.AgentID, protocol.JobStopped), nil)
	if d := h.check(); len(d) != 0 {
		t.Fatalf("a stopped instance drifted: %+v", d)
	}

	// Suspended: not even asked.
	w1 := h.inst("demo web/1")
	h.agents.set(w1.AgentID, failingState(w1.AgentID, protocol.JobFailing), nil)
	h.r.cfg.Suspensions = h.store
	if _, err := h.store.SuspendDeployment(h.ctx, "demo", "ops", "maintenance"); err != nil {
		t.Fatal(err)
	}
	calls, asked := h.agents.called(), h.agents.callsOf(w1.AgentID)
	if d := h.check(); len(d) != 0 {
		t.Fatalf("a suspended deployment drifted: %+v", d)
	}
	asked = h.agents.callsOf(w1.AgentID) - asked
	if others := h.agents.called() - calls; asked != 0 || others != 1 {
		t.Errorf("suspended demo's agent asked %d times; all agents %d times (want other's once)", asked, others)
	}
	if q := h.queued(); len(q) != 0 {
		t.Fatalf("tasks for a suspended deployment: %v", q)
	}
	if _, err := h.store.ResumeDeployment(h.ctx, "demo"); err != nil {
		t.Fatal(err)
	}

	// A task holds demo's lock: left alone until it ends. (The harness ran the deploy
	// tasks without a worker, so the first one is still queued: a worker claims it.)
	blocker, err := h.store.Claim(h.ctx, "test-worker", []string{state.TaskDeploy})
	if err != nil || blocker == nil || blocker.Deployment != "demo" {
		t.Fatalf("claim = %+v, %v", blocker, err)
	}
	if d := h.check(); len(d) != 0 {
		t.Fatalf("a deployment under a task drifted: %+v", d)
	}
	if err := h.store.Finish(h.ctx, blocker.ID, "test-worker", state.TaskDone, ""); err != nil {
		t.Fatal(err)
	}
	if d := h.check(); len(d) != 1 || d[0].Items[0].Name != "web/1" {
		t.Fatalf("drifts once free = %+v", d)
	}
	if diff := cmp.Diff([]string{restartTask("demo", "web", w1.ID)}, h.queued()); diff != "" {
		t.Errorf("queued tasks (-want +got):\n%s", diff)
	}
}

// TestDriftAfterFailedRollout: after a failed deploy the agents are not asked (the failed
// canary runs the new spec on purpose and the failure stays the deployment's status); a
// missing VM is still repaired.
func TestDriftAfterFailedRollout(t *testing.T) {
	h := newDriftHarness(t)
	failed, err := h.store.Claim(h.ctx, "test-worker", []string{state.TaskDeploy})
	if err != nil || failed == nil || failed.Deployment != "demo" {
		t.Fatalf("claim = %+v, %v", failed, err)
	}
	if err := h.store.Finish(h.ctx, failed.ID, "test-worker", state.TaskError, "web/0 failed"); err != nil {
		t.Fatal(err)
	}
	w0, w1 := h.inst("demo web/0"), h.inst("demo web/1")
	h.agents.set(w0.AgentID, failingState(w0.AgentID, protocol.JobFailing), nil)
	if d := h.check(); len(d) != 0 || h.agents.callsOf(w0.AgentID) != 0 {
		t.Fatalf("drifts after a failed rollout = %+v (agent asked %d times)", d, h.agents.callsOf(w0.AgentID))
	}
	h.cloud.lose(w1.VMCID)
	if d := h.check(); len(d) != 1 || d[0].Task == 0 || len(d[0].Items) != 1 || d[0].Items[0].Kind != DriftVMMissing {
		t.Fatalf("drifts = %+v; want web/1's VM recreated", d)
	}
}

// TestDriftReportedThenRepaired: a drift reported while the deployment was drift: report
// is repaired once a commit switches it to repair, though it never went away; then it is
// not acted on again.
func TestDriftReportedThenRepaired(t *testing.T) {
	h := newDriftHarness(t)
	o0 := h.inst("other web/0")
	changed := protocol.State{AgentID: o0.AgentID, JobState: protocol.JobRunning}
	changed.ConfigurationHash = "hash-by-hand"
	h.agents.set(o0.AgentID, changed, nil)
	statusBefore := len(h.repo.statusLog())
	if d := h.check(); len(d) != 1 || d[0].Mode != DriftReport || d[0].Items[0].Task != 0 {
		t.Fatalf("drifts in report mode = %+v", d)
	}
	if n := len(h.repo.statusLog()) - statusBefore; n != 1 {
		t.Fatalf("%d status commits for the reported drift; want 1", n)
	}

	files := templateFiles(t)
	h.repo.commit("repair other's drift", map[string]string{"bosun.yml": strings.Replace(files["bosun.yml"],
		"deployments:\n  demo:\n", "deployments:\n  other:\n    drift: repair\n  demo:\n", 1)})
	h.reconcile(state.RevisionAccepted)
	d := h.check()
	if len(d) != 1 || d[0].Mode != DriftRepair || len(d[0].Items) != 1 || d[0].Items[0].Task == 0 {
		t.Fatalf("drifts once switched to repair = %+v; want other's web/0 repaired", d)
	}
	if diff := cmp.Diff([]string{restartTask("other", "web", o0.ID)}, h.queued()); diff != "" {
		t.Errorf("queued tasks (-want +got):\n%s", diff)
	}
	if again := h.check(); len(again) != 0 {
		t.Errorf("the repaired drift was acted on again: %+v", again)
	}
	if n := len(h.repo.statusLog()) - statusBefore; n != 1 {
		t.Errorf("%d status commits; want only the report's", n)
	}
	repair, err := h.store.Task(h.ctx, d[0].Items[0].Task)
	if err != nil {
		t.Fatal(err)
	}
	var p state.ActionParams
	if err := json.Unmarshal(repair.Params, &p); err != nil || p.Reason != "drift repair: configuration changed on the VM (applied hash-applied, the agent has hash-by-hand)" {
		t.Errorf("repair task's reason = %q (%v); the status commit says it", p.Reason, err)
	}
}

// TestDriftMeltdownReportsInsteadOfRecreating: when too many of a repair-mode
// deployment's VMs are missing at once (a cloud outage, a cloud API gone wrong), the
// drift check recreates none and reports, as the health monitor's meltdown guard does.
func TestDriftMeltdownReportsInsteadOfRecreating(t *testing.T) {
	h := newDriftHarness(t)
	h.r.cfg.DriftMeltdown = Meltdown{MinDown: 2, Percent: 0.5}
	w0, w1 := h.inst("demo web/0"), h.inst("demo web/1")
	h.cloud.lose(w0.VMCID)
	h.cloud.lose(w1.VMCID)
	statusBefore := len(h.repo.statusLog())
	d := h.check()
	if len(d) != 1 || !d[0].Meltdown || d[0].Task != 0 || len(d[0].Items) != 2 {
		t.Fatalf("drifts = %+v; want both missing VMs reported, none recreated", d)
	}
	if q := h.queued(); len(q) != 0 {
		t.Errorf("queued tasks in a meltdown: %v", q)
	}
	log := h.repo.statusLog()
	if len(log)-statusBefore != 1 || !strings.Contains(log[0], "meltdown: 2 of 2 VMs missing") {
		t.Errorf("newest status commit of %d: %q", len(log)-statusBefore, log[0])
	}
	if again := h.check(); len(again) != 0 {
		t.Errorf("the meltdown was acted on again: %+v", again)
	}
	// The meltdown ends with web/0's VM back; web/1's, still missing, is recreated now.
	h.cloud.mu.Lock()
	delete(h.cloud.missing, w0.VMCID)
	h.cloud.mu.Unlock()
	d = h.check()
	if len(d) != 1 || d[0].Meltdown || d[0].Task == 0 || len(d[0].Names) != 1 || d[0].Names[0] != "web/1" {
		t.Errorf("drifts once the meltdown is over = %+v; want web/1 recreated", d)
	}
}

// TestDriftRememberedAcrossRestarts: a director that restarts while a drift lasts does
// not act on it again; one that went away meanwhile is forgotten there too.
func TestDriftRememberedAcrossRestarts(t *testing.T) {
	h := newDriftHarness(t)
	o0 := h.inst("other web/0")
	changed := protocol.State{AgentID: o0.AgentID, JobState: protocol.JobRunning}
	changed.ConfigurationHash = "hash-by-hand"
	h.agents.set(o0.AgentID, changed, nil)
	if d := h.check(); len(d) != 1 {
		t.Fatalf("drifts = %+v", d)
	}
	statusBefore := len(h.repo.statusLog())
	restart := func() { h.r.driftMu.Lock(); h.r.driftSeen = map[string]map[string]bool{}; h.r.driftMu.Unlock() }
	restart()
	if d := h.check(); len(d) != 0 {
		t.Errorf("after a restart the lasting drift was acted on again: %+v", d)
	}
	if n := len(h.repo.statusLog()) - statusBefore; n != 0 {
		t.Errorf("%d status commits after the restart", n)
	}
	// The drift goes, the director restarts, it comes back: reported again.
	mended := protocol.State{AgentID: o0.AgentID, JobState: protocol.JobRunning}
	mended.ConfigurationHash = "hash-applied"
	h.agents.set(o0.AgentID, mended, nil)
	if d := h.check(); len(d) != 0 {
		t.Fatalf("drifts once mended = %+v", d)
	}
	restart()
	h.agents.set(o0.AgentID, changed, nil)
	if d := h.check(); len(d) != 1 {
		t.Errorf("a drift that came back after a restart = %+v; want it reported", d)
	}
}
