package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/state"
	"github.com/google/go-cmp/cmp"
)

type fakeReconciler struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (f *fakeReconciler) ReconcileNow(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.err
}

// fakeProber answers for agents by id; agents not listed do not answer.
type fakeProber map[string]api.Probe

func (f fakeProber) Probe(ctx context.Context, inst state.Instance) (api.Probe, error) {
	p, ok := f[inst.AgentID]
	if !ok {
		return api.Probe{}, fmt.Errorf("agent %s did not answer in time", inst.AgentID)
	}
	return p, nil
}

type fakeLogs struct{ fail bool }

func (f fakeLogs) FetchLogs(ctx context.Context, inst state.Instance, w io.Writer) error {
	if f.fail {
		return errors.New("agent said: no space left on device")
	}
	_, err := fmt.Fprintf(w, "logs of %s/%d", inst.Group, inst.Index)
	return err
}

type fakeChecker []api.Problem

func (f fakeChecker) Resolve(ctx context.Context, deployment string, cs []api.ProblemChoice) ([]api.Resolution, error) {
	out := make([]api.Resolution, len(cs))
	for i, c := range cs {
		out[i] = api.Resolution{Resolution: c.Resolution}
	}
	return out, nil
}

func (f fakeChecker) Scan(ctx context.Context, deployment string) ([]api.Problem, error) {
	return f, nil
}

type fakeSources []api.Source

func (f fakeSources) Sources(ctx context.Context) ([]api.Source, error) { return f, nil }

