package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/state"
)

// Options are what a Server is built from. Store and Auth are required; the rest are
// optional parts the director may not have, whose endpoints then answer 501.
type Options struct {
	Store Store
	Auth  *Auth
	Log   *slog.Logger

	Reconciler Reconciler
	Prober     InstanceProber
	Logs       LogFetcher
	Checker    CloudChecker
	Sources    SourceLister
	Observed   ObservedReader
	Planner    Planner

	// Name and Version are what /info reports.
	Name, Version string
	// Metrics are extra /metrics collectors of other director roles, called per scrape.
	Metrics []func(ctx context.Context, m *MetricsWriter)
	// FollowPoll is how often a followed task's events are read (default 250 ms).
	FollowPoll time.Duration
	// KeepAlive is how long a followed stream may stay silent before the server sends
	// an empty line (default 20 s).
	KeepAlive time.Duration
	// ProbeTimeout bounds one agent's get_state (default 10 s); ProbeParallel is how many
	// agents are asked at once (default 32).
	ProbeTimeout  time.Duration
	ProbeParallel int
}

// Server is the director's HTTP API.
type Server struct {
	o   Options
	mux *http.ServeMux

	statsMu sync.Mutex
	stats   map[[2]string]int64 // (route, code) → requests

	planSlot chan struct{} // one plan at a time

	stopOnce sync.Once
	stop     chan struct{} // closed by StopStreams
}

// StopStreams ends every followed task output at once (the clients pick up again from
// where they were, at another director or this one restarted). Call it when the HTTP
// server starts shutting down: http.Server.Shutdown waits for open streams otherwise.
func (s *Server) StopStreams() { s.stopOnce.Do(func() { close(s.stop) }) }

// New builds the API server of o.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.Auth == nil {
		return nil, errors.New("api: a store and an authenticator are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.FollowPoll <= 0 {
		o.FollowPoll = 250 * time.Millisecond
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 20 * time.Second
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = 10 * time.Second
	}
	if o.ProbeParallel <= 0 {
		o.ProbeParallel = 32
	}
	if o.Name == "" {
		o.Name = "bosun"
	}
	s := &Server{o: o, mux: http.NewServeMux(), stats: map[[2]string]int64{}, stop: make(chan struct{}), planSlot: make(chan struct{}, 1)}
	s.routes()
	return s, nil
}

// Handler serves the API.
func (s *Server) Handler() http.Handler { return s.mux }

// handler is an API handler: it answers with a value to encode, or an error.
type handler func(w http.ResponseWriter, r *http.Request, p *Principal) (any, error)

func (s *Server) routes() {
	open := func(pattern string, h handler) { s.mux.Handle(pattern, s.wrap(pattern, false, h)) }
	authed := func(pattern string, h handler) { s.mux.Handle(pattern, s.wrap(pattern, true, h)) }
	open("GET /healthz", s.healthz)
	open("GET /info", s.info)
	s.mux.Handle("GET /metrics", s.count("GET /metrics", http.HandlerFunc(s.metrics)))

	authed("GET /deployments", s.listDeployments)
	authed("GET /deployments/{name}", s.getDeployment)
	authed("GET /deployments/{name}/instances", s.listInstances)
	authed("GET /deployments/{name}/vms", s.listVMs)
	authed("GET /deployments/{name}/disks", s.listDisks)
	authed("GET /deployments/{name}/observed", s.observed)
	authed("GET /disks", s.listDisks)
	authed("POST /deployments/{name}/suspend", s.suspend)
	authed("POST /deployments/{name}/resume", s.resume)
	authed("POST /deployments/{name}/actions", s.action)
	authed("POST /deployments/{name}/cck", s.cck)
	authed("POST /deployments/{name}/cck/resolve", s.resolveProblems)
	authed("GET /deployments/{name}/instances/{group}/{id}/logs", s.logs)
	authed("POST /reconcile", s.reconcile)
	authed("POST /plan", s.plan)
	authed("GET /tasks", s.listTasks)
	authed("GET /tasks/{id}", s.getTask)
	authed("DELETE /tasks/{id}", s.cancelTask)
	authed("GET /tasks/{id}/output", s.taskOutput)
	authed("GET /events", s.listEvents)
	authed("GET /locks", s.listLocks)
	authed("GET /revisions", s.listRevisions)
	authed("GET /sources", s.listSources)
	s.mux.Handle("/", s.count("other", http.HandlerFunc(s.notFound)))
}

// notFound answers what no route took: 405 naming the methods the path has, or 404.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{"GET", "POST", "DELETE"} {
		if m == r.Method {
			continue
		}
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pattern := s.mux.Handler(r2); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, s.o.Log, errorf(http.StatusMethodNotAllowed, "%s %s: this path takes %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
		return
	}
	writeError(w, s.o.Log, errorf(http.StatusNotFound, "no such API path: %s %s", r.Method, r.URL.Path))
}

