package health

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/state"
	"github.com/google/go-cmp/cmp"
)

func countTitles(alerts []Alert, substr string) int {
	n := 0
	for _, a := range alerts {
		if strings.Contains(a.Title, substr) {
			n++
		}
	}
	return n
}

func TestHeartbeatsKeepAgentHealthySilenceResurrectsOnce(t *testing.T) {
	e := newEnv(t, Config{AgentTimeout: 60 * time.Second})
	insts := e.deploy("web", map[string]int{"web": 2})
	a0, a1 := e.agent("web-web-0"), e.agent("web-web-1")
	e.analyze() // first load: nobody is late yet

	// Both heartbeat every 30 s for 3 minutes: healthy throughout.
	for range 6 {
		e.clock.Advance(30 * time.Second)
		e.heartbeatSeen(a0, insts["web-web-0"], protocol.JobRunning)
		e.heartbeatSeen(a1, insts["web-web-1"], protocol.JobRunning)
		if rep := e.analyze(); len(rep.Unresponsive)+len(rep.Enqueued) > 0 {
			t.Fatalf("healthy agents reported: %+v", rep)
		}
	}

	// web-web-1 falls silent; web-web-0 keeps going.
	e.clock.Advance(30 * time.Second)
	e.heartbeatSeen(a0, insts["web-web-0"], protocol.JobRunning)
	if rep := e.analyze(); len(rep.Unresponsive) > 0 {
		t.Fatalf("30 s of silence is not a timeout: %+v", rep)
	}
	e.clock.Advance(31 * time.Second)
	e.heartbeatSeen(a0, insts["web-web-0"], protocol.JobRunning)
	rep := e.analyze()
	want := "web/" + insts["web-web-1"].ID
	if diff := cmp.Diff([]string{want}, rep.Unresponsive); diff != "" {
		t.Fatalf("unresponsive (-want +got):\n%s", diff)
	}
	if len(rep.Enqueued) != 1 {
		t.Fatalf("enqueued %v, want one task", rep.Enqueued)
	}
	// Later analyses while the task waits: no second task, no second alert.
	for range 3 {
		e.clock.Advance(10 * time.Second)
		e.heartbeatSeen(a0, insts["web-web-0"], protocol.JobRunning)
		if rep := e.analyze(); len(rep.Enqueued) > 0 {
			t.Fatalf("second resurrection queued while the first waits: %+v", rep)
		}
	}

	tasks := e.tasks("web")
	if len(tasks) != 1 {
		t.Fatalf("tasks = %+v, want one", tasks)
	}
	task := tasks[0]
	p := resurrectParams(t, task)
	if task.Type != state.TaskResurrect || task.State != state.TaskQueued || task.User != "health_monitor" {
		t.Errorf("task = %+v", task)
	}
	if diff := cmp.Diff([]string{insts["web-web-1"].ID}, p.Instances); diff != "" {
		t.Errorf("resurrect instances (-want +got):\n%s", diff)
	}
	if !strings.Contains(p.Reason, "unresponsive for 61s") {
		t.Errorf("reason = %q, want it to say how long", p.Reason)
	}

	alerts := e.flush()
	if n := countTitles(alerts, "has timed out"); n != 1 {
		t.Errorf("%d timed-out alerts, want 1: %q", n, e.rec.titles())
	}
	if n := countTitles(alerts, "Recreating 1 unresponsive"); n != 1 {
		t.Errorf("%d recreating alerts, want 1: %q", n, e.rec.titles())
	}
	for _, a := range alerts {
		if strings.Contains(a.Title, "has timed out") && (a.Deployment != "web" || a.Instance != want || a.Severity != SeverityCritical) {
			t.Errorf("timed-out alert = %+v", a)
		}
	}
	// The event store plugin is exercised in TestEventPlugin; here the monitor's own
	// counters agree.
	if st := e.m.Stats(); st.Resurrections != 1 || st.AlertsSuppressed == 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestMeltdownAlertsOnceAndResurrectsNothing(t *testing.T) {
	e := newEnv(t, Config{AgentTimeout: time.Minute, Meltdown: Meltdown{MinDown: 2, Percent: 0.5, Window: 10 * time.Minute}})
	insts := e.deploy("web", map[string]int{"web": 4})
	e.analyze()
	a0 := e.agent("web-web-0")
	for range 3 {
		e.clock.Advance(40 * time.Second)
		e.heartbeatSeen(a0, insts["web-web-0"], protocol.JobRunning)
		rep := e.analyze()
		if len(rep.Enqueued) > 0 {
			t.Fatalf("meltdown queued tasks: %+v", rep)
		}
	}
	rep := e.analyze()
	if diff := cmp.Diff([]string{"web"}, rep.Meltdown); diff != "" {
		t.Errorf("meltdown (-want +got):\n%s", diff)
	}
	if len(rep.Unresponsive) != 3 {
		t.Errorf("unresponsive = %v, want 3", rep.Unresponsive)
	}
	if ts := e.tasks("web"); len(ts) != 0 {
		t.Errorf("tasks in meltdown: %+v", ts)
	}
	alerts := e.flush()
	if n := countTitles(alerts, "meltdown"); n != 1 {
		t.Errorf("%d meltdown alerts, want 1: %q", n, e.rec.titles())
	}
	for _, a := range alerts {
		if strings.Contains(a.Title, "meltdown") && (a.Severity != SeverityAlert || a.Category != CategoryDeploymentHealth || !strings.Contains(a.Summary, "3 of 4")) {
			t.Errorf("meltdown alert = %+v", a)
		}
	}
	if st := e.m.Stats(); st.Meltdowns != 1 {
		t.Errorf("meltdowns = %d, want 1", st.Meltdowns)
	}
}

func TestOneDownOfFourIsManaged(t *testing.T) {
	// The same thresholds as the meltdown test: one instance down is below both.
	e := newEnv(t, Config{AgentTimeout: time.Minute, Meltdown: Meltdown{MinDown: 2, Percent: 0.5}})
	insts := e.deploy("web", map[string]int{"web": 4})
	e.analyze()
	var agents []*agent
	for i := range 3 {
		agents = append(agents, e.agent("web-web-"+string(rune('0'+i))))
	}
	e.clock.Advance(61 * time.Second)
	for _, a := range agents {
		e.heartbeatSeen(a, insts[a.id], protocol.JobRunning)
	}
	rep := e.analyze()
	if len(rep.Meltdown) > 0 || len(rep.Enqueued) != 1 {
		t.Fatalf("report = %+v, want one task and no meltdown", rep)
	}
}

func TestRulesExcludeGroupsAndPersistentDisks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		def   Rules
		rules map[string]Rules
		want  []string // groups resurrected
	}{
		{"defaults: disks are not resurrected", Rules{}, nil, []string{"web", "worker"}},
		{"exclude a group", Rules{}, map[string]Rules{"app": {Exclude: GroupSelector{InstanceGroups: []string{"worker"}}}}, []string{"web"}},
		{"include only a group", Rules{}, map[string]Rules{"app": {Include: GroupSelector{InstanceGroups: []string{"worker"}}}}, []string{"worker"}},
		{"disks allowed", Rules{}, map[string]Rules{"app": {PersistentDisks: true}}, []string{"db", "web", "worker"}},
		{"off", Rules{}, map[string]Rules{"app": {Enabled: new(false)}}, nil},
		{"other deployment's rules do not apply", Rules{}, map[string]Rules{"other": {Enabled: new(false)}}, []string{"web", "worker"}},
		{"fleet-wide default applies", Rules{Exclude: GroupSelector{[]string{"web"}}}, map[string]Rules{"other": {}}, []string{"worker"}},
		{"a deployment's own rules win over the default", Rules{Enabled: new(false)}, map[string]Rules{"app": {}}, []string{"web", "worker"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{AgentTimeout: time.Minute, Meltdown: Meltdown{MinDown: 100}})
			insts := e.deploy("app", map[string]int{"web": 1, "worker": 1, "db": 1}, "db")
			if err := e.m.SetRules(tc.def, tc.rules); err != nil {
				t.Fatal(err)
			}
			e.analyze()
			e.clock.Advance(61 * time.Second)
			rep := e.analyze()
			if len(rep.Unresponsive) != 3 {
				t.Fatalf("unresponsive = %v", rep.Unresponsive)
			}
			var got []string
			for _, task := range e.tasks("app") {
				for _, id := range resurrectParams(t, task).Instances {
					for _, inst := range insts {
						if inst.ID == id {
							got = append(got, inst.Group)
						}
					}
				}
			}
			slices.Sort(got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("resurrected groups (-want +got):\n%s", diff)
			}
			alerts := e.flush()
			if n, want := countTitles(alerts, "will not be resurrected"), 3-len(tc.want); n != want {
				t.Errorf("%d not-resurrected alerts, want %d: %q", n, want, e.rec.titles())
			}
		})
	}
}

