package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/cpi"
	hm "github.com/bosun-gitops/bosun/health"
	"github.com/bosun-gitops/bosun/reconciler"
	"github.com/nats-io/nats.go"
)

// healthFlags are `bosun director`'s flags for the health monitor role.
type healthFlags struct {
	off             bool
	agentTimeout    time.Duration
	analyzeInterval time.Duration
	meltdownMin     int
	meltdownPercent float64
	meltdownWindow  time.Duration
	webhookURL      string
}

func (h *healthFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&h.off, "no-health", false, "do not run the health monitor on this director (another director's may)")
	fs.DurationVar(&h.agentTimeout, "agent-timeout", 60*time.Second, "an agent silent this long is unresponsive and its instance is resurrected")
	fs.DurationVar(&h.analyzeInterval, "health-interval", 10*time.Second, "how often the health monitor looks for unresponsive agents")
	fs.IntVar(&h.meltdownMin, "meltdown-min-down", 5, "meltdown (no resurrection, one alert) needs at least this many instances of a deployment down within --meltdown-window…")
	fs.Float64Var(&h.meltdownPercent, "meltdown-percent", 20, "…and at least this percentage of the deployment's instances")
	fs.DurationVar(&h.meltdownWindow, "meltdown-window", 10*time.Minute, "the window the meltdown thresholds count in")
	fs.StringVar(&h.webhookURL, "health-webhook-url", "", "POST every health alert as JSON to this URL (retried with backoff); it may carry a token")
}

// config checks the flags and turns them into the monitor's configuration.
func (h *healthFlags) config() (hm.Config, error) {
	switch {
	case h.agentTimeout < time.Second:
		return hm.Config{}, usageError("--agent-timeout %s: want at least 1s", h.agentTimeout)
	case h.analyzeInterval < 100*time.Millisecond:
		return hm.Config{}, usageError("--health-interval %s: want at least 100ms", h.analyzeInterval)
	case h.meltdownMin < 1:
		return hm.Config{}, usageError("--meltdown-min-down %d: want at least 1", h.meltdownMin)
	case h.meltdownPercent <= 0 || h.meltdownPercent > 100:
		return hm.Config{}, usageError("--meltdown-percent %g: want more than 0 and at most 100", h.meltdownPercent)
	case h.meltdownWindow < h.agentTimeout:
		return hm.Config{}, usageError("--meltdown-window %s: want at least --agent-timeout (%s)", h.meltdownWindow, h.agentTimeout)
	}
	if h.webhookURL != "" {
		if _, err := hm.NewWebhookPlugin(h.webhookURL); err != nil {
			return hm.Config{}, usageError("--health-webhook-url: %v", err)
		}
	}
	return hm.Config{
		AgentTimeout:    h.agentTimeout,
		AnalyzeInterval: h.analyzeInterval,
		Meltdown:        hm.Meltdown{MinDown: h.meltdownMin, Percent: h.meltdownPercent / 100, Window: h.meltdownWindow},
	}, nil
}

