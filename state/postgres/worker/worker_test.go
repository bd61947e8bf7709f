package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/bosun-gitops/bosun/state/postgres/pgtest"
	"github.com/bosun-gitops/bosun/state/postgres/worker"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var fast = worker.Config{Heartbeat: 50 * time.Millisecond, TTL: 400 * time.Millisecond, Poll: 20 * time.Millisecond, Grace: 100 * time.Millisecond}

func newStore(t *testing.T) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, pgtest.NewDatabase(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// start runs pool until the test ends (or stop is called) and returns stop, which waits.
func start(t *testing.T, pool *worker.Pool) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = pool.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("pool did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls task id until it is in state want.
func waitFor(t *testing.T, s *postgres.Store, id int64, want string) state.Task {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		task, err := s.Task(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if task.State == want {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d is %s (%s), want %s", id, task.State, task.Result, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func enqueue(t *testing.T, s *postgres.Store, typ, deployment string) int64 {
	t.Helper()
	task, err := s.Enqueue(context.Background(), state.Task{Type: typ, Deployment: deployment})
	if err != nil {
		t.Fatal(err)
	}
	return task.ID
}

// blocking waits for its ctx to end and reports why.
func blocking(started chan<- int64) worker.Handler {
	return func(ctx context.Context, task state.Task, _ func(state.TaskEvent) error) (string, error) {
		started <- task.ID
		<-ctx.Done()
		return "", ctx.Err()
	}
}

func TestPoolDispatchesByType(t *testing.T) {
	s := newStore(t)
	handlers := map[string]worker.Handler{
		"ok": func(ctx context.Context, task state.Task, emit func(state.TaskEvent) error) (string, error) {
			if err := emit(state.TaskEvent{Stage: "Working", Task: "step", Index: 1, Total: 1, State: "finished"}); err != nil {
				return "", err
			}
			return "did " + task.Deployment, nil
		},
		"fails": func(context.Context, state.Task, func(state.TaskEvent) error) (string, error) {
			return "", errors.New("cloud said no")
		},
		"panics": func(context.Context, state.Task, func(state.TaskEvent) error) (string, error) { panic("boom") },
	}
	start(t, worker.New(s, handlers, fast, slog.New(slog.DiscardHandler)))
	tests := []struct{ typ, state, result string }{
		{"ok", state.TaskDone, "did web"},
		{"fails", state.TaskError, "cloud said no"},
		{"panics", state.TaskError, "task handler panicked: boom"},
		{"frobnicate", state.TaskError, `no handler for task type "frobnicate" on this director (it runs: fails, ok, panics)`},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			got := waitFor(t, s, enqueue(t, s, tt.typ, "web"), tt.state)
			if got.Result != tt.result {
				t.Errorf("result %q, want %q", got.Result, tt.result)
			}
		})
	}
}

func TestPoolCancelAndShutdown(t *testing.T) {
	s := newStore(t)
	started := make(chan int64, 4)
	stop := start(t, worker.New(s, map[string]worker.Handler{"block": blocking(started)}, fast, nil))

	id := enqueue(t, s, "block", "a")
	<-started
	if _, err := s.RequestCancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, id, state.TaskCancelled)

	// At shutdown a task still running after the grace period goes back to the queue.
	id = enqueue(t, s, "block", "a")
	<-started
	stop()
	task := waitFor(t, s, id, state.TaskQueued)
	if task.Owner != "" {
		t.Errorf("released task still owned by %q", task.Owner)
	}
	if locks, _ := s.Locks(context.Background()); len(locks) != 0 {
		t.Errorf("locks left after release: %+v", locks)
	}
}

// frozen wraps the real store and drops heartbeats while frozen is set, as a worker
// paused or cut off from the database does.
type frozen struct {
	*postgres.Store
	on atomic.Bool
}

func (f *frozen) Heartbeat(ctx context.Context, id int64, owner string) (bool, error) {
	if f.on.Load() {
		return false, errors.New("connection refused")
	}
	return f.Store.Heartbeat(ctx, id, owner)
}

func TestSilentWorkerLosesTaskToAnother(t *testing.T) {
	s := newStore(t)
	stuck := &frozen{Store: s}
	stuck.on.Store(true)
	startedA := make(chan int64, 1)
	var lostErr atomic.Value
	a := func(ctx context.Context, task state.Task, _ func(state.TaskEvent) error) (string, error) {
		startedA <- task.ID
		<-ctx.Done()
		lostErr.Store(fmt.Sprint(context.Cause(ctx)))
		return "a's result", nil
	}
	cfgA := fast
	cfgA.Owner = "a"
	cfgA.Workers = 1 // busy with the stuck task, so only b can take it over
	start(t, worker.New(stuck, map[string]worker.Handler{"deploy": a}, cfgA, nil))
	id := enqueue(t, s, "deploy", "web")
	<-startedA

	// B's reaper requeues the task once A's heartbeat is older than the TTL; B runs it.
	cfgB := fast
	cfgB.Owner = "b"
	start(t, worker.New(s, map[string]worker.Handler{"deploy": func(context.Context, state.Task, func(state.TaskEvent) error) (string, error) {
		return "b's result", nil
	}}, cfgB, nil))
	done := waitFor(t, s, id, state.TaskDone)
	if done.Result != "b's result" || done.Attempts != 2 || !strings.HasPrefix(done.Owner, "b/") {
		t.Errorf("taken-over task = result %q attempts %d owner %q", done.Result, done.Attempts, done.Owner)
	}
	// A comes back, learns at its next heartbeat that it lost the task, and stops.
	stuck.on.Store(false)
	deadline := time.Now().Add(30 * time.Second)
	for lostErr.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatal("worker a never noticed it lost its task")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := lostErr.Load().(string); !strings.Contains(got, "taken over") {
		t.Errorf("a's task ctx ended with %q", got)
	}
	if got, _ := s.Task(context.Background(), id); got.Result != "b's result" {
		t.Errorf("a's late result overwrote b's: %q", got.Result)
	}
}

func TestPoolTimesOutLongTasks(t *testing.T) {
	s := newStore(t)
	started := make(chan int64, 1)
	cfg := fast
	cfg.Timeout = 200 * time.Millisecond
	start(t, worker.New(s, map[string]worker.Handler{"block": blocking(started)}, cfg, nil))
	got := waitFor(t, s, enqueue(t, s, "block", "a"), state.TaskTimeout)
	if got.Result != "timed out after 200ms" {
		t.Errorf("result %q", got.Result)
	}
}

// With polling all but off, a queued task still starts at once: the queue's notification
// wakes an idle worker.
func TestPoolWokenByNotification(t *testing.T) {
	s := newStore(t)
	cfg := fast
	cfg.Poll = time.Hour
	ran := make(chan int64, 2)
	start(t, worker.New(s, map[string]worker.Handler{"ok": func(_ context.Context, task state.Task, _ func(state.TaskEvent) error) (string, error) {
		ran <- task.ID
		return "", nil
	}}, cfg, nil))
	// The pool's first claim finds nothing; later tasks arrive only by notification.
	time.Sleep(200 * time.Millisecond)
	for range 2 {
		id := enqueue(t, s, "ok", "web")
		select {
		case got := <-ran:
			if got != id {
				t.Fatalf("ran task %d, want %d", got, id)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("idle worker not woken by the new task's notification")
		}
	}
}
