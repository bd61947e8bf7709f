package health

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/state"
	"github.com/nats-io/nats.go"
)

// memInventory is an in-memory Inventory and Queue for benchmarks: the figures are the
// monitor's, not Postgres's.
type memInventory struct {
	mu    sync.Mutex
	deps  []state.Deployment
	insts map[string][]state.Instance
	tasks []state.Task
}

func newMemInventory(deployments, perDeployment int) *memInventory {
	inv := &memInventory{insts: map[string][]state.Instance{}}
	for d := range deployments {
		name := fmt.Sprintf("dep-%03d", d)
		inv.deps = append(inv.deps, state.Deployment{Name: name})
		for i := range perDeployment {
			id := fmt.Sprintf("%08d-0000-4000-8000-%012d", d, i)
			inv.insts[name] = append(inv.insts[name], state.Instance{
				ID: id, Deployment: name, Group: "web", Index: i, State: state.InstanceStarted,
				VMCID: "vm-" + id, AgentID: "agent-" + id,
			})
		}
	}
	return inv
}

func (m *memInventory) Deployments(context.Context) ([]state.Deployment, error) { return m.deps, nil }
func (m *memInventory) Instances(_ context.Context, d string) ([]state.Instance, error) {
	return m.insts[d], nil
}
func (m *memInventory) Locks(context.Context) ([]state.Lock, error) { return nil, nil }
func (m *memInventory) Enqueue(_ context.Context, t state.Task) (state.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t.ID = int64(len(m.tasks) + 1)
	m.tasks = append(m.tasks, t)
	return t, nil
}
func (m *memInventory) UnfinishedTasks(context.Context, string, string) ([]state.Task, error) {
	return nil, nil
}

func (m *memInventory) all() []state.Instance {
	var out []state.Instance
	for _, d := range m.deps {
		out = append(out, m.insts[d.Name]...)
	}
	return out
}

// realisticHeartbeat is what a stock agent sends: vitals included (~600 bytes).
func realisticHeartbeat(inst state.Instance) []byte {
	hb := protocol.Heartbeat{
		Deployment: inst.Deployment, Job: &inst.Group, Index: &inst.Index, JobState: protocol.JobRunning,
		NodeID: inst.ID, NumberOfProcesses: 3,
		Vitals: protocol.Vitals{
			CPU: protocol.CPUVitals{Sys: "0.4", User: "1.2", Wait: "0.0"}, Load: []string{"0.10", "0.05", "0.01"},
			Mem: protocol.MemVitals{KB: "512000", Percent: "25"}, Swap: protocol.MemVitals{KB: "0", Percent: "0"},
			Uptime: protocol.Uptime{Secs: 86400},
			Disk: map[string]protocol.DiskVital{
				"system": {Percent: "40", InodePercent: "12"}, "ephemeral": {Percent: "3", InodePercent: "1"},
				"persistent": {Percent: "61", InodePercent: "4"},
			},
		},
	}
	b, _ := json.Marshal(hb)
	return b
}

