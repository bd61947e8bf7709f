package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/state"
)

// apiWiring holds the API's optional parts. Other director plugins set them from their
// own plugin function (d.api.Reconciler = r, d.api.Checker = …); setupAPI, which runs
// after every plugin, builds the API from what is there. A part left nil makes its
// endpoints answer 501 saying what is missing.
type apiWiring struct {
	Reconciler api.Reconciler
	Prober     api.InstanceProber
	Logs       api.LogFetcher
	Checker    api.CloudChecker
	Sources    api.SourceLister
	Observed   api.ObservedReader
	Planner    api.Planner
	// Metrics are other roles' /metrics collectors.
	Metrics []func(ctx context.Context, m *api.MetricsWriter)

	// tls is what setupAPI loaded from --api-config; the API role serves with it.
	tls *tls.Config
	// stopStreams ends followed task outputs when the API role stops serving.
	stopStreams func()
}

// setupAPI mounts the API on the director's mux (its /healthz stays the director's own)
// with the tokens and certificate of --api-config, and with --dev a token of its own
// that it also writes into the local user's CLI config, so verbs work at once.
func setupAPI(ctx context.Context, d *director, f directorFlags, addr net.Addr) error {
	var cfg api.Config
	if f.apiConfig != "" {
		var err error
		if cfg, err = api.LoadConfig(f.apiConfig); err != nil {
			return err
		}
	}
	tlsCfg, err := cfg.ServerTLS()
	if err != nil {
		return err
	}
	d.api.tls = tlsCfg
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	if f.dev {
		tok, err := devToken(d.dataDir)
		if err != nil {
			return err
		}
		cfg.Tokens = append(cfg.Tokens, api.TokenConfig{Name: "dev", Hash: api.HashToken(tok), Scopes: []string{api.ScopeAdmin}})
		url := scheme + "://" + dialable(addr)
		path, err := loginDev(url, tok, cfg.TLS.Cert)
		if err != nil {
			// The director runs without the convenience; the operator can log in by hand.
			d.log.Warn("could not write the CLI config for the dev token; `bosun login` with the token in the data dir instead", "err", err)
		} else {
			d.log.Info("logged the local user in to this director as dev (bosun.admin)", "cli_config", path, "token_file", filepath.Join(d.dataDir, devTokenFile))
		}
	}
	if len(cfg.Tokens) == 0 {
		d.log.Warn("no API tokens configured: every API call but /healthz, /info and /metrics is refused; give --api-config (see `bosun new-token`)")
	}
	auth, err := api.NewAuth(cfg)
	if err != nil {
		return fmt.Errorf("API config: %w", err)
	}
	if d.api.Prober == nil && d.nats != nil {
		agents, err := newAPIAgentClient(d)
		if err != nil {
			return err
		}
		d.api.Prober = agentProber{agents}
	}
	host, _ := os.Hostname()
	srv, err := api.New(api.Options{
		Store: d.store, Auth: auth, Log: d.log.With("component", "api"),
		Reconciler: d.api.Reconciler, Prober: d.api.Prober, Logs: d.api.Logs, Checker: d.api.Checker, Sources: d.api.Sources, Observed: d.api.Observed, Planner: d.api.Planner,
		Metrics: d.api.Metrics, Name: host, Version: version,
	})
	if err != nil {
		return err
	}
	d.mux.Handle("/", srv.Handler())
	d.api.stopStreams = srv.StopStreams
	return nil
}

// checkAPIConfig loads --api-config and its certificate before anything starts, so that
// a mistake in it fails the director at once.
func checkAPIConfig(f directorFlags) error {
	if f.apiConfig == "" {
		return nil
	}
	cfg, err := api.LoadConfig(f.apiConfig)
	if err != nil {
		return err
	}
	_, err = cfg.ServerTLS()
	return err
}

// dialable turns a listen address into one a client on this machine can dial.
func dialable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

const devTokenFile = "api-dev-token"

// devToken is the --dev director's admin token, made once and kept (0600) under the
// data dir so that a restarted dev director still accepts the CLI's stored token.
func devToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, devTokenFile)
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read the dev token: %w", err)
	}
	tok, err := api.NewToken()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write the dev token: %w", err)
	}
	return tok, nil
}

// loginDev stores the dev director as environment "dev" and makes it current.
func loginDev(url, token, certFile string) (string, error) {
	cfg, path, err := loadUserConfig()
	if err != nil {
		return "", err
	}
	env := userEnvironment{URL: url, Token: token}
	if certFile != "" {
		b, err := os.ReadFile(certFile)
		if err != nil {
			return "", err
		}
		env.CACert = string(b)
	}
	cfg.Environments["dev"] = env
	cfg.Current = "dev"
	return path, saveUserConfig(path, cfg)
}

