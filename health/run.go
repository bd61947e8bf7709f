package health

import (
	"context"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
)

// Elector decides which director's monitor is the active one. cmd/bosun adapts a
// Postgres advisory lock (state/postgres.Store.TryAdvisoryLock).
type Elector interface {
	// TryAcquire takes the role without waiting; a nil Lease and no error mean another
	// monitor holds it.
	TryAcquire(ctx context.Context) (Lease, error)
}

// Lease is the held role. Check returns an error once it is lost (the lock's database
// session ended); Release gives it up.
type Lease interface {
	Check(ctx context.Context) error
	Release(ctx context.Context)
}

// Run tracks heartbeats on t (every director does, so a standby that takes over already
// knows who is alive) and, while it holds the role el hands out, analyses every
// AnalyzeInterval. It steps down when the lease is lost and competes again; it returns
// when ctx ends, releasing the role and flushing queued alerts.
func (m *Monitor) Run(ctx context.Context, t protocol.Transport, el Elector) error {
	unsub, err := m.Subscribe(t)
	if err != nil {
		return err
	}
	defer func() {
		unsub()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		m.Close(cctx)
	}()
	for {
		lease, err := el.TryAcquire(ctx)
		if ctx.Err() != nil {
			if lease != nil {
				lease.Release(context.WithoutCancel(ctx))
			}
			return nil
		}
		if err != nil {
			m.log.Warn("health monitor: could not compete for the active role", "err", err)
		}
		if lease == nil {
			m.prune()
			if !sleep(ctx, m.cfg.LeaseRetry) {
				return nil
			}
			continue
		}
		m.lead(ctx, lease)
		lease.Release(context.WithoutCancel(ctx))
		// A monitor that lost its lease lets the others go first: whatever cost it the
		// lease (its database connection) may well cost it the next one.
		if ctx.Err() != nil || !sleep(ctx, m.cfg.LeaseRetry) {
			return nil
		}
	}
}

// lead analyses until ctx ends or the lease is lost.
func (m *Monitor) lead(ctx context.Context, lease Lease) {
	m.leader.Store(true)
	defer m.leader.Store(false)
	m.log.Info("health monitor active", "agent_timeout", m.cfg.AgentTimeout, "analyze_every", m.cfg.AnalyzeInterval)
	analyze := time.NewTicker(m.cfg.AnalyzeInterval)
	defer analyze.Stop()
	check := time.NewTicker(m.cfg.LeaseCheck)
	defer check.Stop()
	stats := time.NewTicker(time.Minute) // BOSH's log_stats interval
	defer stats.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stats.C:
			st := m.Stats()
			m.log.Debug("health monitor stats", "agents", st.Agents, "expected", st.Expected, "heartbeats", st.Heartbeats,
				"dropped", st.Dropped, "alerts_delivered", st.AlertsDelivered, "alerts_suppressed", st.AlertsSuppressed,
				"alerts_failed", st.AlertsFailed, "resurrections", st.Resurrections, "meltdowns", st.Meltdowns)
		case <-check.C:
			cctx, cancel := context.WithTimeout(ctx, m.cfg.LeaseCheck)
			err := lease.Check(cctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				m.log.Warn("health monitor lost the active role; standing by", "err", err)
				return
			}
		case <-analyze.C:
			actx, cancel := context.WithTimeout(ctx, max(m.cfg.AnalyzeInterval, 30*time.Second))
			rep, err := m.Analyze(actx)
			cancel()
			if err != nil && ctx.Err() == nil {
				m.log.Warn("health analysis incomplete", "err", err)
			}
			if len(rep.Unresponsive)+len(rep.Rogue)+len(rep.Meltdown) > 0 {
				m.log.Debug("health analysis", "unresponsive", len(rep.Unresponsive), "rogue", len(rep.Rogue), "meltdown", rep.Meltdown, "enqueued", rep.Enqueued)
			}
		}
	}
}

// prune forgets agents silent for two agent timeouts, so that a standby, which does not
// analyse, does not keep every agent it ever heard (each recreated VM is a new one).
func (m *Monitor) prune() {
	cutoff := m.cfg.Now().Add(-2 * m.cfg.AgentTimeout).UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, st := range m.agents {
		if st.last < cutoff {
			delete(m.agents, id)
		}
	}
	clear(m.badLogged)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ElectorFunc adapts a function to Elector.
type ElectorFunc func(ctx context.Context) (Lease, error)

// TryAcquire calls f.
func (f ElectorFunc) TryAcquire(ctx context.Context) (Lease, error) { return f(ctx) }

// LockKey is the Postgres advisory lock key of the active health monitor ("bosun-hm").
const LockKey int64 = 0x626f73756e2d686d
