package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/state"
	"github.com/nats-io/nats.go"
)

// TestAPIAdaptersAgainstARealAgent runs the real agent binary on the embedded NATS and
// asks it through the API's adapters: get_state for `instances --ps`, fetch_logs and the
// blobstore for `bosun logs`.
func TestAPIAdaptersAgainstARealAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "bosun-agent")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../bosun-agent").CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v\n%s", err, out)
	}
	srv, err := bus.Start(ctx, bus.Config{Listen: "127.0.0.1:0", Secret: []byte("api-adapter-test-secret-0123456789")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.DirectorURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// A local VM's agent shares the director's blobs directory; a cloud VM's has none and
	// uploads the bundle to the director's HTTP blobstore through a signed URL.
	t.Run("local blobstore", func(t *testing.T) { agentAdapters(ctx, t, bin, srv, nc, false) })
	t.Run("signed URLs", func(t *testing.T) { agentAdapters(ctx, t, bin, srv, nc, true) })
}

func agentAdapters(ctx context.Context, t *testing.T, bin string, srv *bus.Server, nc *nats.Conn, viaHTTP bool) {
	d := &director{nats: nc, log: slog.New(slog.DiscardHandler), dataDir: t.TempDir(), status: map[string]string{}}
	storeDir := d.blobDir()
	blobs, err := local.Open(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	id := "agent-api-test"
	var blobSettings any = map[string]any{"provider": "local", "options": map[string]any{"blobstore_path": storeDir}}
	if viaHTTP {
		id += "-http"
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := serveBlobstore(d, blobstoreFlags{}, l); err != nil {
			t.Fatal(err)
		}
		// The settings a cloud agent gets: the director's CA, which its HTTPS
		// blobstore's certificate chains to.
		blobSettings = d.agentBlobstore()
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- d.run(rctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("blobstore role: %v", err)
			}
		})
	}

	root := t.TempDir()
	settings := map[string]any{
		"agent_id":  id,
		"mbus":      srv.AgentURL(id),
		"blobstore": blobSettings,
		"networks":  map[string]any{"default": map[string]any{"type": "manual", "ip": "127.0.0.1", "netmask": "255.0.0.0", "default": []string{"dns", "gateway"}}},
		"env":       map[string]any{"bosun": map[string]any{"heartbeat_interval": "1s"}},
		"vm":        map[string]any{"name": "vm-" + id},
	}
	path := filepath.Join(root, "var", "vcap", "bosh", "settings.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(settings)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// A job log for fetch_logs to find.
	logDir := filepath.Join(root, "var", "vcap", "sys", "log", "web")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(logDir, "web.stdout.log"), []byte("listening on :8080\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--settings", path, "--root", root)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Error("agent did not exit on SIGTERM")
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("agent stderr:\n%s", stderr.String())
		}
	})

	agents, err := newAPIAgentClient(d)
	if err != nil {
		t.Fatal(err)
	}
	defer agents.Close()
	inst := state.Instance{Deployment: "web", Group: "web", AgentID: id, VMCID: "vm-" + id}
	prober := agentProber{agents}
	deadline := time.Now().Add(time.Minute)
	for {
		pr, err := prober.Probe(ctx, inst)
		if err == nil {
			if pr.JobState == "" || pr.Vitals == nil || len(pr.Vitals.Load) != 3 {
				t.Errorf("probe = %+v", pr)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent never answered get_state: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	var tgz bytes.Buffer
	lf := agentLogFetcher{agents: agents, blobs: blobs, log: d.log}
	if viaHTTP {
		lf.signer = d.blobSigner
	}
	if err := lf.FetchLogs(ctx, inst, &tgz); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&tgz)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	found := ""
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(h.Name) == "web.stdout.log" {
			body, _ := io.ReadAll(tr)
			found = string(body)
		}
	}
	if found != "listening on :8080\n" {
		t.Errorf("web.stdout.log in the bundle = %q", found)
	}
	if entries, _ := os.ReadDir(storeDir); len(entries) > 0 {
		var n int
		_ = filepath.WalkDir(storeDir, func(p string, de os.DirEntry, err error) error {
			if de != nil && !de.IsDir() {
				n++
			}
			return nil
		})
		if n > 0 {
			t.Errorf("%d blobs left in the blobstore after the logs were fetched", n)
		}
	}
}
