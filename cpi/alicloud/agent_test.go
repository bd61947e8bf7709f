package alicloud_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/alicloud/fakealicloud"
)

// TestInstanceBootsLocalAgent is the hook a whole deploy against the fake cloud uses:
// each instance the CPI starts runs a real bosun-agent from the settings the CPI put
// in its UserData, and the director reaches that agent over NATS; a release stops it.
func TestInstanceBootsLocalAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bosun-agent")
	}
	ctx := context.Background()
	agentBin := filepath.Join(t.TempDir(), "bosun-agent")
	if out, err := exec.Command("go", "build", "-o", agentBin, "github.com/bosun-gitops/bosun/cmd/bosun-agent").CombinedOutput(); err != nil {
		t.Fatalf("build bosun-agent: %v\n%s", err, out)
	}
	srv, err := bus.Start(ctx, bus.Config{Listen: "127.0.0.1:0", Secret: []byte("alicloud-agent-test")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.DirectorURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	client, err := protocol.NewClient(bus.Conn{NC: nc}, "test-director", protocol.ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	e := newEnv(t, fakealicloud.Options{}, nil)
	var mu sync.Mutex
	agents := map[string]*exec.Cmd{}
	stderr := map[string]*bytes.Buffer{}
	root := t.TempDir()
	e.cloud.OnInstanceStart(func(s fakealicloud.Instance, userData []byte) {
		dir := filepath.Join(root, s.ID)
		path := filepath.Join(dir, "var", "vcap", "bosh", "settings.json")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Error(err)
			return
		}
		// The agent reads the UserData as it is: that is the contract under test.
		if err := os.WriteFile(path, userData, 0o600); err != nil {
			t.Error(err)
			return
		}
		cmd := exec.Command(agentBin, "--settings", path, "--root", dir)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		agents[s.ID], stderr[s.ID] = cmd, &buf
		mu.Unlock()
	})
	stop := func(id string) {
		mu.Lock()
		cmd := agents[id]
		delete(agents, id)
		mu.Unlock()
		if cmd == nil {
			return
		}
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("agent of %s did not exit on SIGTERM", id)
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	e.cloud.OnInstanceStop(func(s fakealicloud.Instance) { stop(s.ID) })
	t.Cleanup(func() {
		mu.Lock()
		var ids []string
		for id := range agents {
			ids = append(ids, id)
		}
		mu.Unlock()
		for _, id := range ids {
			stop(id)
		}
	})

	const agentID = "agent-alicloud-1"
	s := spec(mustStemcell(t, e), `{"instance_type":"ecs.g6.large"}`, cpi.Networks{"default": manualNet("10.0.0.50")})
	s.AgentID = agentID
	s.Settings = cpi.AgentSettings{AgentID: agentID, Mbus: srv.AgentURL(agentID),
		Blobstore: cpi.Blobstore{Provider: "local", Options: map[string]any{"blobstore_path": t.TempDir()}}}
	s.Env = json.RawMessage(`{"bosun":{"heartbeat_interval":"1s"}}`)
	vm, _, err := e.cpi.CreateVM(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := client.Ping(pctx, agentID)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			out := stderr[string(vm)]
			mu.Unlock()
			t.Fatalf("agent never answered ping: %v\nagent output:\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := e.cpi.DeleteVM(ctx, vm); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	left := len(agents)
	mu.Unlock()
	if left != 0 {
		t.Errorf("%d agents still running after delete_vm", left)
	}
}
