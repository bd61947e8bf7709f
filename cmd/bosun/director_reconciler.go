package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/policy"
	"github.com/bosun-gitops/bosun/reconciler"
	"github.com/bosun-gitops/bosun/reconciler/source"
	"github.com/bosun-gitops/bosun/reconciler/status"
	"github.com/bosun-gitops/bosun/state"
)

// reconcilerFlags are the director's flags for the reconciler role (--repo is the
// director's own).
type reconcilerFlags struct {
	branch        string
	statusBranch  string
	poll          time.Duration
	drift         time.Duration
	varsKeyFile   string
	webhookSecret string
	trustFlags
}

func (f *reconcilerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.branch, "branch", "main", "the branch of --repo the reconciler tracks")
	fs.StringVar(&f.statusBranch, "status-branch", "bosun/status", "the branch of --repo outcomes are committed to")
	fs.DurationVar(&f.poll, "poll-interval", time.Minute, "how often --repo is polled when no fsnotify event or webhook says it moved")
	fs.DurationVar(&f.drift, "drift-interval", time.Minute, "how often VMs are compared with the cloud (has_vm) and agents with what was applied (get_state)")
	fs.StringVar(&f.varsKeyFile, "vars-key-file", "", "file holding the 32-byte key (64 hex digits) that encrypts generated variables; --dev makes one in --data-dir")
	fs.StringVar(&f.webhookSecret, "webhook-secret-file", "", "file holding the HMAC secret of POST /hooks/git (GitHub, GitLab, Gitea, generic); without it webhooks are refused")
	f.trustFlags.register(fs)
}

// newConverger and newDriftCloud are set in director_converge.go; tests may swap them.

func init() { directorPlugins = append(directorPlugins, setupReconciler) }

// setupReconciler adds the reconciler role and its task handlers when --repo is given.
func setupReconciler(d *director) error {
	if d.repo == "" {
		return nil
	}
	f := d.rec
	log := d.log.With("component", "reconciler")
	repo := d.repo
	if abs, err := filepath.Abs(repo); err == nil {
		if _, err := os.Stat(abs); err == nil {
			repo = abs
		}
	}
	remote := source.Remote{URL: repo}
	src, err := source.Open(source.Config{Remote: remote, Branch: f.branch, CacheDir: filepath.Join(d.dataDir, "source"), Logger: log})
	if err != nil {
		return fmt.Errorf("reconciler: %w", err)
	}
	watcher := source.NewWatcher(src, source.WatchOptions{Interval: f.poll})
	if f.webhookSecret != "" {
		secret, err := os.ReadFile(f.webhookSecret)
		if err != nil {
			return fmt.Errorf("reconciler: webhook secret: %w", err)
		}
		d.mux.Handle("POST /hooks/git", watcher.WebhookHandler(string(trimSpace(secret))))
	}
	// Free text in outcomes (errors, log tails) loses every variable value the reconciler
	// rendered; rec is set below, before anything is written.
	var rec *reconciler.Reconciler
	redact := func(s string) string {
		if rec == nil {
			return s
		}
		return rec.Redact(s)
	}
	sw, err := status.Open(status.Config{Remote: remote, Branch: f.statusBranch, CacheDir: filepath.Join(d.dataDir, "status"), Logger: log, Redact: redact})
	if err != nil {
		return fmt.Errorf("reconciler: %w", err)
	}
	blobs, err := local.Open(d.blobDir())
	if err != nil {
		return fmt.Errorf("reconciler: blobstore: %w", err)
	}
	var key []byte
	switch {
	case f.varsKeyFile != "":
		key, err = reconciler.LoadKeyFile(f.varsKeyFile)
	case d.dev:
		key, err = reconciler.EnsureKeyFile(filepath.Join(d.dataDir, "vars.key"))
	default:
		err = errors.New("--vars-key-file is required with --repo (it encrypts generated variables); --dev makes one in --data-dir")
	}
	if err != nil {
		return usageError("%v", err)
	}
	vault, err := reconciler.NewVault(d.store, key)
	if err != nil {
		return err
	}
	conv, err := newConverger(d, blobs)
	if err != nil {
		return fmt.Errorf("reconciler: converge: %w", err)
	}
	cloud, err := newDriftCloud(d)
	if err != nil {
		return fmt.Errorf("reconciler: drift check: %w", err)
	}
	// What the reconciler trusts comes from these flags only, never from the repository.
	if err := f.check(d.repo, f.branch); err != nil {
		return err
	}
	gate := policy.NewGate(nil, reconciler.PoliciesDir)
	if f.verifier != nil {
		gate.VerifySignatures(f.verifier, f.requireSigned)
	}
	agents, err := newDriftAgents(d)
	if err != nil {
		return fmt.Errorf("reconciler: drift check: %w", err)
	}
	cfg := reconciler.Config{
		Source: src, Watcher: watcher, Store: d.store, Gate: gate,
		Converger: conv, Status: sw, StatusBranch: sw.Branch(), Blobs: blobs, DriftInterval: f.drift, DriftMeltdown: d.meltdown, Logger: log, Suspensions: d.store, OnAccepted: d.applyResurrection,
		Renderer: &reconciler.Renderer{Vars: vault, Releases: &reconciler.Releases{CacheDir: filepath.Join(d.dataDir, "cache")}},
	}
	if cloud != nil {
		cfg.Cloud = cloud
	}
	if f.policyRepo != "" {
		ps, err := f.policySource(d)
		if err != nil {
			return err
		}
		cfg.PolicySource = ps
	}
	if agents != nil {
		cfg.Agents = agents
	}
	r, err := reconciler.New(cfg)
	if err != nil {
		return err
	}
	rec = r
	handlers := r.Handlers()
	if rec, ok := conv.(recoverer); ok {
		// Tasks wait until converge has settled what a killed director left half done.
		ready := make(chan struct{})
		d.addRole(&recoveryRole{rec: rec, ready: ready, log: log})
		for typ, h := range handlers {
			handlers[typ] = func(ctx context.Context, t state.Task, emit func(state.TaskEvent) error) (string, error) {
				select {
				case <-ready:
				case <-ctx.Done():
					return "", ctx.Err()
				}
				return h(ctx, t, emit)
			}
		}
	}
	for typ, h := range handlers {
		d.handleTask(typ, h)
	}
	d.addRole(r)
	d.reconciler = r
	d.waitingFor = ""
	return nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// recoverer is what converge.Executor offers besides running tasks: settle the unfinished
// write-ahead intents of a director killed mid-task (adopt or delete what the cloud holds).
type recoverer interface {
	Recover(ctx context.Context) error
}

// recoveryRole runs converge's recovery once at start, then lets tasks run.
type recoveryRole struct {
	rec   recoverer
	ready chan struct{}
	log   interface {
		Info(msg string, args ...any)
	}
}

func (r *recoveryRole) Name() string { return "converge-recovery" }

func (r *recoveryRole) Run(ctx context.Context) error {
	start := time.Now()
	if err := r.rec.Recover(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("recover unfinished cloud calls: %w", err)
	}
	r.log.Info("converge recovered unfinished cloud calls", "took", time.Since(start).Round(time.Millisecond))
	close(r.ready)
	<-ctx.Done()
	return nil
}
