package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/blobstore/signed"
	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/cpi"
	hm "github.com/bosun-gitops/bosun/health"
	"github.com/bosun-gitops/bosun/reconciler"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/bosun-gitops/bosun/state/postgres/cluster"
	"github.com/bosun-gitops/bosun/state/postgres/worker"
	"github.com/nats-io/nats.go"
)

// role is one part of the director that runs until its ctx ends: task workers, the HTTP
// API, and later the reconciler and health monitor. A role returns nil when stopped by
// its ctx; an error stops the whole director.
type role interface {
	Name() string
	Run(ctx context.Context) error
}

// directorPlugins add roles, task handlers and HTTP routes to a director being set up.
// Each lives in its own director_<name>.go file and appends itself from init, as verbs do.
var directorPlugins []func(d *director) error

// director holds what every role shares; plugins read it and add to it before Run.
type director struct {
	log     *slog.Logger
	dataDir string // absolute; plugins keep their files under it
	repo    string // --repo, checked to be a directory or a git URL
	dev     bool
	rec     reconcilerFlags
	// cpiFlags choose the CPI; directorCPI builds it once (director_converge.go).
	cpiFlags cpiFlags
	cpiOnce  sync.Once
	cpi      cpi.CPI
	cpiErr   error
	// natsURL is what agents are told to connect to when NATS is not embedded.
	natsURL string
	// reconciler is set when --repo is given (the API's "reconcile now").
	reconciler *reconciler.Reconciler
	store      *postgres.Store
	nats       *nats.Conn
	// bus is the embedded NATS server (nil with --nats-url); it derives agent credentials.
	bus      *bus.Server
	mux      *http.ServeMux
	handlers map[string]worker.Handler
	roles    []role
	// api holds the API's optional parts, set by plugins (director_api.go).
	api apiWiring
	// waitingFor says what the director needs before it has work, shown by /healthz and
	// the logs; a plugin that brings the work clears it.
	waitingFor string
	// monitor is the health monitor (nil with --no-health).
	monitor *hm.Monitor
	// meltdown is the monitor's meltdown thresholds, which the drift check keeps too.
	meltdown reconciler.Meltdown
	// blobSigner signs the blob URLs agents of a CPI other than local fetch and store
	// through (director_blobstore.go); nil for the local CPI, whose agents read the
	// blobs directory.
	blobSigner *signed.Signer
	// blobCA is the PEM CA agents verify the blobstore's certificate with, put in their
	// settings; empty when they use their system roots or it is plain HTTP.
	blobCA []byte

	mu     sync.Mutex
	status map[string]string
}

func (d *director) addRole(r role)                          { d.roles = append(d.roles, r) }
func (d *director) handleTask(typ string, h worker.Handler) { d.handlers[typ] = h }
func (d *director) setStatus(name, s string)                { d.mu.Lock(); d.status[name] = s; d.mu.Unlock() }
func (d *director) roleStatus() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.status)
}

// run runs every role until ctx ends or one fails, then waits for all of them.
func (d *director) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(d.roles))
	var wg sync.WaitGroup
	for _, r := range d.roles {
		d.setStatus(r.Name(), "running")
		wg.Go(func() {
			err := r.Run(ctx)
			if err != nil {
				d.setStatus(r.Name(), "failed: "+err.Error())
				errs <- fmt.Errorf("%s: %w", r.Name(), err)
				cancel()
				return
			}
			d.setStatus(r.Name(), "stopped")
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when every role stopped cleanly
}

// health is what GET /healthz answers.
type health struct {
	OK         bool              `json:"ok"`
	Version    string            `json:"version"`
	Postgres   string            `json:"postgres"`
	NATS       string            `json:"nats"`
	Roles      map[string]string `json:"roles"`
	WaitingFor string            `json:"waiting_for,omitempty"`
}

func (d *director) health(ctx context.Context) health {
	h := health{OK: true, Version: version, Postgres: "ok", NATS: "ok", Roles: d.roleStatus(), WaitingFor: d.waitingFor}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := d.store.Ping(ctx); err != nil {
		h.OK, h.Postgres = false, "unreachable: "+err.Error()
	}
	if st := d.nats.Status(); st != nats.CONNECTED {
		h.OK, h.NATS = false, st.String()
	}
	for _, s := range h.Roles {
		if s != "running" {
			h.OK = false
		}
	}
	return h
}

// apiRole serves the director's HTTP API on a listener opened before anything started,
// so that an address in use fails the director before it starts Postgres.
type apiRole struct {
	name string // default "api"
	l    net.Listener
	mux  *http.ServeMux
	log  *slog.Logger
	tls  *tls.Config // nil: plain HTTP
	// onShutdown ends long-lived answers (followed task output) when serving stops.
	onShutdown func()
}

func (a *apiRole) Name() string {
	if a.name == "" {
		return "api"
	}
	return a.name
}

func (a *apiRole) Run(ctx context.Context) error {
	if a.tls != nil {
		a.l = tls.NewListener(a.l, a.tls)
	}
	srv := &http.Server{Handler: a.mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	if a.onShutdown != nil {
		srv.RegisterOnShutdown(a.onShutdown)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(a.l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", a.l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("stop serving %s: %w", a.l.Addr(), err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", a.l.Addr(), err)
	}
	return nil
}

func (d *director) serveHealth(w http.ResponseWriter, r *http.Request) {
	h := d.health(r.Context())
	w.Header().Set("Content-Type", "application/json")
	if !h.OK {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(h)
}

// roleNames lists the roles for the startup log line.
func (d *director) roleNames() []string {
	var ns []string
	for _, r := range d.roles {
		ns = append(ns, r.Name())
	}
	sort.Strings(ns)
	return ns
}

// postgresRole watches the cluster the director started: if the server dies, the
// director stops rather than run on without its state.
type postgresRole struct{ c *cluster.Cluster }

func (postgresRole) Name() string { return "postgres" }

func (r postgresRole) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-r.c.Exited():
		return fmt.Errorf("the PostgreSQL server under %s exited; see %s", r.c.Dir(), filepath.Join(r.c.Dir(), "server.log"))
	}
}
