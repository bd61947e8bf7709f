package postgres_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/google/go-cmp/cmp"
)

func TestMigrateConcurrentAndIdempotent(t *testing.T) {
	url := pgtestDatabase(t)
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := postgres.Open(ctx, url, nil)
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent open: %v", err)
	}
	s := openStore(t, url)
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrating again: %v", err)
	}
	got, err := s.Migrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Every migration file, once each, in order (listed from the directory so that each
	// new migration does not have to edit this test).
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) < 2 {
		t.Fatalf("migration files: %v, %v", files, err)
	}
	var want []string
	for _, f := range files {
		want = append(want, strings.TrimSuffix(filepath.Base(f), ".sql"))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("applied migrations (-want +got):\n%s", diff)
	}
}

// TestQueueConcurrentWorkers runs many workers over many tasks: each task runs exactly
// once, and no deployment ever has two tasks running at the same time.
func TestQueueConcurrentWorkers(t *testing.T) {
	s := openStore(t, pgtestDatabase(t))
	ctx := ctxFor(t)
	const workers, tasks, deployments = 6, 120, 4
	for i := range tasks {
		d := ""
		if i%5 != 0 {
			d = fmt.Sprintf("dep-%d", i%deployments)
		}
		if _, err := s.Enqueue(ctx, state.Task{Type: "deploy", Deployment: d, Description: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	runs := map[int64]int{}
	running := map[string]int64{}
	var overlaps []string
	var wg sync.WaitGroup
	for w := range workers {
		owner := fmt.Sprintf("worker-%d", w)
		wg.Go(func() {
			for {
				task, err := s.Claim(ctx, owner, []string{"deploy"})
				if err != nil {
					t.Errorf("%s: %v", owner, err)
					return
				}
				if task == nil {
					mu.Lock()
					n := len(runs)
					mu.Unlock()
					if n == tasks {
						return
					}
					time.Sleep(5 * time.Millisecond) // others hold the remaining deployments
					continue
				}
				mu.Lock()
				runs[task.ID]++
				if task.Deployment != "" {
					if other, busy := running[task.Deployment]; busy {
						overlaps = append(overlaps, fmt.Sprintf("%s: tasks %d and %d", task.Deployment, other, task.ID))
					}
					running[task.Deployment] = task.ID
				}
				mu.Unlock()
				if _, err := s.Heartbeat(ctx, task.ID, owner); err != nil {
					t.Errorf("%s: %v", owner, err)
				}
				mu.Lock()
				delete(running, task.Deployment)
				mu.Unlock()
				if err := s.Finish(ctx, task.ID, owner, state.TaskDone, "ok"); err != nil {
					t.Errorf("%s: %v", owner, err)
				}
			}
		})
	}
	wg.Wait()
	if len(runs) != tasks {
		t.Errorf("%d tasks ran, want %d", len(runs), tasks)
	}
	for id, n := range runs {
		if n != 1 {
			t.Errorf("task %d ran %d times", id, n)
		}
	}
	if len(overlaps) > 0 {
		t.Errorf("deployments ran two tasks at once: %v", overlaps)
	}
	done, err := s.Tasks(ctx, postgres.TaskFilter{States: []string{state.TaskDone}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != tasks {
		t.Errorf("%d tasks done, want %d", len(done), tasks)
	}
	if locks, _ := s.Locks(ctx); len(locks) != 0 {
		t.Errorf("locks left behind: %+v", locks)
	}
}

func TestQueueOneTaskPerDeploymentInOrder(t *testing.T) {
	s := openStore(t, pgtestDatabase(t))
	ctx := ctxFor(t)
	first, _ := s.Enqueue(ctx, state.Task{Type: "deploy", Deployment: "web"})
	second, _ := s.Enqueue(ctx, state.Task{Type: "deploy", Deployment: "web"})
	other, _ := s.Enqueue(ctx, state.Task{Type: "deploy", Deployment: "db"})

	got, err := s.Claim(ctx, "a", nil)
	if err != nil || got == nil || got.ID != first.ID {
		t.Fatalf("first claim = %+v, %v; want task %d", got, err, first.ID)
	}
	got, err = s.Claim(ctx, "b", nil)
	if err != nil || got == nil || got.ID != other.ID {
		t.Fatalf("second claim = %+v, %v; want task %d of the other deployment", got, err, other.ID)
	}
	if got, err := s.Claim(ctx, "c", nil); err != nil || got != nil {
		t.Fatalf("third claim = %+v, %v; want nothing while web and db are held", got, err)
	}
	locks, err := s.Locks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for _, l := range locks {
		held = append(held, fmt.Sprintf("%s %d %s", l.Deployment, l.TaskID, l.Owner))
		if l.Age < 0 || l.Since.IsZero() {
			t.Errorf("lock %s: age %v since %v", l.Deployment, l.Age, l.Since)
		}
	}
	want := []string{fmt.Sprintf("db %d b", other.ID), fmt.Sprintf("web %d a", first.ID)}
	if diff := cmp.Diff(want, held); diff != "" {
		t.Errorf("locks (-want +got):\n%s", diff)
	}
	if err := s.Finish(ctx, first.ID, "a", state.TaskDone, ""); err != nil {
		t.Fatal(err)
	}
	got, err = s.Claim(ctx, "c", nil)
	if err != nil || got == nil || got.ID != second.ID {
		t.Fatalf("claim after finish = %+v, %v; want task %d", got, err, second.ID)
	}
}

func TestQueueStaleWorkerTakenOver(t *testing.T) {
	s := openStore(t, pgtestDatabase(t))
	ctx := ctxFor(t)
	task, _ := s.Enqueue(ctx, state.Task{Type: "deploy", Deployment: "web"})
	if got, err := s.Claim(ctx, "dead", nil); err != nil || got == nil {
		t.Fatalf("claim: %+v, %v", got, err)
	}
	// The "dead" worker never heartbeats again; the reaper takes the task back once its
	// heartbeat is older than the TTL.
	const ttl = 300 * time.Millisecond
	if ids, err := s.RequeueStale(ctx, time.Hour); err != nil || len(ids) != 0 {
		t.Fatalf("requeue with a fresh heartbeat = %v, %v; want nothing", ids, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ids, err := s.RequeueStale(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) == 1 && ids[0] == task.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("stale task never requeued")
		}
		time.Sleep(50 * time.Millisecond)
	}
	got, err := s.Claim(ctx, "alive", nil)
	if err != nil || got == nil || got.ID != task.ID {
		t.Fatalf("takeover claim = %+v, %v", got, err)
	}
	if got.Attempts != 2 || got.Owner != "alive" {
		t.Errorf("taken-over task: attempts %d owner %q; want 2, alive", got.Attempts, got.Owner)
	}
	if _, err := s.Heartbeat(ctx, task.ID, "dead"); !errors.Is(err, postgres.ErrLost) {
		t.Errorf("dead worker's heartbeat: %v, want ErrLost", err)
	}
	if err := s.Finish(ctx, task.ID, "dead", state.TaskDone, ""); !errors.Is(err, postgres.ErrLost) {
		t.Errorf("dead worker's finish: %v, want ErrLost", err)
	}
	if err := s.Finish(ctx, task.ID, "alive", state.TaskDone, "ok"); err != nil {
		t.Errorf("new owner's finish: %v", err)
	}
}

func TestQueueCancelReleaseAndTypes(t *testing.T) {
	s := openStore(t, pgtestDatabase(t))
	ctx := ctxFor(t)
	queued, _ := s.Enqueue(ctx, state.Task{Type: "deploy", Deployment: "a"})
	c, err := s.RequestCancel(ctx, queued.ID)
	if err != nil || c.State != state.TaskCancelled || c.FinishedAt == nil {
		t.Fatalf("cancel queued = %+v, %v", c, err)
	}

	running, _ := s.Enqueue(ctx, state.Task{Type: "deploy", Deployment: "a"})
	if got, _ := s.Claim(ctx, "w", []string{"other"}); got != nil {
		t.Fatalf("claimed a %s task when asking for type other", got.Type)
	}
	if got, _ := s.Claim(ctx, "w", []string{"deploy"}); got == nil || got.ID != running.ID {
		t.Fatalf("claim = %+v", got)
	}
	if cancel, err := s.Heartbeat(ctx, running.ID, "w"); err != nil || cancel {
		t.Fatalf("heartbeat before cancel = %v, %v", cancel, err)
	}
	if c, err := s.RequestCancel(ctx, running.ID); err != nil || c.State != state.TaskCancelling {
		t.Fatalf("cancel processing = %+v, %v", c, err)
	}
	if cancel, err := s.Heartbeat(ctx, running.ID, "w"); err != nil || !cancel {
		t.Fatalf("heartbeat after cancel = %v, %v; want cancel requested", cancel, err)
	}
	if err := s.Finish(ctx, running.ID, "w", state.TaskCancelled, "cancelled by operator"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequestCancel(ctx, 999999); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("cancel missing task: %v", err)
	}
	if err := s.Finish(ctx, running.ID, "w", state.TaskQueued, ""); err == nil {
		t.Error("finish in a non-final state succeeded")
	}

	released, _ := s.Enqueue(ctx, state.Task{Type: "deploy", Deployment: "a"})
	if got, _ := s.Claim(ctx, "w", nil); got == nil || got.ID != released.ID {
		t.Fatalf("claim = %+v", got)
	}
	if err := s.Release(ctx, released.ID, "w"); err != nil {
		t.Fatal(err)
	}
	back, err := s.Task(ctx, released.ID)
	if err != nil || back.State != state.TaskQueued || back.Owner != "" {
		t.Fatalf("released task = %+v, %v", back, err)
	}
	if got, _ := s.Claim(ctx, "w2", nil); got == nil || got.ID != released.ID {
		t.Fatalf("claim after release = %+v", got)
	}
}

func TestTaskEventsStream(t *testing.T) {
	s := openStore(t, pgtestDatabase(t))
	ctx := ctxFor(t)
	task, _ := s.Enqueue(ctx, state.Task{Type: "deploy"})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			if _, err := s.AddTaskEvent(ctx, state.TaskEvent{TaskID: task.ID, Stage: "Updating instance", Task: fmt.Sprintf("web/%d", i), Index: i + 1, Total: 40, State: "started"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	evs, err := s.TaskEvents(ctx, task.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 30 {
		t.Fatalf("%d events after seq 10, want 30", len(evs))
	}
	for i, e := range evs {
		if e.Seq != int64(11+i) {
			t.Fatalf("event %d has seq %d, want %d", i, e.Seq, 11+i)
		}
	}
	if _, err := s.AddTaskEvent(ctx, state.TaskEvent{TaskID: 424242}); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("event on a missing task: %v", err)
	}
}
