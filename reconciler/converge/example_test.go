package converge_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bosun-gitops/bosun/agent/protocol"
	bloblocal "github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/blobstore/signed"
	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/local"
	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/state/postgres"
)

// ExampleNew shows how the director wires an Executor: the store, the agent client on the
// director's NATS connection, the CPI, the blobstore with URL signing, and the settings
// each new VM's agent boots with (its own NATS credentials).
func ExampleNew() {
	ctx := context.Background()
	log := slog.Default()
	store, err := postgres.Open(ctx, "postgres:///bosun", log)
	if err != nil {
		return
	}
	srv, err := bus.Start(ctx, bus.Config{Listen: "127.0.0.1:0", Secret: []byte("a secret of 16+ bytes")}, log)
	if err != nil {
		return
	}
	nc, err := nats.Connect(srv.DirectorURL())
	if err != nil {
		return
	}
	agents, err := protocol.NewClient(bus.Conn{NC: nc}, "director-uuid", protocol.ClientOptions{})
	if err != nil {
		return
	}
	blobs, _ := bloblocal.Open("/var/lib/bosun/blobs")
	signer, _ := signed.NewSigner([]byte("blob signing key, 16+ bytes"), 15*time.Minute, "http://10.0.0.1:25250")
	c, _ := local.New(local.Config{Dir: "/var/lib/bosun/local-cpi", AgentPath: "/usr/local/bin/bosun-agent"}, log)

	exec, err := converge.New(converge.Config{
		CPI: c, CPIName: "local",
		Agents: agents, Store: store, Blobs: blobs, Signer: signer,
		Settings: func(agentID string) (cpi.AgentSettings, error) {
			return cpi.AgentSettings{
				Mbus: srv.AgentURL(agentID), // with an external NATS: the URL with bus.Password(secret, agentID)
				Env:  json.RawMessage(`{"bosun":{"heartbeat_interval":"30s"}}`),
			}, nil
		},
		Log: log.With("component", "converge"),
	})
	if err != nil {
		return
	}
	// At start, before task workers claim anything (single director; with several,
	// rely on the per-deployment recovery Run and Act do under the deployment lock).
	_ = exec.Recover(ctx)
}
