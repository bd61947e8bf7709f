package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/external"
	"github.com/bosun-gitops/bosun/reconciler"
	"github.com/bosun-gitops/bosun/reconciler/converge"
)

// cpiFlags choose the CPI the director converges through.
type cpiFlags struct {
	name   string
	config string
}

func (f *cpiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.name, "cpi", "local", "the CPI VMs are made with: a built-in one (local, openstack, alicloud) or external:PATH for any BOSH CPI executable")
	fs.StringVar(&f.config, "cpi-config", "", "the built-in CPI's JSON settings file (its --config); an external:PATH CPI reads its own, as a BOSH CPI job's bin/cpi does")
}

// newConverger builds the executor that carries out the reconciler's tasks.
var newConverger = wireConverger

// newDriftCloud returns the CPI the drift check asks has_vm.
var newDriftCloud = func(d *director) (reconciler.Cloud, error) {
	c, err := d.directorCPI()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// directorCPI builds the director's CPI once. The local CPI keeps its VMs under the data
// dir, so a --dev director's fleet lives and dies with it.
func (d *director) directorCPI() (cpi.CPI, error) {
	d.cpiOnce.Do(func() { d.cpi, d.cpiErr = d.buildCPI() })
	return d.cpi, d.cpiErr
}

func (d *director) buildCPI() (cpi.CPI, error) {
	log := d.log.With("component", "cpi")
	name := d.cpiFlags.name
	if path, ok := strings.CutPrefix(name, "external:"); ok {
		// As BOSH's director runs a CPI job's bin/cpi: no arguments, the executable knows
		// its own config.
		if d.cpiFlags.config != "" {
			return nil, usageError("--cpi-config is for built-in CPIs; an external CPI (%s) reads its own config", path)
		}
		if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return nil, usageError("--cpi %s: not an executable file", name)
		}
		return external.New(external.Config{Name: name, Path: path, DirectorUUID: "bosun"}, log)
	}
	b, ok := builtinCPIs[name]
	if !ok {
		return nil, usageError("--cpi %q: no such CPI (there are: %s)", name, cpiNames())
	}
	fs := flag.NewFlagSet("cpi "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	build := b.flags(fs)
	var args []string
	if d.cpiFlags.config != "" {
		args = append(args, "--config", d.cpiFlags.config)
	}
	if name == "local" {
		agent, err := d.localAgent()
		if err != nil {
			return nil, err
		}
		args = append(args, "--data-dir", filepath.Join(d.dataDir, "cpi-local"), "--agent", agent)
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("--cpi %s: %w", name, err)
	}
	return build(log)
}

// localAgent is the executable local VMs run: bosun-agent next to bosun (or on PATH),
// through a small script that hands it this machine's Go build cache. The local CPI gives
// agents a bare environment, and a release that compiles Go (the demo's does) would
// otherwise rebuild the standard library on every first deploy.
func (d *director) localAgent() (string, error) {
	agent := defaultAgentPath()
	if _, err := os.Stat(agent); err != nil {
		if p, lerr := exec.LookPath("bosun-agent"); lerr == nil {
			agent = p
		} else {
			return "", fmt.Errorf("the local CPI needs the bosun-agent binary next to bosun or on PATH (`make build` puts both in bin/): %w", err)
		}
	}
	gocache := os.Getenv("GOCACHE")
	if gocache == "" {
		if out, err := exec.Command("go", "env", "GOCACHE").Output(); err == nil {
			gocache = strings.TrimSpace(string(out))
		}
	}
	if gocache == "" {
		return agent, nil
	}
	script := filepath.Join(d.dataDir, "bosun-agent.sh")
	body := fmt.Sprintf("#!/bin/sh\n# Written by bosun director: local VMs share the director's Go build cache.\nexport GOCACHE=%q\nexec %q \"$@\"\n", gocache, agent)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		return "", fmt.Errorf("write local agent wrapper: %w", err)
	}
	return script, nil
}

// blobDir is the local blobstore release blobs, compiled packages and rendered templates
// are kept in; agents on this machine read and write it directly.
func (d *director) blobDir() string { return filepath.Join(d.dataDir, "blobs") }

// wireConverger builds the converge executor over the director's CPI, its agents (over
// NATS), the store and the blobstore the reconciler puts release blobs in.
func wireConverger(d *director, blobs blobstore.Store) (reconciler.Converger, error) {
	c, err := d.directorCPI()
	if err != nil {
		return nil, err
	}
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	agents, err := protocol.NewClient(bus.Conn{NC: d.nats}, "director-"+hex.EncodeToString(raw[:]), protocol.ClientOptions{PollInterval: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	if d.api.Logs == nil {
		lf := agentLogFetcher{agents: agents, blobs: blobs, log: d.log.With("component", "logs")}
		if s := d.urlSigner(); s != nil {
			lf.signer = s
		}
		d.api.Logs = lf
	}
	exec, err := converge.New(converge.Config{
		CPI: c, CPIName: d.cpiFlags.name, Agents: agents, Store: d.store, Blobs: blobs,
		Signer:   d.urlSigner(),
		Log:      d.log.With("component", "converge"),
		Settings: d.agentSettings,
	})
	if err != nil {
		return nil, err
	}
	// The executor also offers Recover, which setupReconciler runs as a role before any
	// task: a resumed task finds the cloud as the state says.
	return exec, nil
}

// agentSettings are the settings a new VM's agent boots with (converge adds its id and
// networks): NATS credentials of its own and the blobstore it may use.
func (d *director) agentSettings(agentID string) (cpi.AgentSettings, error) {
	mbus := d.natsURL
	if d.bus != nil {
		mbus = d.bus.AgentURL(agentID)
	}
	return cpi.AgentSettings{
		Mbus:      mbus,
		Blobstore: d.agentBlobstore(),
		// The manifest's watch times are the director's test of a started job; the
		// agent only needs to see a process survive its first second (its own default
		// of 5 s would add 4 s to every instance of every rollout).
		Env: json.RawMessage(`{"bosun":{"stable_after":"1s"}}`),
	}, nil
}
