// Package worker owns running the task queue's tasks: claim, heartbeat, dispatch by task
// type to a handler, then finish, or release the task when the worker stops first. A
// task whose worker stops heartbeating is taken back by the reaper and run elsewhere.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/state"
)

// Queue is the part of the task queue workers use; state/postgres.Store satisfies it.
type Queue interface {
	Claim(ctx context.Context, owner string, types []string) (*state.Task, error)
	Heartbeat(ctx context.Context, id int64, owner string) (cancel bool, err error)
	Finish(ctx context.Context, id int64, owner, final, result string) error
	Release(ctx context.Context, id int64, owner string) error
	RequeueStale(ctx context.Context, ttl time.Duration) ([]int64, error)
	AddTaskEvent(ctx context.Context, e state.TaskEvent) (int64, error)
	// ListenTasks calls wake when a task may have become claimable, until ctx ends.
	ListenTasks(ctx context.Context, wake func()) error
}

// Handler does the work of one task and returns its result line. Its ctx ends when the
// task is cancelled, taken over, or the worker's shutdown grace runs out; it should then
// return promptly. Emit appends to the task's event log.
type Handler func(ctx context.Context, task state.Task, emit func(state.TaskEvent) error) (result string, err error)

// Config tunes a Pool; zero values take the defaults.
type Config struct {
	// Owner prefixes the names of this pool's workers, visible in task and lock listings.
	Owner string
	// Workers is how many tasks run at once (default 2).
	Workers int
	// Heartbeat is how often a running task's heartbeat is written (default 5s).
	Heartbeat time.Duration
	// TTL is how long a silent worker keeps its task before the reaper requeues it
	// (default 6 heartbeats).
	TTL time.Duration
	// Poll is how often an idle worker looks for a task when no notification woke it
	// (default 1s).
	Poll time.Duration
	// Grace is how long running tasks may continue after shutdown begins before they are
	// interrupted and released (default 10s).
	Grace time.Duration
	// Timeout ends a task that runs longer, in state timeout (0: no limit).
	Timeout time.Duration
}

// Pool runs tasks with its handlers. Run it as a director role.
type Pool struct {
	q        Queue
	handlers map[string]Handler
	cfg      Config
	log      *slog.Logger
}

// New returns a pool dispatching to handlers by task type.
func New(q Queue, handlers map[string]Handler, cfg Config, log *slog.Logger) *Pool {
	if cfg.Owner == "" {
		cfg.Owner = "worker"
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 6 * cfg.Heartbeat
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pool{q: q, handlers: maps.Clone(handlers), cfg: cfg, log: log}
}

// Name names the role.
func (p *Pool) Name() string { return "workers" }

// Run runs the workers and the reaper until ctx ends, then waits for running tasks to
// finish or be released.
func (p *Pool) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wakes := make([]chan struct{}, p.cfg.Workers)
	for i := range wakes {
		wakes[i] = make(chan struct{}, 1)
		owner := fmt.Sprintf("%s/%d", p.cfg.Owner, i)
		wg.Go(func() { p.work(ctx, owner, wakes[i]) })
	}
	wg.Go(func() { p.reap(ctx) })
	wg.Go(func() { p.listen(ctx, wakes) })
	wg.Wait()
	return nil
}

