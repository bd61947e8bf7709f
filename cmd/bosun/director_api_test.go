package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/state"
	"github.com/google/go-cmp/cmp"
)

func TestDevTokenKeptAndLoginWritten(t *testing.T) {
	dir := t.TempDir()
	tok, err := devToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := devToken(dir)
	if err != nil || again != tok || !strings.HasPrefix(tok, "bosun_") {
		t.Errorf("second dev token %q, %v; want the first %q", again, err, tok)
	}
	fi, _ := os.Stat(filepath.Join(dir, devTokenFile))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %o", fi.Mode().Perm())
	}
	cfgPath := filepath.Join(t.TempDir(), "sub", "config.json")
	t.Setenv("BOSUN_CONFIG", cfgPath)
	// An existing login is kept beside the dev one.
	if err := saveUserConfig(cfgPath, userConfig{Current: "prod", Environments: map[string]userEnvironment{"prod": {URL: "https://prod:25555", Token: "p"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := loginDev("http://127.0.0.1:25555", tok, ""); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := loadUserConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := userConfig{Current: "dev", Environments: map[string]userEnvironment{
		"prod": {URL: "https://prod:25555", Token: "p"},
		"dev":  {URL: "http://127.0.0.1:25555", Token: tok},
	}}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	fi, _ = os.Stat(cfgPath)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %o", fi.Mode().Perm())
	}
}

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{"0.0.0.0:25555": "127.0.0.1:25555", "[::]:8080": "127.0.0.1:8080", "10.0.0.5:1": "10.0.0.5:1"} {
		addr, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := dialable(addr); got != want {
			t.Errorf("dialable(%s) = %s, want %s", in, got, want)
		}
	}
}

type fakeStater struct {
	st  protocol.State
	err error
}

func (f fakeStater) GetState(ctx context.Context, agentID string, full bool) (protocol.State, error) {
	return f.st, f.err
}

func TestAgentProber(t *testing.T) {
	st := protocol.State{JobState: "failing", Processes: []protocol.Process{
		{Name: "nginx", Job: "web", State: "running", PID: 7, Uptime: &protocol.Uptime{Secs: 60}, Mem: &protocol.ProcMem{KB: 2048}, CPU: &protocol.ProcCPU{Total: 1.5}},
		{Name: "worker", State: "failing"},
	}, Vitals: &protocol.Vitals{Load: []string{"1"}, CPU: protocol.CPUVitals{User: "2"}, Mem: protocol.MemVitals{Percent: "30", KB: "100"},
		Uptime: protocol.Uptime{Secs: 99}, Disk: map[string]protocol.DiskVital{"ephemeral": {Percent: "5"}}}}
	got, err := agentProber{fakeStater{st: st}}.Probe(context.Background(), state.Instance{AgentID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	want := api.Probe{JobState: "failing", Processes: []api.Process{
		{Name: "nginx", Job: "web", State: "running", PID: 7, UptimeSecs: 60, MemKB: 2048, CPUTotal: 1.5},
		{Name: "worker", State: "failing"},
	}, Vitals: &api.Vitals{Load: []string{"1"}, CPUUser: "2", MemPercent: "30", MemKB: "100", UptimeSecs: 99, Disks: map[string]string{"ephemeral": "5"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("probe (-want +got):\n%s", diff)
	}
	if _, err := (agentProber{fakeStater{err: protocol.ErrTimeout}}).Probe(context.Background(), state.Instance{}); !errors.Is(err, protocol.ErrTimeout) {
		t.Errorf("timeout: %v", err)
	}
}

// fakeLogAgent answers fetch_logs, or with signedURL set only fetch_logs_with_signed_url
// naming that URL, as an agent without a blobstore of its own would.
type fakeLogAgent struct{ id, signedURL string }

func (f fakeLogAgent) FetchLogs(ctx context.Context, agentID, logType string, filters []string) (protocol.BlobResult, error) {
	if f.signedURL != "" {
		return protocol.BlobResult{}, errors.New("no signed upload URL given and the agent has no blobstore configured")
	}
	if logType != "job" {
		return protocol.BlobResult{}, errors.New("want job logs")
	}
	return protocol.BlobResult{BlobstoreID: f.id}, nil
}

func (f fakeLogAgent) FetchLogsWithSignedURL(ctx context.Context, agentID string, req protocol.FetchLogsWithSignedURL) (protocol.BlobResult, error) {
	if f.signedURL == "" || req.SignedURL != f.signedURL || req.LogType != "job" {
		return protocol.BlobResult{}, fmt.Errorf("fetch_logs_with_signed_url %+v; want job logs to the signed URL", req)
	}
	return protocol.BlobResult{BlobstoreID: f.id, SHA1: "sha256:" + f.id}, nil
}

type fakePutSigner string

func (s fakePutSigner) SignPut(d blobstore.Digest) string { return string(s) + string(d) }

func TestAgentLogFetcher(t *testing.T) {
	blobs, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dg, err := blobs.Put(ctx, strings.NewReader("tarball"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	f := agentLogFetcher{agents: fakeLogAgent{id: dg.Hex()}, blobs: blobs}
	if err := f.FetchLogs(ctx, state.Instance{AgentID: "a"}, &buf); err != nil || buf.String() != "tarball" {
		t.Fatalf("logs = %q, %v", buf.String(), err)
	}
	if ok, _ := blobs.Exists(ctx, dg); ok {
		t.Error("the log bundle stayed in the blobstore")
	}
	if err := (agentLogFetcher{agents: fakeLogAgent{id: "nonsense"}, blobs: blobs}).FetchLogs(ctx, state.Instance{AgentID: "a"}, &buf); err == nil {
		t.Error("a bad blob id was accepted")
	}

	// A cloud agent has no blobstore: it uploads the bundle to a signed URL.
	dg, err = blobs.Put(ctx, strings.NewReader("cloud tarball"))
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	const url = "http://director:25250/blobs/any?sig=x"
	f = agentLogFetcher{agents: fakeLogAgent{id: dg.Hex(), signedURL: url}, blobs: blobs, signer: fakePutSigner(url)}
	if err := f.FetchLogs(ctx, state.Instance{AgentID: "a"}, &buf); err != nil || buf.String() != "cloud tarball" {
		t.Fatalf("logs through a signed URL = %q, %v", buf.String(), err)
	}
}
