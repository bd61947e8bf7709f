package postgres_test

import (
	"errors"
	"testing"

	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/jackc/pgx/v5"
)

func TestAdvisoryLockExclusiveAndFreedWithItsSession(t *testing.T) {
	ctx := ctxFor(t)
	url := pgtestDatabase(t)
	a, b := openStore(t, url), openStore(t, url)
	const key = 0x626f73756e746573

	la, err := a.TryAdvisoryLock(ctx, key)
	if err != nil || la == nil {
		t.Fatalf("first take = %v, %v; want the lock", la, err)
	}
	if lb, err := b.TryAdvisoryLock(ctx, key); err != nil || lb != nil {
		t.Fatalf("second take while held = %v, %v; want nil, nil", lb, err)
	}
	if err := la.Check(ctx); err != nil {
		t.Fatalf("check while held: %v", err)
	}

	// The holder's session dies (its director crashed): the lock is free and the holder
	// learns it lost it.
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1, 30000)", int32(la.PID())); err != nil {
		t.Fatal(err)
	}
	if err := la.Check(ctx); !errors.Is(err, postgres.ErrLockLost) {
		t.Fatalf("check after the session died = %v, want ErrLockLost", err)
	}
	lb, err := b.TryAdvisoryLock(ctx, key)
	if err != nil || lb == nil {
		t.Fatalf("take after the holder died = %v, %v; want the lock", lb, err)
	}
	la.Release(ctx) // released twice (once by dying): harmless

	lb.Release(ctx)
	lb.Release(ctx)
	if err := lb.Check(ctx); !errors.Is(err, postgres.ErrLockLost) {
		t.Fatalf("check after release = %v, want ErrLockLost", err)
	}
	lc, err := a.TryAdvisoryLock(ctx, key)
	if err != nil || lc == nil {
		t.Fatalf("take after release = %v, %v; want the lock", lc, err)
	}
	lc.Release(ctx)
}

func TestUnfinishedTasks(t *testing.T) {
	ctx := ctxFor(t)
	s := openStore(t, pgtestDatabase(t))
	var ids []int64
	for _, tk := range []state.Task{
		{Type: state.TaskResurrect, Deployment: "web"},
		{Type: state.TaskResurrect, Deployment: "web"},
		{Type: state.TaskDeploy, Deployment: "web"},
		{Type: state.TaskResurrect, Deployment: "db"},
	} {
		got, err := s.Enqueue(ctx, tk)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got.ID)
	}
	// The first runs, then finishes; the second runs.
	first, err := s.Claim(ctx, "w", nil)
	if err != nil || first == nil || first.ID != ids[0] {
		t.Fatalf("claim = %+v, %v", first, err)
	}
	if err := s.Finish(ctx, first.ID, "w", state.TaskDone, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, "w", []string{state.TaskResurrect}); err != nil {
		t.Fatal(err)
	}
	got, err := s.UnfinishedTasks(ctx, "web", state.TaskResurrect)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != ids[1] || got[0].State != state.TaskProcessing {
		t.Errorf("unfinished = %+v, want task %d processing", got, ids[1])
	}
}
