package health

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/jackc/pgx/v5"
)

// director is one director's monitor with its own store (its own connections).
type director struct {
	m      *Monitor
	cancel context.CancelFunc
	done   chan error

	mu    sync.Mutex
	lease *postgres.AdvisoryLock
	// dead makes the director stop competing, as a killed process would.
	dead bool
}

func (d *director) pid() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lease == nil {
		return 0
	}
	return d.lease.PID()
}

func startDirector(t *testing.T, e *env) *director {
	t.Helper()
	store, err := postgres.Open(e.ctx, e.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	m, err := New(Config{AnalyzeInterval: 50 * time.Millisecond, LeaseCheck: 50 * time.Millisecond, LeaseRetry: 50 * time.Millisecond}, store, store, testLog())
	if err != nil {
		t.Fatal(err)
	}
	d := &director{m: m, done: make(chan error, 1)}
	el := ElectorFunc(func(ctx context.Context) (Lease, error) {
		d.mu.Lock()
		dead := d.dead
		d.mu.Unlock()
		if dead {
			return nil, nil
		}
		l, err := store.TryAdvisoryLock(ctx, LockKey)
		if l == nil {
			return nil, err
		}
		d.mu.Lock()
		d.lease = l
		d.mu.Unlock()
		return l, nil
	})
	ctx, cancel := context.WithCancel(e.ctx)
	d.cancel = cancel
	nc := e.connect(e.nats.MonitorURL())
	go func() { d.done <- m.Run(ctx, bus.Conn{NC: nc}, el) }()
	t.Cleanup(func() { d.stop(t) })
	return d
}

func (d *director) stop(t *testing.T) {
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("monitor run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Error("monitor did not stop")
	}
}

func TestFailoverBetweenTwoMonitors(t *testing.T) {
	e := newEnv(t, Config{})
	e.deploy("web", map[string]int{"web": 1})
	a, b := startDirector(t, e), startDirector(t, e)
	onlyOne := func() (*director, *director, bool) {
		switch {
		case a.m.Active() && !b.m.Active():
			return a, b, true
		case b.m.Active() && !a.m.Active():
			return b, a, true
		}
		return nil, nil, false
	}
	waitFor(t, "one active monitor", func() bool { _, _, ok := onlyOne(); return ok })
	active, standby, _ := onlyOne()
	// Both track heartbeats; only the active one analyses.
	waitFor(t, "the active monitor to analyse", func() bool { return active.m.Stats().Expected == 1 })
	if standby.m.Stats().Expected != 0 {
		t.Errorf("the standby analysed")
	}

	// The active director's database session dies (as when its process is killed): the
	// standby takes over, and the old one steps down. The e2e test kills a real director.
	active.mu.Lock()
	active.dead = true
	active.mu.Unlock()
	admin, err := pgx.Connect(e.ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(e.ctx)
	if _, err := admin.Exec(e.ctx, "SELECT pg_terminate_backend($1, 30000)", int32(active.pid())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the standby to take over", func() bool {
		nowActive, _, ok := onlyOne()
		return ok && nowActive == standby
	})

	// A clean stop hands the role back.
	active.mu.Lock()
	active.dead = false
	active.mu.Unlock()
	standby.stop(t)
	waitFor(t, "the first monitor to take over again", func() bool { return active.m.Active() })
}