// httpError is an error with the status and message the caller gets.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, a ...any) error {
	return &httpError{status, fmt.Sprintf(format, a...)}
}

// statusWriter remembers the status code, for the request counter.
type statusWriter struct {
	http.ResponseWriter
	code int
	user string // who the token spoke for, for the log line of an action
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) count(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		defer func() {
			if v := recover(); v != nil {
				// The caller learns something broke, never how: stacks stay in the log.
				s.o.Log.Error("API handler panicked", "route", route, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if sw.code == 0 {
					writeError(sw, s.o.Log, errorf(http.StatusInternalServerError, "internal error while serving %s; the director's log has the details", route))
				}
			}
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				// Actions are few and matter: each gets a line (reads would drown them).
				s.o.Log.Info("API action", "method", r.Method, "path", r.URL.Path, "status", code, "user", sw.user, "duration", time.Since(start).Round(time.Millisecond))
			}
			s.statsMu.Lock()
			s.stats[[2]string{route, strconv.Itoa(code)}]++
			s.statsMu.Unlock()
		}()
		h.ServeHTTP(sw, r)
	})
}

func (s *Server) wrap(route string, needAuth bool, h handler) http.Handler {
	return s.count(route, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p *Principal
		if needAuth {
			var err error
			p, err = s.o.Auth.Authenticate(r)
			if sw, ok := w.(*statusWriter); ok && p != nil {
				sw.user = p.Name
			}
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="bosun"`)
				writeError(w, s.o.Log, err)
				return
			}
		} else if r.Header.Get("Authorization") != "" {
			p, _ = s.o.Auth.Authenticate(r)
		}
		v, err := h(w, r, p)
		if err != nil {
			writeError(w, s.o.Log, err)
			return
		}
		if v == nil {
			return // the handler wrote its own answer
		}
		writeJSON(w, http.StatusOK, v)
	}))
}

// accepted wraps a value answered with 202.
type accepted struct{ v any }

func writeJSON(w http.ResponseWriter, code int, v any) {
	if a, ok := v.(accepted); ok {
		code, v = http.StatusAccepted, a.v
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeError answers err as JSON: its own status for API errors, 404 for state's
// ErrNotFound, and otherwise 500 with a message that names the failing operation but
// leaks nothing else.
func writeError(w http.ResponseWriter, log *slog.Logger, err error) {
	var he *httpError
	var ae *authError
	status, msg := http.StatusInternalServerError, ""
	switch {
	case errors.As(err, &he):
		status, msg = he.status, he.msg
	case errors.As(err, &ae):
		status, msg = ae.status, ae.msg
	case errors.Is(err, state.ErrNotFound):
		status, msg = http.StatusNotFound, err.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status, msg = http.StatusServiceUnavailable, "the request was cancelled or timed out: "+err.Error()
	default:
		log.Error("API request failed", "err", err)
		msg = err.Error()
	}
	writeJSON(w, status, ErrorBody{Error: msg, Status: status})
}

// decodeBody reads r's JSON body into v, strictly: unknown fields and trailing data are
// errors. An empty body leaves v as it is.
func decodeBody(r *http.Request, w http.ResponseWriter, v any) error {
	body := http.MaxBytesReader(w, r.Body, 1<<20)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return errorf(http.StatusBadRequest, "request body is not the JSON expected: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "request body has data after its JSON value")
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request, _ *Principal) (any, error) {
	if p, ok := s.o.Store.(Pinger); ok {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			return nil, errorf(http.StatusServiceUnavailable, "database unreachable: %v", err)
		}
	}
	return map[string]any{"ok": true, "version": s.o.Version}, nil
}

func (s *Server) info(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	in := Info{Name: s.o.Name, Version: s.o.Version, Auth: "token", Features: map[string]bool{
		"reconcile": s.o.Reconciler != nil,
		"ps":        s.o.Prober != nil,
		"logs":      s.o.Logs != nil,
		"cck":       s.o.Checker != nil,
		"sources":   s.o.Sources != nil,
		"observed":  s.o.Observed != nil,
		"plan":      s.o.Planner != nil,
	}}
	if p != nil {
		in.User, in.Scopes = p.Name, p.Scopes
	}
	return in, nil
}

// event records an operator's action; a failure to record it fails the request, since
// an unaudited action must not pass silently.
func (s *Server) event(ctx context.Context, e state.Event) error {
	if _, err := s.o.Store.AddEvent(ctx, e); err != nil {
		return fmt.Errorf("record %s event: %w", e.Action, err)
	}
	return nil
}

func notWired(what string) error {
	return errorf(http.StatusNotImplemented, "this director has no %s wired in", what)
}
