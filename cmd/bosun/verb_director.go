package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/bosun-gitops/bosun/state/postgres/cluster"
	"github.com/bosun-gitops/bosun/state/postgres/worker"
	"github.com/nats-io/nats.go"
)

func init() {
	register(&command{name: "director", summary: "run the director: task workers, API and (with --dev) its own Postgres and NATS", run: runDirector})
}

// defaultDataDir is where the director keeps its state when --data-dir is not given. Root
// gets a system path: Postgres runs as the postgres user, who cannot enter /root.
func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/bosun"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "bosun")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "bosun")
	}
	return ".bosun"
}

type directorFlags struct {
	dev         bool
	dataDir     string
	listen      string
	databaseURL string
	natsURL     string
	natsListen  string
	logFormat   string
	workers     int
	repo        string
	grace       time.Duration
	apiConfig   string
	health      healthFlags
	rec         reconcilerFlags
	cpi         cpiFlags
	blobstore   blobstoreFlags
}

func runDirector(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "director", "")
	var f directorFlags
	fs.BoolVar(&f.dev, "dev", false, "development mode: run a private PostgreSQL cluster under --data-dir when --database-url is not given")
	fs.StringVar(&f.dataDir, "data-dir", defaultDataDir(), "where the director keeps its state: the NATS secret and, with --dev, its Postgres cluster")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:25555", "address of the director's HTTP API")
	fs.StringVar(&f.databaseURL, "database-url", "", "PostgreSQL URL (postgres://user:pass@host:port/db); without it --dev runs its own cluster")
	fs.StringVar(&f.natsURL, "nats-url", "", "external NATS server URL; without it the director embeds one on --nats-listen")
	fs.StringVar(&f.natsListen, "nats-listen", "127.0.0.1:4222", "address of the embedded NATS server")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.IntVar(&f.workers, "workers", 3, "how many tasks this director runs at once")
	fs.StringVar(&f.repo, "repo", "", "manifest repository the reconciler watches: a local path or a git URL")
	fs.StringVar(&f.apiConfig, "api-config", "", "YAML file of the API's tokens (by hash), teams and TLS certificate; see `bosun new-token`")
	f.rec.register(fs)
	f.cpi.register(fs)
	f.blobstore.register(fs)
	fs.DurationVar(&f.grace, "shutdown-grace", 10*time.Second, "how long running tasks may finish after SIGTERM before they are released to another director")
	f.health.register(fs)
	// newFlagSet's usage prints the defaults to the output parseFlags silenced, and runs
	// twice on --help; print them once, to stdout.
	printed := false
	fs.Usage = func() {
		if printed {
			return
		}
		printed = true
		fmt.Fprintf(c.stdout, "Usage: bosun director [flags]\n\n%s\n\nFlags:\n", commands["director"].summary)
		fs.SetOutput(c.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError("unexpected argument %q (see `bosun director --help`)", rest[0])
	}
	log, err := newLogger(c.stderr, f.logFormat)
	if err != nil {
		return err
	}
	if f.workers < 1 {
		return usageError("--workers %d: at least one worker is needed", f.workers)
	}
	if _, err := f.health.config(); err != nil {
		return err
	}
	if f.databaseURL == "" && !f.dev {
		return usageError("no database: give --database-url, or --dev to run a private PostgreSQL under --data-dir")
	}
	if err := checkRepo(f.repo); err != nil {
		return usageError("%v", err)
	}
	if err := f.rec.check(f.repo, f.rec.branch); err != nil {
		return err
	}
	if err := checkAPIConfig(f); err != nil {
		return err
	}
	if err := f.blobstore.check(); err != nil {
		return err
	}
	err = startDirector(ctx, f, log)
	if err != nil && ctx.Err() != nil {
		// A signal during startup is a stop, not a failure: everything started is undone.
		log.Info("stopped during startup", "reason", err)
		return nil
	}
	return err
}

func newLogger(w io.Writer, format string) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, usageError("--log-format %q: want text or json", format)
}

// checkRepo accepts a git URL or an existing local directory.
func checkRepo(repo string) error {
	switch {
	case repo == "":
		return nil
	case strings.Contains(repo, "://"):
		u, err := url.Parse(repo)
		if err != nil || u.Host == "" && u.Scheme != "file" {
			return fmt.Errorf("--repo %q is not a URL git can fetch", redactURL(repo))
		}
		return nil
	case strings.HasPrefix(repo, "git@"):
		return nil
	}
	fi, err := os.Stat(repo)
	if err != nil {
		return fmt.Errorf("--repo %s: %w", repo, errors.Unwrap(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("--repo %s is a file; want a repository directory or a git URL", repo)
	}
	return nil
}

// redactURL hides a password in u, for messages.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable URL)"
	}
	return p.Redacted()
}