// listen wakes every idle worker when the queue says a task may be claimable, and keeps
// listening across database hiccups; polling covers the gaps.
func (p *Pool) listen(ctx context.Context, wakes []chan struct{}) {
	wake := func() {
		for _, w := range wakes {
			select {
			case w <- struct{}{}:
			default: // already woken
			}
		}
	}
	for ctx.Err() == nil {
		if err := p.q.ListenTasks(ctx, wake); err != nil {
			p.log.Warn("task notifications lost; polling every "+p.cfg.Poll.String()+" until they are back", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(p.cfg.Poll):
		}
	}
}

func (p *Pool) work(ctx context.Context, owner string, wake <-chan struct{}) {
	log := p.log.With("worker", owner)
	tick := time.NewTicker(p.cfg.Poll)
	defer tick.Stop()
	for {
		task, err := p.q.Claim(ctx, owner, nil)
		if err != nil && ctx.Err() == nil {
			log.Error("claim task", "err", err)
		}
		if task != nil {
			p.run(ctx, owner, *task, log.With("task", task.ID, "type", task.Type, "deployment", task.Deployment))
			continue // there may be more waiting
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-wake:
		}
	}
}

var (
	errCancelled = errors.New("task cancelled")
	errLost      = errors.New("task taken over by another worker after a missed heartbeat")
	errShutdown  = errors.New("director shutting down")
	errTimeout   = errors.New("task timed out")
)

// run runs one claimed task to its end. Its bookkeeping uses a ctx that outlives
// shutdown, so a stopping worker can still finish or release what it holds.
func (p *Pool) run(ctx context.Context, owner string, task state.Task, log *slog.Logger) {
	bg := context.WithoutCancel(ctx)
	taskCtx, stop := context.WithCancelCause(bg)
	defer stop(nil)
	if p.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		taskCtx, cancel = context.WithTimeoutCause(taskCtx, p.cfg.Timeout, errTimeout)
		defer cancel()
	}

	// Shutdown lets the task run for the grace period, then interrupts it.
	go func() {
		select {
		case <-taskCtx.Done():
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(p.cfg.Grace)
		defer t.Stop()
		select {
		case <-taskCtx.Done():
		case <-t.C:
			stop(errShutdown)
		}
	}()
	go func() {
		tick := time.NewTicker(p.cfg.Heartbeat)
		defer tick.Stop()
		for {
			select {
			case <-taskCtx.Done():
				return
			case <-tick.C:
			}
			cancel, err := p.q.Heartbeat(taskCtx, task.ID, owner)
			switch {
			case errors.Is(err, context.Canceled):
				return
			case errors.Is(err, state.ErrTaskLost):
				stop(errLost)
				return
			case err != nil:
				// A database blip: the next beat may succeed before the TTL runs out.
				log.Warn("heartbeat", "err", err)
			case cancel:
				stop(errCancelled)
			}
		}
	}()

	log.Info("task started", "attempt", task.Attempts)
	handler, ok := p.handlers[task.Type]
	var result string
	var err error
	if !ok {
		err = fmt.Errorf("no handler for task type %q on this director (it runs: %s)", task.Type, strings.Join(slices.Sorted(maps.Keys(p.handlers)), ", "))
	} else {
		emit := func(e state.TaskEvent) error {
			e.TaskID = task.ID
			_, err := p.q.AddTaskEvent(taskCtx, e)
			return err
		}
		result, err = safeCall(taskCtx, handler, task, emit)
	}
	cause := context.Cause(taskCtx)
	stop(nil)

	switch {
	case errors.Is(cause, errLost):
		log.Warn("task lost: another worker took it over after a missed heartbeat; its result is discarded", "err", err)
		return
	case errors.Is(cause, errShutdown):
		if rerr := p.q.Release(bg, task.ID, owner); rerr != nil {
			log.Error("release task at shutdown", "err", rerr)
			return
		}
		log.Info("task released at shutdown for another worker to resume")
		return
	case errors.Is(cause, errCancelled):
		p.finish(bg, owner, task, state.TaskCancelled, "cancelled", log)
	case errors.Is(cause, errTimeout):
		p.finish(bg, owner, task, state.TaskTimeout, fmt.Sprintf("timed out after %s", p.cfg.Timeout), log)
	case err != nil:
		p.finish(bg, owner, task, state.TaskError, err.Error(), log)
	default:
		p.finish(bg, owner, task, state.TaskDone, result, log)
	}
}

func (p *Pool) finish(ctx context.Context, owner string, task state.Task, final, result string, log *slog.Logger) {
	if err := p.q.Finish(ctx, task.ID, owner, final, result); err != nil {
		log.Error("finish task", "state", final, "err", err)
		return
	}
	if final == state.TaskDone {
		log.Info("task done", "result", result)
	} else {
		log.Warn("task ended", "state", final, "result", result)
	}
}

// safeCall turns a handler's panic into the task's error: one bad task must not take the
// director down with every other task it runs.
func safeCall(ctx context.Context, h Handler, t state.Task, emit func(state.TaskEvent) error) (result string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("task handler panicked: %v", r)
		}
	}()
	return h(ctx, t, emit)
}

// reap takes back the tasks of workers (here or on other directors) that went silent.
func (p *Pool) reap(ctx context.Context) {
	tick := time.NewTicker(p.cfg.TTL / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ids, err := p.q.RequeueStale(ctx, p.cfg.TTL)
		if err != nil && ctx.Err() == nil {
			p.log.Error("requeue stale tasks", "err", err)
		}
		if len(ids) > 0 {
			p.log.Warn("requeued tasks whose worker stopped heartbeating", "tasks", ids, "ttl", p.cfg.TTL)
		}
	}
}