func TestRogueAgentAlertedNeverResurrected(t *testing.T) {
	e := newEnv(t, Config{AgentTimeout: time.Minute, RogueAfter: 2 * time.Minute})
	e.deploy("web", map[string]int{"web": 1})
	web := e.agent("web-web-0")
	stranger := e.agent("stranger")
	e.analyze()
	for range 5 {
		e.clock.Advance(30 * time.Second)
		e.heartbeatSeen(web, state.Instance{}, protocol.JobRunning)
		e.heartbeatSeen(stranger, state.Instance{Deployment: "web"}, protocol.JobRunning)
		e.analyze()
	}
	rep := e.analyze()
	if diff := cmp.Diff([]string{"stranger"}, rep.Rogue); diff != "" {
		t.Errorf("rogue (-want +got):\n%s", diff)
	}
	// The stranger goes quiet: no longer rogue, nothing to resurrect.
	e.clock.Advance(61 * time.Second)
	e.heartbeatSeen(web, state.Instance{}, protocol.JobRunning)
	rep = e.analyze()
	if len(rep.Rogue)+len(rep.Enqueued)+len(rep.Unresponsive) > 0 {
		t.Errorf("after the stranger left: %+v", rep)
	}

	// While a task runs, an agent without a spec may be its compilation VM: not rogue.
	// One that claims an instance nobody has is rogue all the same.
	if _, err := e.store.Enqueue(e.ctx, state.Task{Type: state.TaskDeploy, Deployment: "web"}); err != nil {
		t.Fatal(err)
	}
	if task, err := e.store.Claim(e.ctx, "w", nil); err != nil || task == nil {
		t.Fatalf("claim: %v, %v", task, err)
	}
	compiler, squatter := e.agent("compiler"), e.agent("squatter")
	for range 5 {
		e.clock.Advance(30 * time.Second)
		e.heartbeatSeen(compiler, state.Instance{}, protocol.JobRunning)
		e.heartbeatSeen(squatter, state.Instance{ID: "0f0f0f0f-0000-4000-8000-000000000000", Deployment: "gone", Group: "x"}, protocol.JobRunning)
		e.analyze()
	}
	if rep := e.analyze(); !cmp.Equal(rep.Rogue, []string{"squatter"}) {
		t.Errorf("rogue while a task runs = %v, want only the squatter", rep.Rogue)
	}
	alerts := e.flush()
	if n := countTitles(alerts, "stranger is not a part of any deployment"); n != 1 {
		t.Errorf("%d rogue alerts, want 1: %q", n, e.rec.titles())
	}
}

