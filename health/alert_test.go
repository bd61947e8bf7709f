package health

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/bosun-gitops/bosun/state/postgres/pgtest"
)

// flakyHook fails its first failures requests with status, then accepts.
type flakyHook struct {
	mu       sync.Mutex
	failures int
	status   int
	got      []Alert
	ids      []string
	attempts int
}

func (h *flakyHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts++
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "want a JSON POST", http.StatusBadRequest)
		return
	}
	if h.failures > 0 {
		h.failures--
		w.WriteHeader(h.status)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var a Alert
	if err := json.Unmarshal(body, &a); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.got = append(h.got, a)
	h.ids = append(h.ids, r.Header.Get("X-Bosun-Alert-Id"))
}

func TestWebhookRetriesThenSucceedsAndDeduplicates(t *testing.T) {
	hook := &flakyHook{failures: 2, status: http.StatusServiceUnavailable}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	wh, err := NewWebhookPlugin(srv.URL + "/alerts?token=s3cret")
	if err != nil {
		t.Fatal(err)
	}
	wh.Backoff, wh.Timeout = 5*time.Millisecond, 10*time.Second
	d := newDispatcher([]Plugin{wh}, time.Hour, time.Now, testLog())
	a := Alert{Severity: SeverityCritical, Title: "web/1 has timed out", Deployment: "web", key: "timeout:a1"}
	if !d.send(a) {
		t.Fatal("first alert suppressed")
	}
	if d.send(a) || d.send(a) {
		t.Error("repeated alert delivered")
	}
	// Another condition is its own alert.
	if !d.send(Alert{Severity: SeverityCritical, Title: "web/2 has timed out", key: "timeout:a2"}) {
		t.Error("a different condition was suppressed")
	}
	// Resolved and back: a new alert.
	d.resolve("timeout:a1")
	if !d.send(a) {
		t.Error("alert after resolve suppressed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d.close(ctx)

	hook.mu.Lock()
	defer hook.mu.Unlock()
	if hook.attempts != 5 || len(hook.got) != 3 {
		t.Fatalf("webhook saw %d attempts and %d alerts, want 5 and 3", hook.attempts, len(hook.got))
	}
	first := hook.got[0]
	if first.Title != a.Title || first.SeverityName != "critical" || first.Deployment != "web" || first.ID == "" || hook.ids[0] != first.ID {
		t.Errorf("posted alert = %+v (id header %q)", first, hook.ids[0])
	}
	if d.delivered.Load() != 3 || d.suppressed.Load() != 2 || d.failed.Load() != 0 {
		t.Errorf("delivered %d suppressed %d failed %d", d.delivered.Load(), d.suppressed.Load(), d.failed.Load())
	}
}

func TestWebhookGivesUpWithoutLeakingItsURL(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int
		attempts int
	}{
		{"client error is not retried", http.StatusBadRequest, 1},
		{"server error retried until attempts run out", http.StatusInternalServerError, 3},
		{"too many requests retried", http.StatusTooManyRequests, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hook := &flakyHook{failures: 100, status: tc.status}
			srv := httptest.NewServer(hook)
			defer srv.Close()
			wh, err := NewWebhookPlugin(srv.URL + "/hook?token=s3cret")
			if err != nil {
				t.Fatal(err)
			}
			wh.Backoff, wh.Attempts = time.Millisecond, 3
			err = wh.Deliver(context.Background(), Alert{Title: "x"})
			if err == nil {
				t.Fatal("delivery to a failing hook succeeded")
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "/hook") {
				t.Errorf("error leaks the URL: %v", err)
			}
			if hook.attempts != tc.attempts {
				t.Errorf("attempts = %d, want %d", hook.attempts, tc.attempts)
			}
		})
	}
	// Nobody listening: retried, then a clean error.
	wh, _ := NewWebhookPlugin("http://127.0.0.1:1/hook?token=s3cret")
	wh.Backoff, wh.Attempts = time.Millisecond, 2
	if err := wh.Deliver(context.Background(), Alert{}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("unreachable hook: %v", err)
	}
	for _, bad := range []string{"", "ftp://x/y", "http://", "::"} {
		if _, err := NewWebhookPlugin(bad); err == nil {
			t.Errorf("NewWebhookPlugin(%q) accepted", bad)
		}
	}
}

func TestWebhookTimeoutPerAttempt(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			select { // the first attempt hangs past its timeout
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	wh, _ := NewWebhookPlugin(srv.URL)
	wh.Timeout, wh.Backoff = 100*time.Millisecond, time.Millisecond
	if err := wh.Deliver(context.Background(), Alert{Title: "x"}); err != nil {
		t.Fatalf("deliver after one hung attempt: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("calls = %d, want 2", calls)
	}
}

func TestEventPluginRecordsAlertsForBosunEvents(t *testing.T) {
	ctx := testCtx(t)
	store, err := postgres.Open(ctx, pgtest.NewDatabase(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	d := newDispatcher([]Plugin{EventPlugin{Events: store}}, time.Hour, time.Now, testLog())
	d.send(Alert{Severity: SeverityCritical, Category: CategoryVMHealth, Title: "web/x has timed out", Summary: "no heartbeat for 61s",
		Deployment: "web", Instance: "web/x", AgentID: "a1", key: "k"})
	d.send(Alert{Severity: SeverityCritical, Title: "web/x has timed out", key: "k"})
	d.close(ctx)
	evs, err := store.Events(ctx, postgres.EventFilter{Deployment: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("events = %+v, want one", evs)
	}
	ev := evs[0]
	if ev.Action != "alert" || ev.ObjectType != "alert" || ev.ObjectName != "web/x has timed out" || ev.Instance != "web/x" ||
		ev.User != "health_monitor" || ev.Context["severity"] != "critical" || ev.Context["summary"] != "no heartbeat for 61s" {
		t.Errorf("event = %+v", ev)
	}
}

func TestDispatcherWindowAndSlowPluginDoesNotBlock(t *testing.T) {
	clock := newClock()
	block := make(chan struct{})
	slow := pluginFunc(func(ctx context.Context, a Alert) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil
	})
	rec := &recorder{}
	d := newDispatcher([]Plugin{slow, rec}, 10*time.Minute, clock.Now, testLog())
	a := Alert{Title: "flapping", key: "agent:a:flapping"}
	d.send(a)
	d.send(a)
	clock.Advance(11 * time.Minute)
	d.send(a) // the window passed: sent again, saying how many were suppressed
	waitFor(t, "fast plugin delivers while the slow one blocks", func() bool { return len(rec.titles()) == 2 })
	rec.mu.Lock()
	if rec.alerts[1].Repeats != 1 {
		t.Errorf("repeats = %d, want 1", rec.alerts[1].Repeats)
	}
	rec.mu.Unlock()
	// close gives up on the stuck plugin when its ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	d.close(ctx)
	close(block)
}

type pluginFunc func(ctx context.Context, a Alert) error

func (pluginFunc) Name() string                                 { return "func" }
func (f pluginFunc) Deliver(ctx context.Context, a Alert) error { return f(ctx, a) }
