package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func startTestServer(t *testing.T) *Server {
	t.Helper()
	s, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", Secret: []byte("0123456789abcdef0123")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestWrongPasswordRefused(t *testing.T) {
	s := startTestServer(t)
	for _, u := range []string{s.URL("agent-1", "nope"), s.URL(DirectorUser, "nope"), s.URL("a.b", Password([]byte("0123456789abcdef0123"), "a.b"))} {
		if nc, err := nats.Connect(u, nats.Timeout(2*time.Second)); err == nil {
			nc.Close()
			t.Errorf("connect with %s succeeded, want refused", u)
		}
	}
}

func TestAgentHearsOnlyItsOwnSubject(t *testing.T) {
	s := startTestServer(t)
	director := connect(t, s.DirectorURL())

	errs := make(chan error, 4)
	a1 := connectWithErrs(t, s.AgentURL("agent-1"), errs)
	own, err := a1.SubscribeSync("agent.agent-1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := a1.SubscribeSync("agent.agent-2")
	if err != nil {
		t.Fatal(err)
	}
	a1.Flush()
	if err := director.Publish("agent.agent-1", []byte("for 1")); err != nil {
		t.Fatal(err)
	}
	if err := director.Publish("agent.agent-2", []byte("for 2")); err != nil {
		t.Fatal(err)
	}
	director.Flush()
	if m, err := own.NextMsg(2 * time.Second); err != nil || string(m.Data) != "for 1" {
		t.Fatalf("own subject: got %v, %v", m, err)
	}
	if m, err := other.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("agent-1 read agent-2's message %q", m.Data)
	}
	waitPermissionError(t, errs)
}

func TestAgentCannotPublishAsAnother(t *testing.T) {
	s := startTestServer(t)
	hm := connect(t, s.MonitorURL())
	hb, err := hm.SubscribeSync("hm.agent.heartbeat.*")
	if err != nil {
		t.Fatal(err)
	}
	hm.Flush()
	errs := make(chan error, 4)
	a1 := connectWithErrs(t, s.AgentURL("agent-1"), errs)
	a1.Publish("hm.agent.heartbeat.agent-2", []byte("forged"))
	a1.Publish("hm.agent.heartbeat.agent-1", []byte("mine"))
	a1.Flush()
	m, err := hb.NextMsg(2 * time.Second)
	if err != nil || m.Subject != "hm.agent.heartbeat.agent-1" {
		t.Fatalf("first heartbeat: %v %v", m, err)
	}
	if m, err := hb.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("forged heartbeat delivered on %s", m.Subject)
	}
	waitPermissionError(t, errs)
}

func TestPortInUse(t *testing.T) {
	s := startTestServer(t)
	_, err := Start(context.Background(), Config{Listen: s.Addr(), Secret: []byte("0123456789abcdef0123")}, nil)
	if err == nil {
		t.Fatal("second server on the same port started")
	}
}

func connectWithErrs(t *testing.T, url string, errs chan error) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func waitPermissionError(t *testing.T, errs chan error) {
	t.Helper()
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("want permissions violation, got %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no permissions violation reported")
	}
}