func TestResponsiveNeedsAWholeTimeoutOfListening(t *testing.T) {
	e := newEnv(t, Config{AgentTimeout: time.Minute})
	a := e.agent("a1")
	if ok, err := e.m.Responsive(e.ctx, "a1"); ok || err == nil {
		t.Errorf("unheard agent right after start = %v, %v; want an error", ok, err)
	}
	e.heartbeatSeen(a, state.Instance{}, protocol.JobRunning)
	if ok, err := e.m.Responsive(e.ctx, "a1"); !ok || err != nil {
		t.Errorf("after a heartbeat = %v, %v", ok, err)
	}
	e.clock.Advance(61 * time.Second)
	for _, id := range []string{"a1", "never-heard"} {
		if ok, err := e.m.Responsive(e.ctx, id); ok || err != nil {
			t.Errorf("%s after a silent timeout = %v, %v; want false, nil", id, ok, err)
		}
	}
}

func TestBadHeartbeatsDroppedAndNeverKeepAnInstanceAlive(t *testing.T) {
	e := newEnv(t, Config{AgentTimeout: time.Minute, MaxMessageBytes: 4096})
	insts := e.deploy("web", map[string]int{"web": 2})
	liar := e.agent("web-web-0")
	e.analyze()
	e.clock.Advance(61 * time.Second)
	before := e.m.Stats()
	liar.publish(t, protocol.HeartbeatSubject(liar.id), []byte(`{"job_state": "running", `))
	liar.publish(t, protocol.HeartbeatSubject(liar.id), []byte(`[1,2,3]`))
	liar.publish(t, protocol.HeartbeatSubject(liar.id), []byte(`{"job_state":"running","pad":"`+strings.Repeat("x", 5000)+`"}`))
	// web-web-0 claims to be web-web-1's instance.
	liar.heartbeat(t, insts["web-web-1"], protocol.JobRunning)
	liar.publish(t, protocol.AlertSubject(liar.id), []byte(`not json`))
	waitFor(t, "drops counted", func() bool { return e.m.Stats().Dropped-before.Dropped == 5 })
	if st := e.m.Stats(); st.Heartbeats != before.Heartbeats {
		t.Errorf("bad heartbeats counted as heartbeats: %+v", st)
	}
	rep := e.analyze()
	if len(rep.Unresponsive) != 2 {
		t.Errorf("unresponsive = %v, want both: a lying heartbeat keeps nobody alive", rep.Unresponsive)
	}
}

