package main

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/api"
	hm "github.com/bosun-gitops/bosun/health"
	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/google/go-cmp/cmp"
)

// cckCloud is a cloud that lost some VMs; every disk is there and attached.
type cckCloud struct{ gone map[string]bool }

func (c cckCloud) HasVM(ctx context.Context, cpi, cid string) (bool, error) { return !c.gone[cid], nil }
func (c cckCloud) HasDisk(ctx context.Context, cpi, cid string) (bool, error) {
	return true, nil
}
func (c cckCloud) AttachedDisks(ctx context.Context, cpi, cid string) ([]string, error) {
	return nil, hm.ErrUnsupported
}

// cckAgents answers for every agent but the silent ones.
type cckAgents map[string]bool

func (a cckAgents) Responsive(ctx context.Context, agentID string) (bool, error) {
	return !a[agentID], nil
}

// newCCKEnv is the CLI against an API whose cloud check is the real health.Scanner over
// the env's Postgres store, through the director's adapter: vm-1 is gone from the cloud
// and agent-2 does not answer.
func newCCKEnv(t *testing.T) *cliEnv {
	return newCLIEnvWith(t, api.Options{}, func(s *postgres.Store) api.CloudChecker {
		return cckScan{&hm.Scanner{Store: s, Cloud: cckCloud{gone: map[string]bool{"vm-1": true}}, Agents: cckAgents{"agent-2": true}}}
	})
}

// finishResurrect plays the reconciler for the next resurrect task and returns it.
func finishResurrect(t *testing.T, s *postgres.Store, got chan<- state.Task) {
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		task, err := s.Claim(ctx, "test-worker", []string{state.TaskResurrect})
		if err != nil {
			t.Error(err)
			break
		}
		if task == nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err := s.Finish(ctx, task.ID, "test-worker", state.TaskDone, "recreated 1 instance"); err != nil {
			t.Error(err)
		}
		got <- *task
		return
	}
	close(got)
}