// newAPIAgentClient gives the API its own agent client, under a director id of its
// own, so that probing agents never waits behind a rollout's calls.
func newAPIAgentClient(d *director) (*protocol.Client, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	c, err := protocol.NewClient(bus.Conn{NC: d.nats}, "api-"+hex.EncodeToString(b[:]), protocol.ClientOptions{
		Timeouts:        map[string]time.Duration{protocol.MethodGetState: 5 * time.Second},
		GetStateRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("API agent client: %w", err)
	}
	return c, nil
}

// agentStater is the part of protocol.Client the prober needs.
type agentStater interface {
	GetState(ctx context.Context, agentID string, full bool) (protocol.State, error)
}

// agentProber answers instances --ps and vms --vitals with the agent's get_state.
type agentProber struct{ agents agentStater }

func (p agentProber) Probe(ctx context.Context, inst state.Instance) (api.Probe, error) {
	st, err := p.agents.GetState(ctx, inst.AgentID, true)
	if err != nil {
		return api.Probe{}, err
	}
	return probeOf(st), nil
}

func probeOf(st protocol.State) api.Probe {
	pr := api.Probe{JobState: st.JobState}
	for _, p := range st.Processes {
		ap := api.Process{Name: p.Name, Job: p.Job, State: p.State, PID: p.PID}
		if p.Uptime != nil {
			ap.UptimeSecs = p.Uptime.Secs
		}
		if p.Mem != nil {
			ap.MemKB = p.Mem.KB
		}
		if p.CPU != nil {
			ap.CPUTotal = p.CPU.Total
		}
		pr.Processes = append(pr.Processes, ap)
	}
	if v := st.Vitals; v != nil {
		av := &api.Vitals{Load: v.Load, CPUUser: v.CPU.User, CPUSys: v.CPU.Sys, CPUWait: v.CPU.Wait,
			MemPercent: v.Mem.Percent, MemKB: v.Mem.KB, SwapPct: v.Swap.Percent, UptimeSecs: v.Uptime.Secs}
		for name, dv := range v.Disk {
			if av.Disks == nil {
				av.Disks = map[string]string{}
			}
			av.Disks[name] = dv.Percent
		}
		pr.Vitals = av
	}
	return pr
}

// agentLogFetcher fetches job logs the BOSH way: the agent tars them into the
// blobstore, the director streams the blob to the caller and deletes it. The lead wires
// it where the director has a blobstore: d.api.Logs = agentLogFetcher{agents, blobs, log}.
type agentLogFetcher struct {
	agents interface {
		FetchLogs(ctx context.Context, agentID, logType string, filters []string) (protocol.BlobResult, error)
		FetchLogsWithSignedURL(ctx context.Context, agentID string, req protocol.FetchLogsWithSignedURL) (protocol.BlobResult, error)
	}
	blobs blobstore.Store
	// signer, when set, gives the agent a signed URL to upload the bundle to: agents of a
	// CPI other than local have no blobstore of their own (director_blobstore.go).
	signer interface{ SignPut(blobstore.Digest) string }
	log    *slog.Logger
}

func (f agentLogFetcher) FetchLogs(ctx context.Context, inst state.Instance, w io.Writer) error {
	var res protocol.BlobResult
	var err error
	if f.signer != nil {
		res, err = f.agents.FetchLogsWithSignedURL(ctx, inst.AgentID, protocol.FetchLogsWithSignedURL{SignedURL: f.signer.SignPut(""), LogType: "job"})
	} else {
		res, err = f.agents.FetchLogs(ctx, inst.AgentID, "job", nil)
	}
	if err != nil {
		return fmt.Errorf("agent %s: fetch_logs: %w", inst.AgentID, err)
	}
	// The agent names blobs by their hex digest, as BOSH's blobstore ids look.
	id := res.BlobstoreID
	if !strings.HasPrefix(id, "sha256:") {
		id = "sha256:" + id
	}
	dg, err := blobstore.ParseDigest(id)
	if err != nil {
		return fmt.Errorf("agent %s: fetch_logs answered blob %q: %w", inst.AgentID, res.BlobstoreID, err)
	}
	defer func() {
		// The bundle is the operator's copy only; it must not pile up in the blobstore.
		if err := f.blobs.Delete(context.WithoutCancel(ctx), dg); err != nil && f.log != nil {
			f.log.Warn("delete fetched log bundle", "blob", dg, "err", err)
		}
	}()
	rc, err := f.blobs.Get(ctx, dg)
	if err != nil {
		return fmt.Errorf("read log bundle %s: %w", dg, err)
	}
	defer rc.Close()
	if _, err := io.Copy(w, blobstore.VerifyingReader(rc, dg)); err != nil {
		return fmt.Errorf("stream log bundle %s: %w", dg, err)
	}
	return nil
}
