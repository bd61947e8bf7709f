package postgres_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
)

func TestSuspendResume(t *testing.T) {
	s := openStore(t, pgtestDatabase(t))
	ctx := ctxFor(t)
	if on, err := s.DeploymentSuspended(ctx, "web"); err != nil || on {
		t.Fatalf("suspended before any suspension = %v, %v", on, err)
	}
	first, err := s.SuspendDeployment(ctx, "web", "alice", "maintenance window")
	if err != nil {
		t.Fatal(err)
	}
	if first.User != "alice" || first.Reason != "maintenance window" || first.Since.IsZero() {
		t.Errorf("suspension = %+v", first)
	}
	again, err := s.SuspendDeployment(ctx, "web", "bob", "")
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("second suspension = %+v; want the first kept %+v", again, first)
	}
	if on, err := s.DeploymentSuspended(ctx, "web"); err != nil || !on {
		t.Errorf("suspended = %v, %v; want true", on, err)
	}
	if on, _ := s.DeploymentSuspended(ctx, "db"); on {
		t.Error("db suspended too")
	}
	all, err := s.Suspensions(ctx)
	if err != nil || len(all) != 1 || all[0].Deployment != "web" {
		t.Errorf("suspensions = %+v, %v", all, err)
	}
	if was, err := s.ResumeDeployment(ctx, "web"); err != nil || !was {
		t.Errorf("resume = %v, %v; want true", was, err)
	}
	if was, err := s.ResumeDeployment(ctx, "web"); err != nil || was {
		t.Errorf("second resume = %v, %v; want false", was, err)
	}
	if _, err := s.Suspension(ctx, "web"); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("suspension after resume: %v", err)
	}
}

func TestEventAndTaskFilters(t *testing.T) {
	s := openStore(t, pgtestDatabase(t))
	ctx := ctxFor(t)
	for _, e := range []state.Event{
		{Action: "recreate", ObjectType: "instance", Deployment: "web", Instance: "web/0"},
		{Action: "recreate", ObjectType: "instance", Deployment: "web", Instance: "web/1"},
		{Action: "stop", ObjectType: "instance", Deployment: "db", Instance: "db/0"},
	} {
		if _, err := s.AddEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	count := func(f state.EventFilter) int {
		t.Helper()
		evs, err := s.Events(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	tests := []struct {
		name string
		f    state.EventFilter
		want int
	}{
		{"all", state.EventFilter{}, 3},
		{"instance", state.EventFilter{Instance: "web/1"}, 1},
		{"deployments", state.EventFilter{Deployments: []string{"db"}}, 1},
		{"no deployments", state.EventFilter{Deployments: []string{}}, 0},
		{"since the past", state.EventFilter{Since: time.Now().Add(-time.Hour)}, 3},
		{"since the future", state.EventFilter{Since: time.Now().Add(time.Hour)}, 0},
		{"until the past", state.EventFilter{Until: time.Now().Add(-time.Hour)}, 0},
	}
	for _, tt := range tests {
		if got := count(tt.f); got != tt.want {
			t.Errorf("%s: %d events, want %d", tt.name, got, tt.want)
		}
	}
	for _, d := range []string{"web", "db", "web", ""} {
		if _, err := s.Enqueue(ctx, state.Task{Type: "deploy", Deployment: d}); err != nil {
			t.Fatal(err)
		}
	}
	ts, err := s.Tasks(ctx, state.TaskFilter{Deployments: []string{"web"}})
	if err != nil || len(ts) != 2 {
		t.Errorf("web's tasks = %d, %v; want 2", len(ts), err)
	}
	if ts, _ := s.Tasks(ctx, state.TaskFilter{Deployments: []string{}}); len(ts) != 0 {
		t.Errorf("tasks of no deployments = %d", len(ts))
	}
	counts, err := s.TaskCounts(ctx)
	if err != nil || counts[state.TaskQueued] != 4 {
		t.Errorf("task counts = %v, %v", counts, err)
	}
}
