package health

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/bosun-gitops/bosun/state/postgres/pgtest"
	"github.com/nats-io/nats.go"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func testLog() *slog.Logger {
	if os.Getenv("BOSUN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// fakeClock is the monitor's clock in tests: time moves only when the test says.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recorder is a plugin that keeps every alert delivered to it.
type recorder struct {
	mu     sync.Mutex
	alerts []Alert
}

func (*recorder) Name() string { return "recorder" }
func (r *recorder) Deliver(_ context.Context, a Alert) error {
	r.mu.Lock()
	r.alerts = append(r.alerts, a)
	r.mu.Unlock()
	return nil
}
func (r *recorder) titles() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ts []string
	for _, a := range r.alerts {
		ts = append(ts, a.Title)
	}
	return ts
}

// env is a director's worth of real parts: Postgres, an embedded NATS server, a monitor.
type env struct {
	t     *testing.T
	ctx   context.Context
	url   string
	store *postgres.Store
	nats  *bus.Server
	clock *fakeClock
	rec   *recorder
	m     *Monitor
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	ctx := testCtx(t)
	url := pgtest.NewDatabase(t)
	store, err := postgres.Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	srv, err := bus.Start(ctx, bus.Config{Listen: "127.0.0.1:0", Secret: []byte("0123456789abcdef0123456789")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	e := &env{t: t, ctx: ctx, url: url, store: store, nats: srv, clock: newClock(), rec: &recorder{}}
	if cfg.Now == nil {
		cfg.Now = e.clock.Now
	}
	if cfg.Plugins == nil {
		cfg.Plugins = []Plugin{e.rec, LogPlugin{Log: testLog()}}
	}
	e.m, err = New(cfg, store, store, testLog())
	if err != nil {
		t.Fatal(err)
	}
	nc := e.connect(srv.MonitorURL())
	unsub, err := e.m.Subscribe(bus.Conn{NC: nc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unsub)
	return e
}

func (e *env) connect(url string) *nats.Conn {
	e.t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(10*time.Second))
	if err != nil {
		e.t.Fatalf("connect to NATS: %v", err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

// deploy records a deployment whose instances are named by group; each gets a VM and
// an agent "<deployment>-<group>-<index>".
func (e *env) deploy(name string, groups map[string]int, disks ...string) map[string]state.Instance {
	e.t.Helper()
	if err := e.store.PutDeployment(e.ctx, state.Deployment{Name: name}); err != nil {
		e.t.Fatal(err)
	}
	withDisk := map[string]bool{}
	for _, g := range disks {
		withDisk[g] = true
	}
	out := map[string]state.Instance{}
	for g, n := range groups {
		for i := range n {
			agent := name + "-" + g + "-" + string(rune('0'+i))
			inst := state.Instance{Deployment: name, Group: g, Index: i, VMCID: "vm-" + agent, AgentID: agent}
			if withDisk[g] {
				inst.DiskCID = "disk-" + agent
			}
			got, err := e.store.PutInstance(e.ctx, inst)
			if err != nil {
				e.t.Fatal(err)
			}
			out[agent] = got
		}
	}
	return out
}

// agent is a simulated agent on NATS with its own credentials.
type agent struct {
	id string
	nc *nats.Conn
}

func (e *env) agent(id string) *agent { return &agent{id: id, nc: e.connect(e.nats.AgentURL(id))} }

func (a *agent) heartbeat(t *testing.T, inst state.Instance, jobState string) {
	t.Helper()
	hb := protocol.Heartbeat{Deployment: inst.Deployment, JobState: jobState, NodeID: inst.ID, NumberOfProcesses: 1}
	if inst.Group != "" {
		hb.Job, hb.Index = &inst.Group, &inst.Index
	}
	b, _ := json.Marshal(hb)
	a.publish(t, protocol.HeartbeatSubject(a.id), b)
}

func (a *agent) publish(t *testing.T, subject string, data []byte) {
	t.Helper()
	if err := a.nc.Publish(subject, data); err != nil {
		t.Fatal(err)
	}
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds; the machine may be loaded, so it waits long.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// heartbeatSeen sends a heartbeat and waits until the monitor recorded it at the fake
// clock's current time.
func (e *env) heartbeatSeen(a *agent, inst state.Instance, jobState string) {
	e.t.Helper()
	before := e.m.Stats().Heartbeats
	a.heartbeat(e.t, inst, jobState)
	waitFor(e.t, "heartbeat of "+a.id, func() bool {
		return e.m.Stats().Heartbeats > before && e.m.LastHeartbeat(a.id).Equal(e.clock.Now())
	})
}

func (e *env) analyze() Report {
	e.t.Helper()
	rep, err := e.m.Analyze(e.ctx)
	if err != nil {
		e.t.Fatalf("analyze: %v", err)
	}
	return rep
}

// flush waits for queued alerts and returns everything the recorder got.
func (e *env) flush() []Alert {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	e.m.Close(ctx)
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	return append([]Alert(nil), e.rec.alerts...)
}

func (e *env) tasks(deployment string) []state.Task {
	e.t.Helper()
	ts, err := e.store.Tasks(e.ctx, postgres.TaskFilter{Deployment: deployment})
	if err != nil {
		e.t.Fatal(err)
	}
	return ts
}

func resurrectParams(t *testing.T, task state.Task) state.ResurrectParams {
	t.Helper()
	var p state.ResurrectParams
	if err := json.Unmarshal(task.Params, &p); err != nil {
		t.Fatalf("task %d params: %v", task.ID, err)
	}
	return p
}
