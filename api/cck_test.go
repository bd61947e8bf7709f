package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/google/go-cmp/cmp"
)

// resolvingChecker finds probs and resolves them as the health Scanner would: a
// recreate_vm queues a resurrect task, the rest change nothing here.
type resolvingChecker struct {
	probs []api.Problem
	store *postgres.Store
	got   []api.ProblemChoice
}

func (c *resolvingChecker) Scan(ctx context.Context, deployment string) ([]api.Problem, error) {
	return append([]api.Problem(nil), c.probs...), nil
}

func (c *resolvingChecker) Resolve(ctx context.Context, deployment string, cs []api.ProblemChoice) ([]api.Resolution, error) {
	c.got = append(c.got, cs...)
	out := make([]api.Resolution, len(cs))
	for i, ch := range cs {
		out[i] = api.Resolution{Resolution: ch.Resolution}
		switch ch.Resolution {
		case "recreate_vm":
			t, err := c.store.Enqueue(ctx, state.Task{Type: state.TaskResurrect, Deployment: deployment, User: "cck"})
			if err != nil {
				return nil, err
			}
			out[i].TaskID = t.ID
		case "delete_disk_reference":
			out[i].Error = "a task holds deployment " + deployment
		}
	}
	return out, nil
}

var cckProblems = []api.Problem{
	{Type: "missing_vm", Instance: "web/0", Description: "VM vm-0 is gone", Resolutions: []string{"recreate_vm", "delete_vm_reference", "ignore"}},
	{Type: "unresponsive_agent", Instance: "web/1", Description: "agent-1 does not answer", Resolutions: []string{"ignore", "recreate_vm", "delete_vm_reference"}},
	{Type: "missing_disk", Instance: "web/2", Description: "disk-2 is gone", Resolutions: []string{"delete_disk_reference", "ignore"}},
}

func TestResolveProblems(t *testing.T) {
	ctx := ctxFor(t)
	tests := []struct {
		name  string
		token string
		req   api.ResolveRequest
		want  []string // problem id: resolution task? error?
		code  int      // of a refused request
		msg   string   // its error contains
	}{
		{name: "auto applies the defaults", token: adminToken, req: api.ResolveRequest{Auto: true},
			want: []string{"1 recreate_vm task", "2 ignore", "3 delete_disk_reference error:a task holds deployment web"}},
		{name: "a type's choice over the default", token: webAdmToken, req: api.ResolveRequest{Auto: true, Resolutions: map[string]string{"unresponsive_agent": "recreate_vm", "missing_disk": "ignore"}},
			want: []string{"1 recreate_vm task", "2 recreate_vm task", "3 ignore"}},
		{name: "a number wins over a type; the rest left alone", token: adminToken, req: api.ResolveRequest{Resolutions: map[string]string{"1": "delete_vm_reference", "missing_vm": "recreate_vm"}},
			want: []string{"1 delete_vm_reference", "2 -", "3 -"}},
		{name: "a reader may not resolve", token: readToken, req: api.ResolveRequest{Auto: true}, code: 403, msg: "may not resolve cck problems of web"},
		{name: "a team reader may not resolve", token: webReadToken, req: api.ResolveRequest{Auto: true}, code: 403, msg: "bosun.teams.<team>.admin"},
		{name: "an unknown choice names the valid ones", token: adminToken, req: api.ResolveRequest{Resolutions: map[string]string{"missing_vm": "reboot"}},
			code: 400, msg: `problem 1 (missing_vm of web/0): "reboot" is not one of its resolutions: want recreate_vm, delete_vm_reference, ignore`},
		{name: "an unknown type names those found", token: adminToken, req: api.ResolveRequest{Resolutions: map[string]string{"mount_info_mismatch": "ignore"}},
			code: 400, msg: "the scan found no such problem (it found missing_disk, missing_vm, unresponsive_agent)"},
		{name: "an unknown number", token: adminToken, req: api.ResolveRequest{Resolutions: map[string]string{"7": "ignore"}}, code: 400, msg: "the scan found 3 problems"},
		{name: "no choice at all", token: adminToken, req: api.ResolveRequest{}, code: 400, msg: "no resolution chosen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := &resolvingChecker{probs: cckProblems}
			e := newEnv(t, api.Options{Checker: ch})
			ch.store = e.store
			seed(t, e.store)
			got, err := e.client(t, tt.token).ResolveProblems(ctx, "web", tt.req)
			if tt.code != 0 {
				if !isStatus(err, tt.code) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("err = %v, want %d with %q", err, tt.code, tt.msg)
				}
				if len(ch.got) != 0 {
					t.Errorf("a refused request resolved %+v", ch.got)
				}
				evs, _ := e.store.Events(ctx, state.EventFilter{Deployment: "web"})
				for _, ev := range evs {
					if ev.Action == "resolve_problem" {
						t.Errorf("a refused request recorded %+v", ev)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			var resolved int
			for _, r := range got {
				l := fmt.Sprintf("%d %s", r.Problem.ID, r.Resolution)
				if r.Resolution == "" {
					l += "-"
				} else {
					resolved++
				}
				if r.TaskID != 0 {
					l += " task"
				}
				if r.Error != "" {
					l += " error:" + r.Error
				}
				lines = append(lines, l)
			}
			if diff := cmp.Diff(tt.want, lines); diff != "" {
				t.Errorf("resolutions (-want +got):\n%s", diff)
			}
			// One event per resolution applied, with its user and task.
			evs, err := e.store.Events(ctx, state.EventFilter{Deployment: "web"})
			if err != nil {
				t.Fatal(err)
			}
			var n int
			for _, ev := range evs {
				if ev.Action != "resolve_problem" {
					continue
				}
				n++
				if ev.User == "" || ev.ObjectType != "problem" || ev.Context["resolution"] == nil {
					t.Errorf("event %+v", ev)
				}
				for _, r := range got {
					if r.Problem.Instance == ev.Instance && r.TaskID != ev.TaskID {
						t.Errorf("event of %s has task %d, resolution %d", ev.Instance, ev.TaskID, r.TaskID)
					}
				}
			}
			if n != resolved {
				t.Errorf("%d resolve_problem events, want %d", n, resolved)
			}
		})
	}
}

func TestReaderMayScan(t *testing.T) {
	e := newEnv(t, api.Options{Checker: &resolvingChecker{probs: cckProblems}})
	seed(t, e.store)
	for _, tok := range []string{readToken, webReadToken} {
		got, err := e.client(t, tok).CloudCheck(ctxFor(t), "web")
		if err != nil || len(got) != 3 {
			t.Errorf("scan with a read token: %d problems, %v", len(got), err)
		}
	}
}