// startDirector brings the director up in order — API address, data dir, Postgres, NATS —
// runs its roles until ctx ends, then takes everything down in reverse. A failure at any
// step undoes the steps before it, so nothing is left running.
func startDirector(ctx context.Context, f directorFlags, log *slog.Logger) (err error) {
	var undo []func()
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}()

	l, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.listen, unwrapSyscall(err))
	}
	undo = append(undo, func() { l.Close() })
	var blobL net.Listener
	if f.cpi.name != "local" {
		// Agents on cloud VMs cannot read the data dir: they fetch blobs over HTTP.
		if blobL, err = net.Listen("tcp", f.blobstore.listen); err != nil {
			return fmt.Errorf("listen on %s (--blobstore-listen): %w", f.blobstore.listen, unwrapSyscall(err))
		}
		undo = append(undo, func() { blobL.Close() })
	}

	dataDir, err := prepareDataDir(f.dataDir)
	if err != nil {
		return err
	}

	dbURL := f.databaseURL
	var ownPostgres *cluster.Cluster
	if dbURL == "" {
		// The cluster runs as the postgres user when we are root: it must be able to pass
		// through the data dir (not list it; the NATS secret stays 0600).
		if fi, err := os.Stat(dataDir); err == nil && os.Geteuid() == 0 && fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(dataDir, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("data dir %s: %w", dataDir, err)
			}
		}
		pg, err := cluster.Start(ctx, cluster.Config{Dir: filepath.Join(dataDir, "postgres"), Log: log.With("component", "postgres")})
		if err != nil {
			return err
		}
		undo = append(undo, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := pg.Stop(sctx); err != nil {
				log.Error("stop postgres", "err", err)
			}
		})
		dbURL = pg.URL("postgres")
		ownPostgres = pg
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	store, err := postgres.Open(octx, dbURL, log.With("component", "store"))
	cancel()
	if err != nil {
		return err
	}
	undo = append(undo, store.Close)

	natsURL := f.natsURL
	natsAddr := ""
	var embedded *bus.Server
	if natsURL == "" {
		secret, err := natsSecret(dataDir)
		if err != nil {
			return err
		}
		srv, err := bus.Start(ctx, bus.Config{Listen: f.natsListen, Secret: secret}, log)
		if err != nil {
			return fmt.Errorf("embedded NATS on %s: %w", f.natsListen, unwrapSyscall(err))
		}
		undo = append(undo, srv.Shutdown)
		natsURL, natsAddr, embedded = srv.DirectorURL(), srv.Addr(), srv
	}
	nc, err := nats.Connect(natsURL, nats.Name("bosun-director"), nats.MaxReconnects(-1), nats.Timeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", redactURL(natsURL), err)
	}
	undo = append(undo, nc.Close)
	if natsAddr == "" {
		natsAddr = nc.ConnectedAddr()
	}

	host, _ := os.Hostname()
	d := &director{
		log:      log,
		dataDir:  dataDir,
		repo:     f.repo,
		dev:      f.dev,
		rec:      f.rec,
		cpiFlags: f.cpi,
		natsURL:  f.natsURL,
		store:    store,
		nats:     nc,
		bus:      embedded,
		mux:      http.NewServeMux(),
		handlers: map[string]worker.Handler{},
		status:   map[string]string{},
		waitingFor: "a manifest repository: give --repo DIR|URL (bosun init DIR makes one) and the " +
			"reconciler converges what it holds; until then the director serves the API and runs queued tasks",
	}
	d.mux.HandleFunc("GET /healthz", d.serveHealth)
	if blobL != nil {
		// Before the plugins: converge, which they wire, signs with what this sets up.
		if err := serveBlobstore(d, f.blobstore, blobL); err != nil {
			return err
		}
	}
	if err := startHealth(d, f.health); err != nil {
		return err
	}
	for _, plug := range directorPlugins {
		if err := plug(d); err != nil {
			return err
		}
	}
	// Glue runs after every plugin: it connects roles the plugins made.
	if err := glueRoles(d); err != nil {
		return err
	}
	if err := setupAPI(ctx, d, f, l.Addr()); err != nil {
		return err
	}
	if ownPostgres != nil {
		d.addRole(postgresRole{ownPostgres})
	}
	d.addRole(&apiRole{l: l, mux: d.mux, log: log.With("component", "api"), tls: d.api.tls, onShutdown: d.api.stopStreams})
	d.addRole(worker.New(store, d.handlers, worker.Config{
		Owner:   fmt.Sprintf("%s:%d", host, os.Getpid()),
		Workers: f.workers,
		Grace:   f.grace,
	}, log.With("component", "workers")))

	scheme := "http://"
	if d.api.tls != nil {
		scheme = "https://"
	}
	log.Info("director ready", "api", scheme+l.Addr().String(), "nats", natsAddr, "roles", d.roleNames(), "data_dir", dataDir)
	if d.waitingFor != "" {
		log.Info("waiting for "+d.waitingFor, "repo", f.repo)
	}
	err = d.run(ctx)
	log.Info("director stopping")
	return err
}

// prepareDataDir creates the data dir and checks it is writable, so a bad path fails
// before anything starts.
func prepareDataDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("data dir %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", fmt.Errorf("data dir %s: %w", abs, errors.Unwrap(err))
	}
	probe, err := os.CreateTemp(abs, ".probe-")
	if err != nil {
		return "", fmt.Errorf("data dir %s is not writable: %w", abs, errors.Unwrap(err))
	}
	probe.Close()
	os.Remove(probe.Name())
	return abs, nil
}

// natsSecret loads the secret agent credentials derive from, creating it (0600) on first
// start: agents keep their credentials across director restarts.
func natsSecret(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, "nats.secret")
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < 32 {
			return nil, fmt.Errorf("NATS secret %s is shorter than 32 characters; remove it to have a new one made (agents then need new credentials)", path)
		}
		return []byte(s), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read NATS secret: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("make NATS secret: %w", err)
	}
	s := hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write NATS secret: %w", err)
	}
	return []byte(s), nil
}

// unwrapSyscall drops net's "listen tcp 127.0.0.1:1:" prefix when the caller already
// named the address, keeping the reason ("address already in use").
func unwrapSyscall(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