func TestReadEndpoints(t *testing.T) {
	probe := api.Probe{JobState: "running", Processes: []api.Process{{Name: "nginx", Job: "web", State: "running", PID: 42}},
		Vitals: &api.Vitals{Load: []string{"0.1", "0.2", "0.3"}, MemPercent: "12"}}
	e := newEnv(t, api.Options{Prober: fakeProber{"agent-web-0": probe, "agent-web-1": probe}})
	web := seed(t, e.store)
	ctx := ctxFor(t)
	c := e.client(t, readToken)

	ds, err := c.Deployments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := [][]string{}
	for _, d := range ds {
		got = append(got, []string{d.Name, fmt.Sprint(d.Instances), strings.Join(d.Releases, ","), strings.Join(d.Stemcells, ","), strings.Join(d.Teams, ",")})
	}
	want := [][]string{{"db", "1", "", "", ""}, {"web", "3", "nginx/1.2", "ubuntu-noble/1.5", "web"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deployments (-want +got):\n%s", diff)
	}

	is, err := c.Instances(ctx, "web", false)
	if err != nil || len(is) != 3 || is[0].Name != "web/0" || is[0].ID != web[0].ID || is[0].ProcessState != "" {
		t.Fatalf("instances = %+v, %v", is, err)
	}
	is, err = c.Instances(ctx, "web", true)
	if err != nil {
		t.Fatal(err)
	}
	states := []string{is[0].ProcessState, is[1].ProcessState, is[2].ProcessState}
	if diff := cmp.Diff([]string{"running", "running", "unresponsive agent"}, states); diff != "" {
		t.Errorf("process states (-want +got):\n%s", diff)
	}
	if is[0].Probe == nil || is[0].Probe.Processes[0].PID != 42 || !strings.Contains(is[2].ProbeError, "did not answer") {
		t.Errorf("probes = %+v / %+v", is[0].Probe, is[2])
	}

	vms, err := c.VMs(ctx, "web", true)
	if err != nil || len(vms) != 3 || vms[0].Instance != "web/0" || vms[0].Vitals == nil || vms[0].Vitals.MemPercent != "12" {
		t.Errorf("vms = %+v, %v", vms, err)
	}
	disks, err := c.Disks(ctx, "web")
	if err != nil || len(disks) != 1 || disks[0].Instance != "web/0" || disks[0].SizeMB != 1024 {
		t.Errorf("disks = %+v, %v", disks, err)
	}
	if _, err := c.Disks(ctx, "nope"); !isStatus(err, 404) {
		t.Errorf("disks of a missing deployment: %v", err)
	}

	// Without a prober, --ps says what is missing rather than showing nothing.
	bare := newEnv(t, api.Options{})
	seed(t, bare.store)
	if _, err := bare.client(t, readToken).Instances(ctx, "web", true); !isStatus(err, 501) || !strings.Contains(err.Error(), "no agent prober") {
		t.Errorf("ps without a prober: %v", err)
	}

	info, err := c.Info(ctx)
	if err != nil || info.User != "auditor" || !info.Features["ps"] || info.Features["logs"] {
		t.Errorf("info = %+v, %v", info, err)
	}
	anon, _ := e.client(t, "").Info(ctx)
	if anon.User != "" {
		t.Errorf("anonymous info names user %q", anon.User)
	}

	if err := e.store.RecordRevision(ctx, state.Revision{SHA: "abc", Author: "dev", Message: "scale web", Verdict: state.RevisionRejected, PolicyMessages: []string{"web needs 3 instances"}}); err != nil {
		t.Fatal(err)
	}
	revs, err := c.Revisions(ctx, 0)
	if err != nil || len(revs) != 1 || revs[0].PolicyMessages[0] != "web needs 3 instances" {
		t.Errorf("revisions = %+v, %v", revs, err)
	}
	if _, err := c.Sources(ctx); !isStatus(err, 501) {
		t.Errorf("sources without a lister: %v", err)
	}
}

func TestActions(t *testing.T) {
	rec := &fakeReconciler{}
	e := newEnv(t, api.Options{Reconciler: rec})
	web := seed(t, e.store)
	ctx := ctxFor(t)
	c := e.client(t, adminToken)

	tests := []struct {
		req      api.ActionRequest
		desc     string
		params   state.ActionParams
		objType  string
		instance string
	}{
		{api.ActionRequest{Action: "recreate", Group: "web", Instance: "1"}, "recreate web/1 (" + web[1].ID + ")",
			state.ActionParams{Action: "recreate", Group: "web", Instance: web[1].ID}, "instance", "web/" + web[1].ID},
		{api.ActionRequest{Action: "stop", Group: "web", Instance: web[2].ID[:8], Hard: true}, "stop --hard web/2 (" + web[2].ID + ")",
			state.ActionParams{Action: "stop", Group: "web", Instance: web[2].ID, Hard: true}, "instance", "web/" + web[2].ID},
		{api.ActionRequest{Action: "restart", Group: "web"}, "restart web", state.ActionParams{Action: "restart", Group: "web"}, "instance_group", ""},
		{api.ActionRequest{Action: "start"}, "start web", state.ActionParams{Action: "start"}, "deployment", ""},
	}
	for _, tt := range tests {
		task, err := c.Act(ctx, "web", tt.req)
		if err != nil {
			t.Fatalf("%+v: %v", tt.req, err)
		}
		if task.Type != state.TaskAction || task.State != state.TaskQueued || task.User != "alice" || task.Description != tt.desc || task.Deployment != "web" {
			t.Errorf("task = %+v", task)
		}
		var p state.ActionParams
		if err := json.Unmarshal(task.Params, &p); err != nil || p != tt.params {
			t.Errorf("params = %s, %v; want %+v", task.Params, err, tt.params)
		}
		evs, err := e.store.Events(ctx, state.EventFilter{TaskID: task.ID})
		if err != nil || len(evs) != 1 {
			t.Fatalf("events of task %d = %+v, %v", task.ID, evs, err)
		}
		if ev := evs[0]; ev.User != "alice" || ev.Action != tt.req.Action || ev.ObjectType != tt.objType || ev.Instance != tt.instance {
			t.Errorf("event = %+v", ev)
		}
	}

	bad := []struct {
		deployment string
		req        api.ActionRequest
		code       int
		msg        string
	}{
		{"web", api.ActionRequest{Action: "explode"}, 400, `action "explode": want recreate, restart, stop or start`},
		{"web", api.ActionRequest{Action: "restart", Hard: true}, 400, "hard applies to stop only"},
		{"web", api.ActionRequest{Action: "restart", Instance: "0"}, 400, "without its group"},
		{"web", api.ActionRequest{Action: "restart", Group: "api"}, 404, "deployment web has no instance group api"},
		{"web", api.ActionRequest{Action: "restart", Group: "web", Instance: "7"}, 404, "deployment web has no instance web/7: `bosun instances web` lists them"},
		{"nope", api.ActionRequest{Action: "restart"}, 404, "no deployment named nope"},
	}
	for _, tt := range bad {
		_, err := c.Act(ctx, tt.deployment, tt.req)
		if !isStatus(err, tt.code) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%+v: %v; want %d %q", tt.req, err, tt.code, tt.msg)
		}
	}
	for _, body := range []string{`{"action":`, `{"action":"stop","forcefully":true}`, `{"action":"stop"} {}`} {
		req, _ := http.NewRequestWithContext(ctx, "POST", e.server.URL+"/deployments/web/actions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), "request body") {
			t.Errorf("body %s: %d %s", body, resp.StatusCode, b)
		}
	}

	// Suspend and resume are stored and audited.
	su, err := c.Suspend(ctx, "web", "db migration")
	if err != nil || su.User != "alice" || su.Reason != "db migration" {
		t.Fatalf("suspend = %+v, %v", su, err)
	}
	if on, _ := e.store.DeploymentSuspended(ctx, "web"); !on {
		t.Error("web not suspended in the store")
	}
	d, _ := c.Deployment(ctx, "web")
	if d.Suspended == nil || d.Suspended.Reason != "db migration" {
		t.Errorf("deployment = %+v", d)
	}
	if was, err := c.Resume(ctx, "web"); err != nil || !was {
		t.Errorf("resume = %v, %v", was, err)
	}
	if was, err := c.Resume(ctx, "web"); err != nil || was {
		t.Errorf("second resume = %v, %v", was, err)
	}
	if err := c.Reconcile(ctx); err != nil || rec.calls != 1 {
		t.Errorf("reconcile: %v (calls %d)", err, rec.calls)
	}
	rec.err = errors.New("source unreachable")
	if err := c.Reconcile(ctx); !isStatus(err, 500) || !strings.Contains(err.Error(), "source unreachable") {
		t.Errorf("failing reconcile: %v", err)
	}
	evs, err := e.store.Events(ctx, state.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, ev := range evs {
		actions = append(actions, ev.User+" "+ev.Action+" "+ev.ObjectType+" "+ev.Error)
	}
	want := []string{
		"alice reconcile director source unreachable", "alice reconcile director ", "alice resume deployment ", "alice resume deployment ",
		"alice suspend deployment ", "alice start deployment ", "alice restart instance_group ", "alice stop instance ", "alice recreate instance ",
	}
	if diff := cmp.Diff(want, actions); diff != "" {
		t.Errorf("audit trail (-want +got):\n%s", diff)
	}

	// The events of one instance, asked for by index.
	ievs, err := c.Events(ctx, api.EventQuery{Deployment: "web", Instance: "web/1"})
	if err != nil || len(ievs) != 1 || ievs[0].Action != "recreate" {
		t.Errorf("events of web/1 = %+v, %v", ievs, err)
	}
	if _, err := c.Events(ctx, api.EventQuery{Since: "yesterday"}); !isStatus(err, 400) || !strings.Contains(err.Error(), "RFC 3339") {
		t.Errorf("bad since: %v", err)
	}
	recent, err := c.Events(ctx, api.EventQuery{Since: "1h", Limit: 2})
	if err != nil || len(recent) != 2 {
		t.Errorf("recent events = %d, %v", len(recent), err)
	}
}

func TestCancelTask(t *testing.T) {
	e := newEnv(t, api.Options{})
	seed(t, e.store)
	ctx := ctxFor(t)
	c := e.client(t, adminToken)
	queued, _ := e.store.Enqueue(ctx, state.Task{Type: state.TaskDeploy, Deployment: "web"})
	got, err := c.CancelTask(ctx, queued.ID)
	if err != nil || got.State != state.TaskCancelled {
		t.Fatalf("cancel queued = %+v, %v", got, err)
	}
	_, err = c.CancelTask(ctx, queued.ID)
	if !isStatus(err, 409) || !strings.Contains(err.Error(), "already ended (cancelled)") {
		t.Errorf("cancel a cancelled task: %v", err)
	}
	running, _ := e.store.Enqueue(ctx, state.Task{Type: state.TaskDeploy, Deployment: "db"})
	if _, err := e.store.Claim(ctx, "worker-1", nil); err != nil {
		t.Fatal(err)
	}
	got, err = c.CancelTask(ctx, running.ID)
	if err != nil || got.State != state.TaskCancelling {
		t.Errorf("cancel processing = %+v, %v", got, err)
	}
	if _, err := c.CancelTask(ctx, 9999); !isStatus(err, 404) || !strings.Contains(err.Error(), "no task 9999") {
		t.Errorf("cancel a missing task: %v", err)
	}
	evs, _ := e.store.Events(ctx, state.EventFilter{TaskID: running.ID})
	if len(evs) != 1 || evs[0].Action != "cancel" || evs[0].User != "alice" {
		t.Errorf("cancel events = %+v", evs)
	}
	locks, err := c.Locks(ctx)
	if err != nil || len(locks) != 1 || locks[0].Deployment != "db" || locks[0].Owner != "worker-1" {
		t.Errorf("locks = %+v, %v", locks, err)
	}
	if l, _ := e.client(t, webReadToken).Locks(ctx); len(l) != 0 {
		t.Errorf("web team sees db's lock: %+v", l)
	}
}

func TestTaskOutputFollow(t *testing.T) {
	e := newEnv(t, api.Options{})
	seed(t, e.store)
	ctx := ctxFor(t)
	task, _ := e.store.Enqueue(ctx, state.Task{Type: state.TaskDeploy, Deployment: "web"})
	claimed, err := e.store.Claim(ctx, "w", nil)
	if err != nil || claimed == nil {
		t.Fatal(err)
	}
	events := []state.TaskEvent{
		{TaskID: task.ID, Stage: "Updating instance", Task: "web/0", Tags: []string{"web"}, Index: 1, Total: 2, State: "started"},
		{TaskID: task.ID, Stage: "Updating instance", Task: "web/0", Tags: []string{"web"}, Index: 1, Total: 2, State: "finished"},
		{TaskID: task.ID, Stage: "Updating instance", Task: "web/1", Tags: []string{"web"}, Index: 2, Total: 2, State: "started"},
	}
	if _, err := e.store.AddTaskEvent(ctx, events[0]); err != nil {
		t.Fatal(err)
	}
	seen := make(chan api.OutputLine, 10)
	done := make(chan error, 1)
	go func() {
		done <- e.client(t, readToken).TaskOutput(ctx, task.ID, 0, true, func(l api.OutputLine) error {
			seen <- l
			return nil
		})
	}()
	// Each event is appended only after the follower got the one before: it streams.
	next := func() api.OutputLine {
		select {
		case l := <-seen:
			return l
		case err := <-done:
			t.Fatalf("follow ended early: %v", err)
		case <-ctx.Done():
			t.Fatal("no output line")
		}
		return api.OutputLine{}
	}
	for k := range events {
		l := next()
		if l.Event == nil || l.Event.Seq != int64(k+1) || l.Event.Task != events[k].Task || l.Event.State != events[k].State {
			t.Fatalf("line %d = %+v", k, l)
		}
		if k+1 < len(events) {
			if _, err := e.store.AddTaskEvent(ctx, events[k+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := e.store.Finish(ctx, task.ID, "w", state.TaskDone, "2 instances updated"); err != nil {
		t.Fatal(err)
	}
	if l := next(); l.Task == nil || l.Task.State != state.TaskDone || l.Task.Result != "2 instances updated" {
		t.Errorf("last line = %+v", l)
	}
	if err := <-done; err != nil {
		t.Errorf("follow: %v", err)
	}

	// Not following: what there is, then the task; after skips what was seen.
	var lines []api.OutputLine
	if err := e.client(t, readToken).TaskOutput(ctx, task.ID, 2, false, func(l api.OutputLine) error { lines = append(lines, l); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0].Event.Seq != 3 || lines[1].Task == nil {
		t.Errorf("output after 2 = %+v", lines)
	}
}

func TestLogsCCKAndSources(t *testing.T) {
	probs := fakeChecker{{Type: "missing_vm", Instance: "web/0", Description: "VM vm-web-0 is gone", Resolutions: []string{"recreate_vm", "delete_vm_reference"}}}
	e := newEnv(t, api.Options{Logs: fakeLogs{}, Checker: probs, Sources: fakeSources{{Name: "fleet", Repository: "https://git.example.com/fleet.git", Branch: "main"}}})
	seed(t, e.store)
	ctx := ctxFor(t)
	c := e.client(t, adminToken)
	var buf bytes.Buffer
	if err := c.Logs(ctx, "web", "web", "1", &buf); err != nil || buf.String() != "logs of web/1" {
		t.Errorf("logs = %q, %v", buf.String(), err)
	}
	if err := e.client(t, readToken).Logs(ctx, "web", "web", "1", &buf); !isStatus(err, 403) {
		t.Errorf("a reader fetched logs: %v", err)
	}
	if err := c.Logs(ctx, "db", "pg", "0", &buf); !isStatus(err, 409) || !strings.Contains(err.Error(), "has no VM") {
		t.Errorf("logs of a VM-less instance: %v", err)
	}
	failing := newEnv(t, api.Options{Logs: fakeLogs{fail: true}})
	seed(t, failing.store)
	if err := failing.client(t, adminToken).Logs(ctx, "web", "web", "0", &buf); !isStatus(err, 500) || !strings.Contains(err.Error(), "no space left on device") {
		t.Errorf("failing fetch: %v", err)
	}
	got, err := c.CloudCheck(ctx, "web")
	if err != nil || len(got) != 1 || got[0].ID != 1 || got[0].Type != "missing_vm" {
		t.Errorf("cck = %+v, %v", got, err)
	}
	ss, err := c.Sources(ctx)
	if err != nil || len(ss) != 1 || ss[0].Branch != "main" {
		t.Errorf("sources = %+v, %v", ss, err)
	}
	evs, _ := e.store.Events(ctx, state.EventFilter{Deployment: "web"})
	var acts []string
	for _, ev := range evs {
		acts = append(acts, ev.Action)
	}
	if diff := cmp.Diff([]string{"cloud_check", "fetch_logs"}, acts); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, api.Options{Metrics: []func(context.Context, *api.MetricsWriter){
		func(ctx context.Context, m *api.MetricsWriter) {
			m.Histogram("reconcile_duration_seconds", "Reconcile duration.", api.Labels{"deployment": `we"b`}, map[float64]uint64{0.5: 1, 1: 2}, 1.2, 2)
		},
	}})
	seed(t, e.store)
	ctx := ctxFor(t)
	_, _ = e.store.Enqueue(ctx, state.Task{Type: state.TaskDeploy, Deployment: "web"})
	_, _ = e.client(t, "").Deployments(ctx) // a 401, counted
	resp, err := http.Get(e.server.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"# TYPE bosun_tasks gauge\n",
		`bosun_tasks{state="queued"} 1` + "\n",
		"bosun_task_queue_depth 1\n",
		`bosun_revisions{verdict="accepted"} 0` + "\n",
		"bosun_deployments_suspended 0\n",
		`bosun_api_requests_total{code="401",route="GET /deployments"} 1` + "\n",
		`bosun_reconcile_duration_seconds_bucket{deployment="we\"b",le="0.5"} 1` + "\n",
		`bosun_reconcile_duration_seconds_bucket{deployment="we\"b",le="+Inf"} 2` + "\n",
		`bosun_reconcile_duration_seconds_count{deployment="we\"b"} 2` + "\n",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	}
	if strings.Count(string(b), "# TYPE bosun_tasks ") != 1 {
		t.Error("a family announced twice")
	}
}

func TestPanicIsA500WithoutStack(t *testing.T) {
	e := newEnv(t, api.Options{Checker: panicky{}})
	seed(t, e.store)
	_, err := e.client(t, adminToken).CloudCheck(ctxFor(t), "web")
	if !isStatus(err, 500) || !strings.Contains(err.Error(), "the director's log has the details") || strings.Contains(err.Error(), "goroutine") {
		t.Errorf("panic answer: %v", err)
	}
}

type panicky struct{ fakeChecker }

func (panicky) Scan(ctx context.Context, deployment string) ([]api.Problem, error) {
	var m map[string]int
	m["boom"]++ // a nil map write: a real bug, not a deliberate panic value
	return nil, nil
}

func TestStopStreamsEndsFollowers(t *testing.T) {
	e := newEnv(t, api.Options{})
	seed(t, e.store)
	ctx := ctxFor(t)
	task, _ := e.store.Enqueue(ctx, state.Task{Type: state.TaskDeploy, Deployment: "web"})
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/tasks/%d/output?follow=1", e.server.URL, task.ID), nil)
	req.Header.Set("Authorization", "Bearer "+readToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		ended <- err
	}()
	e.api.StopStreams()
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("stream broke instead of ending: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the follower's stream stayed open after StopStreams")
	}
}

func TestFollowKeepAliveAndResume(t *testing.T) {
	e := newEnv(t, api.Options{KeepAlive: 30 * time.Millisecond})
	seed(t, e.store)
	ctx := ctxFor(t)
	task, _ := e.store.Enqueue(ctx, state.Task{Type: state.TaskDeploy, Deployment: "web"})
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/tasks/%d/output?follow=1", e.server.URL, task.ID), nil)
	req.Header.Set("Authorization", "Bearer "+readToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close()
	if err != nil || line != "{}\n" {
		t.Errorf("first line of a quiet stream = %q, %v; want a keep-alive", line, err)
	}

	// The client skips keep-alives and resumes after the last event it saw when the
	// stream breaks off (here: the server stops streams once, mid-task).
	if _, err := e.store.Claim(ctx, "w", nil); err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	got := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() {
		done <- e.client(t, readToken).TaskOutput(ctx, task.ID, 0, true, func(l api.OutputLine) error {
			if l.Event == nil && l.Task == nil {
				return errors.New("keep-alive passed on")
			}
			if l.Event != nil {
				seqs = append(seqs, l.Event.Seq)
			}
			got <- struct{}{}
			return nil
		})
	}()
	_, _ = e.store.AddTaskEvent(ctx, state.TaskEvent{TaskID: task.ID, Stage: "s", State: "started"})
	<-got
	e.api.StopStreams()
	_, _ = e.store.AddTaskEvent(ctx, state.TaskEvent{TaskID: task.ID, Stage: "s", State: "finished"})
	if err := e.store.Finish(ctx, task.ID, "w", state.TaskDone, ""); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{1, 2}, seqs); diff != "" {
		t.Errorf("events seen (-want +got):\n%s", diff)
	}
}

func TestActionsAreLoggedWithoutTokens(t *testing.T) {
	var buf syncBuf
	e := newEnv(t, api.Options{Log: slog.New(slog.NewTextHandler(&buf, nil))})
	seed(t, e.store)
	ctx := ctxFor(t)
	if _, err := e.client(t, adminToken).Suspend(ctx, "web", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client(t, readToken).Deployments(ctx); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, `msg="API action" method=POST path=/deployments/web/suspend status=200 user=alice`) {
		t.Errorf("log lacks the action:\n%s", out)
	}
	if strings.Contains(out, "GET") || strings.Contains(out, adminToken) {
		t.Errorf("log has a read or a token:\n%s", out)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
