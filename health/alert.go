package health

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bosun-gitops/bosun/state"
)

// Alert severities, BOSH's (bosh-spec §9.2).
const (
	SeverityAlert    = 1
	SeverityCritical = 2
	SeverityError    = 3
	SeverityWarning  = 4
)

// SeverityName is BOSH's word for a severity.
func SeverityName(s int) string {
	switch s {
	case SeverityAlert:
		return "alert"
	case SeverityCritical:
		return "critical"
	case SeverityError:
		return "error"
	case SeverityWarning:
		return "warning"
	}
	return "unknown"
}

// Alert categories.
const (
	CategoryVMHealth         = "vm_health"
	CategoryDeploymentHealth = "deployment_health"
	CategoryAgent            = "agent" // relayed from an agent (monit events)
)

// Alert is one thing an operator should hear about.
type Alert struct {
	ID       string `json:"id"`
	Severity int    `json:"severity"`
	// SeverityName is Severity in words, for receivers that do not know BOSH's numbers.
	SeverityName string `json:"severity_name"`
	Category     string `json:"category"`
	Title        string `json:"title"`
	Summary      string `json:"summary"`
	Deployment   string `json:"deployment,omitempty"`
	// Instance is group/id; empty for deployment-wide alerts and unknown agents.
	Instance string `json:"instance,omitempty"`
	AgentID  string `json:"agent_id,omitempty"`
	// Source is who raised it: "health_monitor", or "agent" for relayed agent alerts.
	Source    string    `json:"source"`
	CreatedAt time.Time `json:"created_at"`
	// Repeats counts the same alerts suppressed since the last one delivered.
	Repeats int `json:"repeats,omitempty"`

	// key names the condition for de-duplication; empty means never de-duplicated.
	key string
}

// Plugin delivers alerts somewhere. Deliver may block (the dispatcher runs each plugin
// on its own goroutine) and should give up when ctx ends.
type Plugin interface {
	Name() string
	Deliver(ctx context.Context, a Alert) error
}

// dispatcher fans alerts out to plugins, each behind its own queue so that a slow
// webhook never delays the log or the event store, and suppresses repeats of a condition
// already reported: an agent that stays down is one alert, not one per analysis.
type dispatcher struct {
	log    *slog.Logger
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	sent  map[string]*sentAlert
	queue []chan Alert
	wg    sync.WaitGroup
	// ctx ends deliveries still retrying when close gives up waiting for them.
	ctx    context.Context
	cancel context.CancelFunc

	delivered, suppressed, dropped, failed atomic.Int64
}

type sentAlert struct {
	at      time.Time
	repeats int
}

const pluginQueue = 1024

