package alicloud_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/alicloud/fakealicloud"
	"github.com/bosun-gitops/bosun/internal/localvm"
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
	vms := localvm.New(agentBin, t.TempDir())
	t.Cleanup(vms.StopAll)
	e.cloud.OnInstanceStart(func(s fakealicloud.Instance, userData []byte) {
		// The agent reads the UserData as it is: that is the contract under test.
		if err := vms.Boot(s.ID, userData); err != nil {
			t.Error(err)
		}
	})
	e.cloud.OnInstanceStop(func(s fakealicloud.Instance) {
		if !vms.Stop(s.ID) {
			t.Errorf("agent of %s did not exit on SIGTERM", s.ID)
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
			t.Fatalf("agent never answered ping: %v\nagent output:\n%s", err, vms.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := e.cpi.DeleteVM(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if left := vms.Running(); left != 0 {
		t.Errorf("%d agents still running after delete_vm", left)
	}
}