func TestFailingJobStateAlerts(t *testing.T) {
	e := newEnv(t, Config{AgentTimeout: time.Minute})
	insts := e.deploy("web", map[string]int{"web": 1})
	a := e.agent("web-web-0")
	e.analyze()
	e.heartbeatSeen(a, insts["web-web-0"], protocol.JobFailing)
	rep := e.analyze()
	e.analyze()
	if len(rep.Failing) != 1 || len(rep.Enqueued) > 0 {
		t.Errorf("report = %+v, want one failing and nothing resurrected", rep)
	}
	if n := countTitles(e.flush(), "is failing"); n != 1 {
		t.Errorf("%d failing alerts, want 1", n)
	}
}

func TestLockedDeploymentWaitsAndGetsAFreshTimeout(t *testing.T) {
	e := newEnv(t, Config{AgentTimeout: time.Minute})
	e.deploy("web", map[string]int{"web": 1})
	e.analyze()
	// A deploy holds the deployment: its VMs may be down on purpose.
	if _, err := e.store.Enqueue(e.ctx, state.Task{Type: state.TaskDeploy, Deployment: "web"}); err != nil {
		t.Fatal(err)
	}
	task, err := e.store.Claim(e.ctx, "w1", nil)
	if err != nil || task == nil {
		t.Fatalf("claim = %v, %v", task, err)
	}
	e.clock.Advance(5 * time.Minute)
	if rep := e.analyze(); len(rep.Unresponsive) > 0 {
		t.Fatalf("locked deployment analysed: %+v", rep)
	}
	if err := e.store.Finish(e.ctx, task.ID, "w1", state.TaskDone, "ok"); err != nil {
		t.Fatal(err)
	}
	// The timeout restarts when the monitor sees the deployment released.
	if rep := e.analyze(); len(rep.Unresponsive) > 0 {
		t.Fatalf("unresponsive right after the deploy ended: %+v", rep)
	}
	e.clock.Advance(30 * time.Second)
	if rep := e.analyze(); len(rep.Unresponsive) > 0 {
		t.Fatalf("unresponsive right after the deploy ended: %+v", rep)
	}
	e.clock.Advance(31 * time.Second)
	if rep := e.analyze(); len(rep.Unresponsive) != 1 || len(rep.Enqueued) != 1 {
		t.Fatalf("after a fresh timeout: %+v, want one unresponsive and resurrected", rep)
	}
}