func newDispatcher(plugins []Plugin, window time.Duration, now func() time.Time, log *slog.Logger) *dispatcher {
	d := &dispatcher{log: log, window: window, now: now, sent: map[string]*sentAlert{}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	for _, p := range plugins {
		q := make(chan Alert, pluginQueue)
		d.queue = append(d.queue, q)
		d.wg.Go(func() {
			for a := range q {
				if err := p.Deliver(d.ctx, a); err != nil {
					d.failed.Add(1)
					d.log.Warn("alert not delivered", "plugin", p.Name(), "title", a.Title, "err", err)
				} else {
					d.delivered.Add(1)
				}
			}
		})
	}
	return d
}

// send delivers a unless its condition was reported within the window. It reports
// whether a was delivered.
func (d *dispatcher) send(a Alert) bool {
	now := d.now()
	if a.ID == "" {
		a.ID = newID()
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	if a.Source == "" {
		a.Source = "health_monitor"
	}
	a.SeverityName = SeverityName(a.Severity)
	d.mu.Lock()
	if a.key != "" {
		if s, ok := d.sent[a.key]; ok && (d.window <= 0 || now.Sub(s.at) < d.window) {
			s.repeats++
			d.mu.Unlock()
			d.suppressed.Add(1)
			return false
		} else if ok {
			a.Repeats = s.repeats
		}
		d.sent[a.key] = &sentAlert{at: now}
	}
	for _, q := range d.queue {
		select {
		case q <- a:
		default:
			d.dropped.Add(1)
		}
	}
	d.mu.Unlock()
	return true
}

// resolve forgets condition key: when it happens again it is a new alert.
func (d *dispatcher) resolve(key string) {
	d.mu.Lock()
	delete(d.sent, key)
	d.mu.Unlock()
}

// active reports whether condition key has been reported and not resolved.
func (d *dispatcher) active(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.sent[key]
	return ok
}

// close stops accepting alerts and waits, at most until ctx ends, for the queued ones.
func (d *dispatcher) close(ctx context.Context) {
	d.mu.Lock()
	for _, q := range d.queue {
		close(q)
	}
	d.queue = nil
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		d.cancel()
		<-done
	}
	d.cancel()
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// LogPlugin writes alerts to a logger, at a level following their severity.
type LogPlugin struct{ Log *slog.Logger }

func (LogPlugin) Name() string { return "log" }

func (p LogPlugin) Deliver(ctx context.Context, a Alert) error {
	level := slog.LevelWarn
	switch a.Severity {
	case SeverityAlert, SeverityCritical, SeverityError:
		level = slog.LevelError
	case SeverityWarning:
		level = slog.LevelWarn
	}
	attrs := []any{"severity", a.SeverityName, "category", a.Category, "summary", a.Summary}
	if a.Deployment != "" {
		attrs = append(attrs, "deployment", a.Deployment)
	}
	if a.Instance != "" {
		attrs = append(attrs, "instance", a.Instance)
	}
	if a.AgentID != "" {
		attrs = append(attrs, "agent", a.AgentID)
	}
	if a.Repeats > 0 {
		attrs = append(attrs, "repeats", a.Repeats)
	}
	p.Log.Log(ctx, level, "alert: "+a.Title, attrs...)
	return nil
}

// EventAdder is the audit trail; state/postgres.Store satisfies it.
type EventAdder interface {
	AddEvent(ctx context.Context, e state.Event) (int64, error)
}

// EventPlugin records alerts in the audit trail (`bosun events`).
type EventPlugin struct {
	Events EventAdder
	// Timeout bounds one write (default 10 s).
	Timeout time.Duration
}

func (EventPlugin) Name() string { return "events" }

func (p EventPlugin) Deliver(ctx context.Context, a Alert) error {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := map[string]any{"id": a.ID, "severity": a.SeverityName, "category": a.Category, "summary": a.Summary, "source": a.Source}
	if a.AgentID != "" {
		c["agent_id"] = a.AgentID
	}
	if a.Repeats > 0 {
		c["repeats"] = a.Repeats
	}
	_, err := p.Events.AddEvent(ctx, state.Event{
		User:       "health_monitor",
		Action:     "alert",
		ObjectType: "alert",
		ObjectName: a.Title,
		Deployment: a.Deployment,
		Instance:   a.Instance,
		Context:    c,
	})
	if err != nil {
		return fmt.Errorf("record alert event: %w", err)
	}
	return nil
}

// WebhookPlugin POSTs each alert as JSON, retrying with exponential backoff on network
// errors, 5xx, 408 and 429. Receivers can drop retried duplicates by X-Bosun-Alert-Id.
type WebhookPlugin struct {
	URL    string
	Client *http.Client
	// Timeout bounds one attempt (default 10 s).
	Timeout time.Duration
	// Attempts is how many tries an alert gets (default 5).
	Attempts int
	// Backoff is the wait before the first retry, doubled each time up to MaxBackoff
	// (defaults 1 s and 30 s).
	Backoff, MaxBackoff time.Duration
}

func (WebhookPlugin) Name() string { return "webhook" }

// NewWebhookPlugin checks rawURL and returns a plugin posting to it. The URL may carry a
// token: errors name only its scheme and host.
func NewWebhookPlugin(rawURL string) (*WebhookPlugin, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("webhook URL: want an http:// or https:// URL with a host")
	}
	return &WebhookPlugin{URL: rawURL}, nil
}

// target names the webhook without its path, query or credentials, which may be secret.
func (p *WebhookPlugin) target() string {
	u, err := url.Parse(p.URL)
	if err != nil {
		return "webhook"
	}
	return u.Scheme + "://" + u.Host
}

func (p *WebhookPlugin) Deliver(ctx context.Context, a Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("post alert to %s: %w", p.target(), err)
	}
	attempts, backoff, maxBackoff := p.Attempts, p.Backoff, p.MaxBackoff
	if attempts <= 0 {
		attempts = 5
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	var last error
	for i := range attempts {
		if i > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("post alert to %s: %w (last: %w)", p.target(), ctx.Err(), last)
			case <-t.C:
			}
			backoff = min(2*backoff, maxBackoff)
		}
		retry, err := p.post(ctx, a.ID, body)
		if err == nil {
			return nil
		}
		last = err
		if !retry {
			break
		}
	}
	return fmt.Errorf("post alert to %s: %w", p.target(), last)
}

func (p *WebhookPlugin) post(ctx context.Context, id string, body []byte) (retry bool, err error) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		return false, errors.New("bad webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "bosun-health-monitor")
	req.Header.Set("X-Bosun-Alert-Id", id)
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		// *url.Error quotes the URL, which may hold a token: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return true, err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
		return true, fmt.Errorf("status %s", resp.Status)
	}
	return false, fmt.Errorf("status %s (not retried)", resp.Status)
}
