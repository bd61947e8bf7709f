package bus

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bosun-gitops/bosun/agent/protocol"
)

// TestConnCarriesProtocol drives a protocol.Client over Conn against a responder using
// an agent's own credentials, through the embedded server's permissions.
func TestConnCarriesProtocol(t *testing.T) {
	srv, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", Secret: []byte("conn-test-secret-0123")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	dnc, err := nats.Connect(srv.DirectorURL())
	if err != nil {
		t.Fatal(err)
	}
	defer dnc.Close()
	anc, err := nats.Connect(srv.AgentURL("a1"))
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	agent := Conn{NC: anc}
	unsub, err := agent.Subscribe(protocol.AgentSubject("a1"), func(_ string, data []byte) {
		var req protocol.Request
		json.Unmarshal(data, &req)
		agent.Publish(req.ReplyTo, []byte(`{"value":"pong"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	c, err := protocol.NewClient(Conn{NC: dnc}, "d1", protocol.ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(context.Background(), "a1"); err != nil {
		t.Fatal(err)
	}
	// An agent's reply to another agent's request subject is refused by the server, so
	// the director times out instead of hearing a forged answer.
	forger := Conn{NC: anc}
	forged, err := nats.Connect(srv.AgentURL("a2"))
	if err != nil {
		t.Fatal(err)
	}
	defer forged.Close()
	f := Conn{NC: forged}
	f.Subscribe(protocol.AgentSubject("a2"), func(_ string, data []byte) {
		var req protocol.Request
		json.Unmarshal(data, &req)
		forger.Publish(req.ReplyTo, []byte(`{"value":"forged"}`)) // a1 answering for a2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := c.Call(ctx, "a2", protocol.MethodPing); err == nil || !(errors.Is(err, protocol.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)) {
		t.Fatalf("forged reply: %v", err)
	}
	if err := (Conn{NC: anc}).Publish("bad subject", nil); err == nil || !strings.Contains(err.Error(), "bad subject") {
		t.Fatalf("publish to an invalid subject: %v", err)
	}
}
