package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/state"
)

// Inventory is what the monitor reads of the director's state: which deployments and
// instances exist (and so which agents should be heartbeating), and which deployments a
// task holds. state/postgres.Store satisfies it.
type Inventory interface {
	Deployments(ctx context.Context) ([]state.Deployment, error)
	Instances(ctx context.Context, deployment string) ([]state.Instance, error)
	Locks(ctx context.Context) ([]state.Lock, error)
}

// Queue is where resurrections go: the director's task queue, whose workers converge
// them like any deploy (intents, deployment lock, status commit).
type Queue interface {
	Enqueue(ctx context.Context, t state.Task) (state.Task, error)
	// UnfinishedTasks lists the deployment's tasks of type typ that are queued or
	// running (processing or cancelling).
	UnfinishedTasks(ctx context.Context, deployment, typ string) ([]state.Task, error)
}

// Meltdown holds BOSH's meltdown thresholds (bosh-spec §9.4): when, within Window, at
// least MinDown instances of a deployment and at least Percent of them went down, the
// cause is likely not the VMs (an AZ, the network, the cloud) and recreating them would
// only make it worse: the resurrector alerts once and does nothing.
type Meltdown struct {
	MinDown int           // default 5
	Percent float64       // 0..1, default 0.2
	Window  time.Duration // default 10 min
}

// Config tunes a Monitor; zero values take the defaults.
type Config struct {
	// AgentTimeout is how long an agent may stay silent before it is unresponsive
	// (default 60 s; agents heartbeat every 30 s).
	AgentTimeout time.Duration
	// AnalyzeInterval is how often the active monitor reloads the inventory and looks
	// for unresponsive, failing and rogue agents (default 10 s).
	AnalyzeInterval time.Duration
	// RogueAfter is how long an agent no instance claims may heartbeat before it is
	// reported (default 120 s: a new VM heartbeats before its instance names it).
	RogueAfter time.Duration
	// DedupWindow is how long a repeated alert for the same condition stays suppressed
	// while the condition lasts (default 1 h).
	DedupWindow time.Duration
	Meltdown    Meltdown
	// DefaultRules apply until SetRules gives others.
	DefaultRules Rules
	// MaxMessageBytes bounds a heartbeat or alert; larger ones are dropped (default 64 KiB).
	MaxMessageBytes int
	// LeaseCheck is how often the active monitor confirms it still holds its lock, and
	// LeaseRetry how often a standby tries to take it (defaults 5 s).
	LeaseCheck, LeaseRetry time.Duration
	// Plugins receive alerts. Nil means log only.
	Plugins []Plugin
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
}