func TestAgentAlertsRelayedByTheActiveMonitorAndDeduplicated(t *testing.T) {
	e := newEnv(t, Config{})
	insts := e.deploy("web", map[string]int{"web": 1})
	e.analyze()
	a := e.agent("web-web-0")
	alert := []byte(`{"id":"1","severity":1,"title":"nginx (10.0.0.1) - does not exist - restart","summary":"process died","created_at":1765000000}`)
	// A standby hears it but leaves relaying to the active monitor.
	a.publish(t, protocol.AlertSubject(a.id), alert)
	waitFor(t, "alert heard", func() bool { return e.m.Stats().AgentAlerts == 1 })
	e.m.leader.Store(true)
	for i := range 3 {
		a.publish(t, protocol.AlertSubject(a.id), alert)
		waitFor(t, "alert heard", func() bool { return e.m.Stats().AgentAlerts == int64(2+i) })
	}
	alerts := e.flush()
	if len(alerts) != 1 {
		t.Fatalf("alerts = %+v, want one", alerts)
	}
	got := alerts[0]
	if got.Source != "agent" || got.Deployment != "web" || got.Instance != "web/"+insts["web-web-0"].ID || got.Severity != 1 || got.AgentID != "web-web-0" {
		t.Errorf("relayed alert = %+v", got)
	}
}

func TestFailingResurrectionsAreSpacedOut(t *testing.T) {
	e := newEnv(t, Config{AgentTimeout: time.Minute})
	insts := e.deploy("web", map[string]int{"web": 1})
	e.analyze()
	// Each resurrection fails (the worker claims and errors it) and the agent stays silent.
	fail := func() {
		t.Helper()
		task, err := e.store.Claim(e.ctx, "w", nil)
		if err != nil || task == nil {
			t.Fatalf("claim: %v, %v", task, err)
		}
		if err := e.store.Finish(e.ctx, task.ID, "w", state.TaskError, "recreate failed"); err != nil {
			t.Fatal(err)
		}
		e.analyze() // sees the deployment released
	}
	var enqueuedAt []time.Duration
	start := e.clock.Now()
	for range 40 { // ten minutes in 15 s steps
		e.clock.Advance(15 * time.Second)
		if rep := e.analyze(); len(rep.Enqueued) > 0 {
			enqueuedAt = append(enqueuedAt, e.clock.Now().Sub(start))
			fail()
		}
	}
	// 1 min of silence (seen at the 75 s analysis), then each retry waits 1, 2, 4
	// timeouts after the attempt before it. (The tasks ran between two analyses, so no
	// lock was seen and no fresh timeout given.)
	want := []time.Duration{75 * time.Second, 135 * time.Second, 255 * time.Second, 495 * time.Second}
	if diff := cmp.Diff(want, enqueuedAt); diff != "" {
		t.Errorf("resurrections at (-want +got):\n%s", diff)
	}
	// Back to health resets the spacing.
	a := e.agent("web-web-0")
	e.heartbeatSeen(a, insts["web-web-0"], protocol.JobRunning)
	e.analyze()
	e.clock.Advance(61 * time.Second)
	if rep := e.analyze(); len(rep.Enqueued) != 1 {
		t.Errorf("after recovering and dying again: %+v, want a resurrection at once", rep)
	}
}

func TestStandbyForgetsAgentsLongGone(t *testing.T) {
	e := newEnv(t, Config{AgentTimeout: time.Minute})
	old, fresh := e.agent("old"), e.agent("fresh")
	e.heartbeatSeen(old, state.Instance{}, protocol.JobRunning)
	e.clock.Advance(90 * time.Second)
	e.heartbeatSeen(fresh, state.Instance{}, protocol.JobRunning)
	e.clock.Advance(31 * time.Second)
	e.m.prune()
	if st := e.m.Stats(); st.Agents != 1 || e.m.LastHeartbeat("fresh").IsZero() {
		t.Errorf("after prune: %+v", st)
	}
}
