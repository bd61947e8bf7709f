// Package agenttest holds the check every cloud CPI passes against its fake cloud
// before whole deploys run there: each VM the CPI creates boots a real bosun-agent
// from the settings the CPI put in its user data, the director reaches that agent
// over NATS, and deleting the VM stops it.
package agenttest

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
	"github.com/bosun-gitops/bosun/internal/localvm"
)

// Setup makes the CPI over its fake cloud, hooks boot to the fake's VM start (with the
// user data as the VM got it) and stop to its VM end, and returns the CPI and a
// create_vm spec the fake accepts; the agent id and settings are filled in here.
type Setup func(boot func(id string, userData []byte), stop func(id string)) (cpi.CPI, cpi.VMSpec)

// BootsLocalAgent runs the check for the CPI called name.
func BootsLocalAgent(t *testing.T, name string, setup Setup) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs bosun-agent")
	}
	ctx := context.Background()
	agentBin := filepath.Join(t.TempDir(), "bosun-agent")
	if out, err := exec.Command("go", "build", "-o", agentBin, "github.com/bosun-gitops/bosun/cmd/bosun-agent").CombinedOutput(); err != nil {
		t.Fatalf("build bosun-agent: %v\n%s", err, out)
	}
	srv, err := bus.Start(ctx, bus.Config{Listen: "127.0.0.1:0", Secret: []byte(name + "-agent-test")}, nil)
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

	var vms *localvm.Fleet // the hooks run only once a VM is created
	c, s := setup(func(id string, userData []byte) {
		// The agent reads the user data as it is: that is the contract under test.
		if err := vms.Boot(id, userData); err != nil {
			t.Error(err)
		}
	}, func(id string) {
		if !vms.Stop(id) {
			t.Errorf("agent of %s did not exit on SIGTERM", id)
		}
	})
	vms = localvm.New(agentBin, t.TempDir())
	t.Cleanup(vms.StopAll)

	agentID := "agent-" + name + "-1"
	s.AgentID = agentID
	s.Settings = cpi.AgentSettings{AgentID: agentID, Mbus: srv.AgentURL(agentID),
		Blobstore: cpi.Blobstore{Provider: "local", Options: map[string]any{"blobstore_path": t.TempDir()}}}
	s.Env = json.RawMessage(`{"bosun":{"heartbeat_interval":"1s"}}`)
	vm, _, err := c.CreateVM(ctx, s)
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
	if err := c.DeleteVM(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if left := vms.Running(); left != 0 {
		t.Errorf("%d agents still running after delete_vm", left)
	}
}