func (c *Config) defaults(log *slog.Logger) error {
	if c.AgentTimeout == 0 {
		c.AgentTimeout = 60 * time.Second
	}
	if c.AnalyzeInterval == 0 {
		c.AnalyzeInterval = 10 * time.Second
	}
	if c.RogueAfter == 0 {
		c.RogueAfter = 120 * time.Second
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = time.Hour
	}
	if c.Meltdown.MinDown == 0 {
		c.Meltdown.MinDown = 5
	}
	if c.Meltdown.Percent == 0 {
		c.Meltdown.Percent = 0.2
	}
	if c.Meltdown.Window == 0 {
		c.Meltdown.Window = 10 * time.Minute
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 64 << 10
	}
	if c.LeaseCheck == 0 {
		c.LeaseCheck = 5 * time.Second
	}
	if c.LeaseRetry == 0 {
		c.LeaseRetry = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Plugins == nil {
		c.Plugins = []Plugin{LogPlugin{Log: log}}
	}
	switch {
	case c.AgentTimeout < 0, c.AnalyzeInterval < 0, c.RogueAfter < 0, c.DedupWindow < 0, c.Meltdown.Window < 0, c.LeaseCheck < 0, c.LeaseRetry < 0:
		return errors.New("health monitor: intervals must not be negative")
	case c.Meltdown.MinDown < 1:
		return fmt.Errorf("health monitor: meltdown minimum down %d: want at least 1", c.Meltdown.MinDown)
	case c.Meltdown.Percent <= 0 || c.Meltdown.Percent > 1:
		return fmt.Errorf("health monitor: meltdown percent %g: want more than 0 and at most 1 (a fraction)", c.Meltdown.Percent)
	}
	return c.DefaultRules.Validate("health monitor default rules")
}

// Monitor tracks every agent's heartbeats, raises alerts for unresponsive, failing and
// rogue agents, and resurrects unresponsive instances through the task queue, guarded by
// meltdown protection. Heartbeats are tracked by every director's monitor; only the one
// holding the lock (Run) analyses and acts.
type Monitor struct {
	cfg   Config
	inv   Inventory
	queue Queue
	log   *slog.Logger
	alert *dispatcher

	// tracking since: agents never heard from are measured from here.
	since   atomic.Int64
	leader  atomic.Bool
	invSnap atomic.Pointer[inventory]

	mu     sync.Mutex
	agents map[string]*agentState
	// badLogged remembers who sent a bad message this interval, so each is logged once.
	badLogged map[string]struct{}

	// analysis state, owned by Analyze (analyzeMu)
	analyzeMu  sync.Mutex
	rules      atomic.Pointer[ruleSet]
	down       map[string]map[string]time.Time // deployment → instance id → last seen down
	unlockedAt map[string]time.Time
	locked     map[string]bool
	rogue      map[string]bool // agent ids reported rogue
	// retry spaces out repeated resurrections of an instance that stays down (a failing
	// recreate must not become a loop): instance id → attempts and when the next may go.
	retry map[string]*retryState

	heartbeats, dropped, agentAlerts, enqueued, meltdowns atomic.Int64
}

type retryState struct {
	attempts int
	next     time.Time
}

// agentState is all the monitor keeps per agent, kept small: 10,000 agents fit easily.
type agentState struct {
	last     int64 // unix nanos of the last good heartbeat
	first    int64 // unix nanos of the first heartbeat heard
	jobState jobState
	// unapplied: the agent has no instance spec yet (a new or compilation VM).
	unapplied bool
}

type jobState uint8

const (
	jobUnknown jobState = iota
	jobRunning
	jobFailing
	jobStarting
	jobStopped
)

func parseJobState(s string) jobState {
	switch s {
	case protocol.JobRunning:
		return jobRunning
	case protocol.JobFailing:
		return jobFailing
	case protocol.JobStarting:
		return jobStarting
	case protocol.JobStopped:
		return jobStopped
	}
	return jobUnknown
}

// inventory is one load of what the director expects; replaced whole, read lock-free by
// the heartbeat handler.
type inventory struct {
	byAgent    map[string]*expected
	byInstance map[string]*expected
	// deployments lists each deployment's instances that should have a VM.
	deployments map[string][]*expected
	// locked deployments have a task changing their VMs: a new agent may speak for an
	// instance before this snapshot knows it.
	locked   map[string]bool
	loadedAt time.Time
}

type expected struct {
	inst state.Instance
	// knownSince is when this monitor first saw the instance with this agent: a new VM
	// gets a full agent timeout to start heartbeating.
	knownSince time.Time
}

func (e *expected) name() string { return e.inst.Group + "/" + e.inst.ID }

// New returns a monitor; it does nothing until Subscribe or Run.
func New(cfg Config, inv Inventory, q Queue, log *slog.Logger) (*Monitor, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.defaults(log); err != nil {
		return nil, err
	}
	m := &Monitor{
		cfg: cfg, inv: inv, queue: q, log: log,
		agents:     map[string]*agentState{},
		badLogged:  map[string]struct{}{},
		down:       map[string]map[string]time.Time{},
		unlockedAt: map[string]time.Time{},
		locked:     map[string]bool{},
		rogue:      map[string]bool{},
		retry:      map[string]*retryState{},
	}
	m.alert = newDispatcher(cfg.Plugins, cfg.DedupWindow, cfg.Now, log)
	m.rules.Store(&ruleSet{def: cfg.DefaultRules})
	m.since.Store(cfg.Now().UnixNano())
	m.invSnap.Store(&inventory{byAgent: map[string]*expected{}, byInstance: map[string]*expected{}, deployments: map[string][]*expected{}})
	return m, nil
}

// SetRules replaces the resurrection rules (from bosun.yml): byDeployment per
// deployment, def for every deployment it does not name. Safe to call at any time; the
// next analysis uses them.
func (m *Monitor) SetRules(def Rules, byDeployment map[string]Rules) error {
	if err := def.Validate("default resurrection rules"); err != nil {
		return err
	}
	rs := &ruleSet{def: def, by: make(map[string]Rules, len(byDeployment))}
	for d, r := range byDeployment {
		if err := r.Validate("resurrection rules of deployment " + d); err != nil {
			return err
		}
		rs.by[d] = r
	}
	m.rules.Store(rs)
	return nil
}

type ruleSet struct {
	def Rules
	by  map[string]Rules
}

// RulesFor returns the rules in force for deployment.
func (m *Monitor) RulesFor(deployment string) Rules {
	rs := m.rules.Load()
	if r, ok := rs.by[deployment]; ok {
		return r
	}
	return rs.def
}

// Subscribe starts tracking heartbeats and alerts on t until the returned func is called.
func (m *Monitor) Subscribe(t protocol.Transport) (func(), error) {
	m.since.Store(m.cfg.Now().UnixNano())
	hb, err := t.Subscribe(protocol.HeartbeatSubject("*"), m.HandleHeartbeat)
	if err != nil {
		return nil, fmt.Errorf("health monitor: %w", err)
	}
	al, err := t.Subscribe(protocol.AlertSubject("*"), m.HandleAlert)
	if err != nil {
		_ = hb()
		return nil, fmt.Errorf("health monitor: %w", err)
	}
	return func() { _ = hb(); _ = al() }, nil
}

var (
	heartbeatPrefix = protocol.HeartbeatSubject("")
	alertPrefix     = protocol.AlertSubject("")
)

// agentOf returns the agent id a subject names, or "" when it names none.
func agentOf(subject, prefix string) string {
	id, ok := strings.CutPrefix(subject, prefix)
	if !ok || id == "" || len(id) > 128 || strings.ContainsAny(id, ".*> ") {
		return ""
	}
	return id
}

// heartbeatWire is the part of a heartbeat the monitor reads; vitals are skipped.
type heartbeatWire struct {
	Deployment string `json:"deployment"`
	JobState   string `json:"job_state"`
	NodeID     string `json:"node_id"`
}

// HandleHeartbeat records one heartbeat message. It is the hot path: one small decode,
// one map update under a mutex. Bad messages are dropped and counted, never acted on.
func (m *Monitor) HandleHeartbeat(subject string, data []byte) {
	id := agentOf(subject, heartbeatPrefix)
	if id == "" {
		m.bad(subject, "", "heartbeat on a subject naming no agent")
		return
	}
	if len(data) > m.cfg.MaxMessageBytes {
		m.bad(id, id, fmt.Sprintf("heartbeat of %d bytes, more than %d", len(data), m.cfg.MaxMessageBytes))
		return
	}
	var hb heartbeatWire
	if err := decodeHeartbeat(data, &hb); err != nil {
		m.bad(id, id, "malformed heartbeat: "+truncate(err.Error(), 200))
		return
	}
	if hb.NodeID != "" {
		// An agent speaking for an instance another agent holds is either confused or
		// lying; either way its word must not keep that instance "healthy".
		inv := m.invSnap.Load()
		if e, ok := inv.byInstance[hb.NodeID]; ok && e.inst.AgentID != "" && e.inst.AgentID != id {
			if inv.locked[e.inst.Deployment] {
				return // most likely the instance's new VM, which the next load will know
			}
			m.bad(id, id, "heartbeat claims instance "+e.name()+", which belongs to another agent")
			return
		}
	}
	now := m.cfg.Now().UnixNano()
	js := parseJobState(hb.JobState)
	m.mu.Lock()
	st := m.agents[id]
	if st == nil {
		// The subject's backing array must not be kept alive by the map key.
		st = &agentState{first: now}
		m.agents[strings.Clone(id)] = st
	}
	st.last, st.jobState, st.unapplied = now, js, hb.NodeID == ""
	m.mu.Unlock()
	m.heartbeats.Add(1)
}

// HandleAlert relays one agent alert (bosh-spec §8.7) to the plugins, when this monitor
// is the active one.
func (m *Monitor) HandleAlert(subject string, data []byte) {
	id := agentOf(subject, alertPrefix)
	if id == "" {
		m.bad(subject, "", "alert on a subject naming no agent")
		return
	}
	if len(data) > m.cfg.MaxMessageBytes {
		m.bad(id, id, fmt.Sprintf("alert of %d bytes, more than %d", len(data), m.cfg.MaxMessageBytes))
		return
	}
	var in protocol.Alert
	if err := json.Unmarshal(data, &in); err != nil {
		m.bad(id, id, "malformed alert: "+truncate(err.Error(), 200))
		return
	}
	m.agentAlerts.Add(1)
	if in.Severity < SeverityAlert || in.Severity > SeverityWarning || !m.leader.Load() {
		return // BOSH's -1 means "ignored"; standbys leave relaying to the active monitor
	}
	a := Alert{
		Severity: in.Severity,
		Category: CategoryAgent,
		Title:    truncate(in.Title, 500),
		Summary:  truncate(in.Summary, 2000),
		AgentID:  id,
		Source:   "agent",
		key:      "agent:" + id + ":" + truncate(in.Title, 500),
	}
	if in.CreatedAt > 0 {
		a.CreatedAt = time.Unix(in.CreatedAt, 0).UTC()
	}
	if e, ok := m.invSnap.Load().byAgent[id]; ok {
		a.Deployment, a.Instance = e.inst.Deployment, e.name()
	}
	m.alert.send(a)
}

// bad counts a dropped message and logs it once per sender per analysis interval.
func (m *Monitor) bad(sender, agent, why string) {
	m.dropped.Add(1)
	m.mu.Lock()
	_, seen := m.badLogged[sender]
	if !seen && len(m.badLogged) < 10000 {
		m.badLogged[strings.Clone(sender)] = struct{}{}
	}
	m.mu.Unlock()
	if !seen {
		m.log.Warn("dropped message from agent", "agent", truncate(agent, 128), "reason", why)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Stats are the monitor's counters.
type Stats struct {
	Active bool `json:"active"`
	// Agents is how many agents have been heard from; Expected how many the inventory names.
	Agents           int   `json:"agents"`
	Expected         int   `json:"expected"`
	Heartbeats       int64 `json:"heartbeats"`
	Dropped          int64 `json:"dropped"`
	AgentAlerts      int64 `json:"agent_alerts"`
	AlertsDelivered  int64 `json:"alerts_delivered"`
	AlertsSuppressed int64 `json:"alerts_suppressed"`
	AlertsFailed     int64 `json:"alerts_failed"`
	Resurrections    int64 `json:"resurrections"`
	Meltdowns        int64 `json:"meltdowns"`
}

// Stats returns the counters.
func (m *Monitor) Stats() Stats {
	m.mu.Lock()
	n := len(m.agents)
	m.mu.Unlock()
	return Stats{
		Active: m.leader.Load(), Agents: n, Expected: len(m.invSnap.Load().byAgent),
		Heartbeats: m.heartbeats.Load(), Dropped: m.dropped.Load(), AgentAlerts: m.agentAlerts.Load(),
		AlertsDelivered: m.alert.delivered.Load(), AlertsSuppressed: m.alert.suppressed.Load(), AlertsFailed: m.alert.failed.Load(),
		Resurrections: m.enqueued.Load(), Meltdowns: m.meltdowns.Load(),
	}
}

// LastHeartbeat returns when agent id last heartbeated (zero if never).
func (m *Monitor) LastHeartbeat(id string) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st := m.agents[id]; st != nil {
		return time.Unix(0, st.last)
	}
	return time.Time{}
}

// Responsive reports whether agent id heartbeated within the agent timeout. Before the
// monitor has listened for a whole timeout, silence proves nothing: that is an error.
func (m *Monitor) Responsive(_ context.Context, id string) (bool, error) {
	now := m.cfg.Now()
	if last := m.LastHeartbeat(id); !last.IsZero() && now.Sub(last) <= m.cfg.AgentTimeout {
		return true, nil
	}
	if listened := now.Sub(time.Unix(0, m.since.Load())); listened < m.cfg.AgentTimeout {
		return false, fmt.Errorf("agent %s: not heard yet, and the health monitor has listened for only %s (agent timeout %s)",
			id, listened.Round(time.Second), m.cfg.AgentTimeout)
	}
	return false, nil
}

// Active reports whether this monitor holds the lock and acts.
func (m *Monitor) Active() bool { return m.leader.Load() }

// Close waits (until ctx ends) for queued alerts to be delivered, then stops the plugins.
func (m *Monitor) Close(ctx context.Context) { m.alert.close(ctx) }