func TestCCKReportsThenResolves(t *testing.T) {
	env := newCCKEnv(t)
	ctx := context.Background()

	o, e, code := runCLI(t, "cck", "-d", "web")
	if code != 1 || e != "bosun cck: 2 problems found\n" {
		t.Fatalf("report: exit %d, stderr %q", code, e)
	}
	for _, want := range []string{"  missing_vm  web/<uuid>  VM vm-1", "  unresponsive_agent  web/<uuid>  the agent agent-2", "--auto` applies each problem's default"} {
		if !strings.Contains(columns(o), want) {
			t.Errorf("report lacks %q:\n%s", want, o)
		}
	}

	// A choice that does not fit changes nothing and names the valid ones.
	_, e, code = runCLI(t, "cck", "-d", "web", "--resolution", "unresponsive_agent=reboot")
	if code != 1 || !strings.Contains(e, `"reboot" is not one of its resolutions: want ignore, recreate_vm, delete_vm_reference`) || strings.Count(e, "\n") != 1 {
		t.Errorf("bad choice: exit %d, stderr %q", code, e)
	}
	if _, e, code = runCLI(t, "cck", "-d", "web", "--resolution", "missing_vm"); code != 2 || !strings.Contains(e, "want TYPE=RESOLUTION") {
		t.Errorf("malformed --resolution: exit %d, stderr %q", code, e)
	}

	// A reader may scan but not resolve.
	t.Setenv("BOSUN_TOKEN", cliReadToken)
	if _, e, code = runCLI(t, "cck", "-d", "web"); code != 1 || e != "bosun cck: 2 problems found\n" {
		t.Errorf("reader's scan: exit %d, stderr %q", code, e)
	}
	if _, e, code = runCLI(t, "cck", "-d", "web", "--auto"); code != 1 || !strings.Contains(e, "token auditor may not resolve cck problems of web") {
		t.Errorf("reader's resolve: exit %d, stderr %q", code, e)
	}
	t.Setenv("BOSUN_TOKEN", "")
	if ts, _ := env.store.Tasks(ctx, state.TaskFilter{}); len(ts) != 0 {
		t.Fatalf("refused requests queued %+v", ts)
	}

	// --auto: the missing VM is recreated (and followed), the silent agent ignored.
	done := make(chan state.Task, 1)
	go finishResurrect(t, env.store, done)
	o, e, code = runCLI(t, "cck", "-d", "web", "--auto")
	if code != 0 {
		t.Fatalf("--auto: exit %d, stderr %q\n%s", code, e, o)
	}
	task, ok := <-done
	if !ok {
		t.Fatal("no resurrect task was queued")
	}
	var params state.ResurrectParams
	if err := json.Unmarshal(task.Params, &params); err != nil || !cmp.Equal(params.Instances, []string{env.web[1].ID}) || !strings.HasPrefix(params.Reason, hm.ReasonVMMissing) {
		t.Errorf("resurrect params %s (%v)", task.Params, err)
	}
	for _, want := range []string{
		"  missing_vm  web/<uuid>  recreate_vm  1  queued",
		"  unresponsive_agent  web/<uuid>  ignore  -  done",
		"2 problems: 2 resolved, 0 failed, 0 left as they are",
		"Task 1 done",
	} {
		if !strings.Contains(columns(o), want) {
			t.Errorf("--auto output lacks %q:\n%s", want, o)
		}
	}

	// A chosen resolution, not followed, in JSON: the silent agent's VM reference goes.
	o, e, code = runCLI(t, "cck", "-d", "web", "--resolution", "unresponsive_agent=delete_vm_reference", "--no-follow", "--json")
	if code != 0 {
		t.Fatalf("--resolution: exit %d, stderr %q\n%s", code, e, o)
	}
	var res cckResult
	if err := json.Unmarshal([]byte(o), &res); err != nil {
		t.Fatalf("--json: %v\n%s", err, o)
	}
	var got []string
	for _, r := range res.Resolutions {
		got = append(got, r.Problem.Type+" "+r.Resolution+" "+r.Error)
	}
	// vm-1 is still missing (no worker made it again): left alone without --auto.
	slices.Sort(got) // numbered as the instance ids sort
	if diff := cmp.Diff([]string{"missing_vm  ", "unresponsive_agent delete_vm_reference "}, got); diff != "" {
		t.Errorf("resolutions (-want +got):\n%s", diff)
	}
	vms, err := env.store.VMs(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vms {
		if v.CID == "vm-2" {
			t.Errorf("vm-2's reference is still there: %+v", v)
		}
	}

	// --auto --json follows the recreate quietly and prints one document with the task as
	// it ended (vm-1 is still gone: no worker made it again).
	go finishResurrect(t, env.store, done)
	o, e, code = runCLI(t, "cck", "-d", "web", "--auto", "--json")
	if code != 0 {
		t.Fatalf("--auto --json: exit %d, stderr %q\n%s", code, e, o)
	}
	<-done
	res = cckResult{}
	if err := json.Unmarshal([]byte(o), &res); err != nil {
		t.Fatalf("--auto --json: %v\n%s", err, o)
	}
	if len(res.Resolutions) != 1 || res.Resolutions[0].TaskID == 0 || len(res.Tasks) != 1 || res.Tasks[0].ID != res.Resolutions[0].TaskID || res.Tasks[0].State != state.TaskDone {
		t.Errorf("--auto --json = %+v", res)
	}

	evs, _ := env.store.Events(ctx, state.EventFilter{Deployment: "web"})
	var acts []string
	for _, ev := range evs {
		if ev.Action == "resolve_problem" {
			if ev.User != "alice" {
				t.Errorf("event by %q", ev.User)
			}
			acts = append(acts, ev.Context["resolution"].(string))
		}
	}
	slices.Sort(acts)
	if diff := cmp.Diff([]string{"delete_vm_reference", "ignore", "recreate_vm", "recreate_vm"}, acts); diff != "" {
		t.Errorf("resolve events (-want +got):\n%s", diff)
	}
}

// fakeScanner finds probs and records what it was asked to resolve.
type fakeScanner struct {
	probs []hm.Problem
	asked map[string]string
}

func (f *fakeScanner) Scan(ctx context.Context, deployment string) ([]hm.Problem, error) {
	return f.probs, nil
}

func (f *fakeScanner) Resolve(ctx context.Context, ps []hm.Problem, choices map[string]string) ([]hm.Resolved, error) {
	f.asked = choices
	var out []hm.Resolved
	for _, p := range ps {
		out = append(out, hm.Resolved{ProblemID: p.ID, Resolution: choices[p.ID], TaskID: 7})
	}
	return out, nil
}

type failingScanner struct{ fakeScanner }

func (failingScanner) Scan(ctx context.Context, deployment string) ([]hm.Problem, error) {
	return nil, errors.New("cloud unreachable")
}

func TestCCKAdapterMatchesByTypeAndInstance(t *testing.T) {
	f := &fakeScanner{probs: []hm.Problem{
		{ID: "missing_vm/a", Type: "missing_vm", Instance: "web/a", Resolutions: []string{"recreate_vm"}},
		{ID: "missing_disk/b", Type: "missing_disk", Instance: "web/b", Resolutions: []string{"ignore"}},
	}}
	got, err := cckScan{f}.Resolve(context.Background(), "web", []api.ProblemChoice{
		{Problem: api.Problem{ID: 1, Type: "missing_disk", Instance: "web/b"}, Resolution: "ignore"},
		{Problem: api.Problem{ID: 2, Type: "missing_vm", Instance: "web/gone"}, Resolution: "recreate_vm"},
		{Problem: api.Problem{ID: 3, Type: "missing_vm", Instance: "web/a"}, Resolution: "recreate_vm"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Resolution{
		{Problem: api.Problem{ID: 1, Type: "missing_disk", Instance: "web/b"}, Resolution: "ignore", TaskID: 7},
		{Problem: api.Problem{ID: 2, Type: "missing_vm", Instance: "web/gone"}, Resolution: "recreate_vm", Error: "a new scan no longer finds this problem; nothing done"},
		{Problem: api.Problem{ID: 3, Type: "missing_vm", Instance: "web/a"}, Resolution: "recreate_vm", TaskID: 7},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("resolutions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"missing_vm/a": "recreate_vm", "missing_disk/b": "ignore"}, f.asked); diff != "" {
		t.Errorf("choices handed to the scanner (-want +got):\n%s", diff)
	}
	if _, err := (cckScan{&failingScanner{}}).Resolve(context.Background(), "web", nil); err == nil || !strings.Contains(err.Error(), "cloud unreachable") {
		t.Errorf("failing scan: %v", err)
	}
}