func benchMonitor(b *testing.B, inv *memInventory) *Monitor {
	b.Helper()
	m, err := New(Config{}, inv, inv, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.Analyze(context.Background()); err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkHandleHeartbeat is the hot path, in process: 10,000 known agents heartbeat in
// turn. ns/op × 1000 is the CPU per 1,000 heartbeats.
func BenchmarkHandleHeartbeat(b *testing.B) {
	inv := newMemInventory(100, 100)
	m := benchMonitor(b, inv)
	insts := inv.all()
	subjects := make([]string, len(insts))
	payloads := make([][]byte, len(insts))
	for i, inst := range insts {
		subjects[i] = protocol.HeartbeatSubject(inst.AgentID)
		payloads[i] = realisticHeartbeat(inst)
	}
	b.SetBytes(int64(len(payloads[0])))
	b.ReportAllocs()
	cpu := startCPU()
	i := 0
	for b.Loop() {
		m.HandleHeartbeat(subjects[i], payloads[i])
		i++
		if i == len(subjects) {
			i = 0
		}
	}
	cpu.report(b, b.N)
	if m.Stats().Dropped != 0 {
		b.Fatalf("dropped %d", m.Stats().Dropped)
	}
}

// BenchmarkAnalyze10k is one analysis of 10,000 healthy agents in 100 deployments
// (inventory from memory: Postgres's share is measured by the store's own benchmarks).
func BenchmarkAnalyze10k(b *testing.B) {
	inv := newMemInventory(100, 100)
	m := benchMonitor(b, inv)
	for _, inst := range inv.all() {
		m.HandleHeartbeat(protocol.HeartbeatSubject(inst.AgentID), realisticHeartbeat(inst))
	}
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		rep, err := m.Analyze(context.Background())
		if err != nil || len(rep.Unresponsive) > 0 {
			b.Fatalf("analyze: %+v, %v", rep, err)
		}
	}
	b.ReportMetric(float64((cpuNow()-cpu.start).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// BenchmarkMemoryPerAgent reports the heap the monitor holds per agent at 10,000 agents:
// heartbeat table and inventory together, after each agent heartbeated once.
func BenchmarkMemoryPerAgent(b *testing.B) {
	const n = 10000
	inv := newMemInventory(100, n/100)
	insts := inv.all()
	payloads := make([][]byte, n)
	subjects := make([]string, n)
	for i, inst := range insts {
		payloads[i] = realisticHeartbeat(inst)
		subjects[i] = protocol.HeartbeatSubject(inst.AgentID)
	}
	var perAgent, perAgentHB float64
	for b.Loop() {
		var before, mid, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m, err := New(Config{}, inv, inv, nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := range subjects {
			m.HandleHeartbeat(subjects[i], payloads[i])
		}
		runtime.GC()
		runtime.ReadMemStats(&mid)
		if _, err := m.Analyze(context.Background()); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perAgentHB = float64(mid.HeapAlloc-before.HeapAlloc) / n
		perAgent = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(m)
	}
	b.ReportMetric(perAgentHB, "heartbeat-B/agent")
	b.ReportMetric(perAgent, "total-B/agent")
}

// BenchmarkHeartbeatsOverNATS publishes realistic heartbeats for 10,000 agents through
// the embedded NATS server to a monitor subscribed as the health-monitor user, in one
// process: the CPU figure includes the server, the publishers and the monitor.
func BenchmarkHeartbeatsOverNATS(b *testing.B) {
	ctx := context.Background()
	srv, err := bus.Start(ctx, bus.Config{Listen: "127.0.0.1:0", Secret: []byte("0123456789abcdef0123456789")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	inv := newMemInventory(100, 100)
	m := benchMonitor(b, inv)
	sub, err := nats.Connect(srv.MonitorURL())
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	unsub, err := m.Subscribe(bus.Conn{NC: sub})
	if err != nil {
		b.Fatal(err)
	}
	defer unsub()
	// Several publisher connections stand in for the agents (10,000 connections of
	// their own would measure the machine's socket limits, not the monitor).
	const publishers = 4
	pubs := make([]*nats.Conn, publishers)
	for i := range pubs {
		if pubs[i], err = nats.Connect(srv.DirectorURL()); err != nil {
			b.Fatal(err)
		}
		defer pubs[i].Close()
	}
	insts := inv.all()
	payloads := make([][]byte, len(insts))
	subjects := make([]string, len(insts))
	for i, inst := range insts {
		payloads[i] = realisticHeartbeat(inst)
		subjects[i] = protocol.HeartbeatSubject(inst.AgentID)
	}
	start := m.Stats().Heartbeats
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	t0 := time.Now()
	total := 0
	for b.Loop() {
		var wg sync.WaitGroup
		for p := range publishers {
			wg.Go(func() {
				for i := p; i < len(subjects); i += publishers {
					if err := pubs[p].Publish(subjects[i], payloads[i]); err != nil {
						b.Error(err)
						return
					}
				}
				_ = pubs[p].Flush()
			})
		}
		wg.Wait()
		total += len(subjects)
		want := start + int64(total)
		deadline := time.Now().Add(time.Minute)
		for m.Stats().Heartbeats < want {
			if time.Now().After(deadline) {
				b.Fatalf("monitor fell behind: %d of %d heartbeats", m.Stats().Heartbeats-start, total)
			}
			time.Sleep(time.Millisecond)
		}
	}
	wall := time.Since(t0)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()) + time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-ms/1k-hb")
	b.ReportMetric(float64(total)/wall.Seconds(), "hb/s")
	if d := m.Stats().Dropped; d != 0 {
		b.Fatalf("dropped %d", d)
	}
}

// cpuClock measures the process's CPU time, which a loaded machine does not inflate the
// way it inflates wall time.
type cpuClock struct{ start time.Duration }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{cpuNow()} }

// report adds CPU per 1,000 operations.
func (c cpuClock) report(b *testing.B, n int) {
	b.ReportMetric(float64((cpuNow()-c.start).Microseconds())/float64(n), "cpu-ms/1k")
}