// startHealth adds the health monitor role: every director tracks heartbeats, and the
// one holding the monitor's advisory lock analyses, alerts and queues resurrect tasks
// (handled by the reconciler's workers like any deploy). It sets d.monitor, nil when off.
func startHealth(d *director, f healthFlags) error {
	// The drift check's repairs keep to the monitor's meltdown thresholds, also when
	// the monitor is off.
	d.meltdown = reconciler.Meltdown{MinDown: f.meltdownMin, Percent: f.meltdownPercent / 100}
	if f.off {
		return nil
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	log := d.log.With("component", "health")
	cfg.Plugins = []hm.Plugin{hm.LogPlugin{Log: log}, hm.EventPlugin{Events: d.store}}
	if f.webhookURL != "" {
		wh, err := hm.NewWebhookPlugin(f.webhookURL)
		if err != nil {
			return err
		}
		cfg.Plugins = append(cfg.Plugins, wh)
	}
	m, err := hm.New(cfg, d.store, d.store, log)
	if err != nil {
		return err
	}
	d.monitor = m
	d.addRole(&healthRole{d: d, m: m})
	return nil
}

// healthRole runs the monitor on its own NATS connection as the health-monitor user
// (subscribe-only on hm.>) when the director embeds NATS, or on the director's own.
type healthRole struct {
	d *director
	m *hm.Monitor
}

func (*healthRole) Name() string { return "health" }

func (r *healthRole) Run(ctx context.Context) error {
	nc := r.d.nats
	if r.d.bus != nil {
		own, err := nats.Connect(r.d.bus.MonitorURL(), nats.Name("bosun-health-monitor"), nats.MaxReconnects(-1), nats.Timeout(10*time.Second))
		if err != nil {
			return fmt.Errorf("connect the health monitor to NATS: %w", err)
		}
		defer own.Close()
		nc = own
	}
	store := r.d.store
	el := hm.ElectorFunc(func(ctx context.Context) (hm.Lease, error) {
		l, err := store.TryAdvisoryLock(ctx, hm.LockKey)
		if l == nil {
			return nil, err // a typed nil would look like a lease
		}
		return l, nil
	})
	return r.m.Run(ctx, bus.Conn{NC: nc}, el)
}

// setResurrectionRules hands the monitor the resurrection rules of bosun.yml: def from
// its top-level `resurrection:` section, byDeployment from each `deployments.<name>.
// resurrection:` (hm.RulesFromMap converts a section kept as a generic map). The
// reconciler's wiring calls it whenever it accepts a revision. Without a monitor on this
// director it does nothing.
func (d *director) setResurrectionRules(def hm.Rules, byDeployment map[string]hm.Rules) error {
	if d.monitor == nil {
		return nil
	}
	return d.monitor.SetRules(def, byDeployment)
}

// setResurrectionSections is setResurrectionRules for a bosun.yml reader that keeps each
// `resurrection:` section as a generic map (nil when absent): the top-level one and each
// deployment's. A bad section is an error naming it, and the rules in force stay.
func (d *director) setResurrectionSections(def map[string]any, byDeployment map[string]map[string]any) error {
	dr, err := hm.RulesFromMap("bosun.yml: resurrection", def)
	if err != nil {
		return err
	}
	by := make(map[string]hm.Rules, len(byDeployment))
	for name, raw := range byDeployment {
		if raw == nil {
			continue // no section: the default applies
		}
		if by[name], err = hm.RulesFromMap("bosun.yml: deployments."+name+".resurrection", raw); err != nil {
			return err
		}
	}
	return d.setResurrectionRules(dr, by)
}

// cloudChecker is `bosun cck` for the API: the scan reads the store, asks the CPIs
// through lookup, and judges agents by this director's heartbeat table when it runs the
// monitor (every director tracks heartbeats, active or not).
func (d *director) cloudChecker(lookup func(name string) (cpi.CPI, error)) *hm.Scanner {
	s := &hm.Scanner{Store: d.store, Cloud: cpiCloud{lookup}, Log: d.log.With("component", "cck")}
	if d.monitor != nil {
		s.Agents = d.monitor
	}
	return s
}

// cpiCloud adapts the director's CPIs to the scan's questions.
type cpiCloud struct {
	lookup func(name string) (cpi.CPI, error)
}

func (c cpiCloud) HasVM(ctx context.Context, name, cid string) (bool, error) {
	p, err := c.lookup(name)
	if err != nil {
		return false, err
	}
	return p.HasVM(ctx, cpi.VMCID(cid))
}

func (c cpiCloud) HasDisk(ctx context.Context, name, cid string) (bool, error) {
	p, err := c.lookup(name)
	if err != nil {
		return false, err
	}
	return p.HasDisk(ctx, cpi.DiskCID(cid))
}

func (c cpiCloud) AttachedDisks(ctx context.Context, name, vm string) ([]string, error) {
	p, err := c.lookup(name)
	if err != nil {
		return nil, err
	}
	disks, err := cpi.GetDisks(ctx, p, cpi.VMCID(vm))
	var ce *cpi.Error
	if errors.As(err, &ce) && (ce.Kind == cpi.NotImplemented || ce.Kind == cpi.NotSupported) {
		return nil, hm.ErrUnsupported
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, len(disks))
	for i, d := range disks {
		out[i] = string(d)
	}
	return out, nil
}
