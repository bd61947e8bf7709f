// Command bosun-agent is the agent that runs on every VM. It reads BOSH-shaped agent
// settings, connects to NATS with its own credentials and serves the director.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bosun-gitops/bosun/agent"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bosun-agent:", err)
		os.Exit(1)
	}
}

func run() error {
	settingsPath := flag.String("settings", "", "path to the agent settings JSON (BOSH's settings.json)")
	root := flag.String("root", "/", "root directory; BOSH's /var/vcap layout lives beneath it")
	heartbeat := flag.Duration("heartbeat-interval", 0, "heartbeat interval (default: settings env.bosun.heartbeat_interval, else 30s)")
	debug := flag.Bool("debug", false, "log at debug level")
	flag.Parse()
	if *settingsPath == "" {
		fmt.Fprintln(os.Stderr, "bosun-agent: --settings is required")
		os.Exit(2)
	}
	s, err := agent.LoadSettings(*settingsPath)
	if err != nil {
		return err
	}
	logDir := filepath.Join(*root, "var", "vcap", "bosh", "log")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(logDir, "current"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, logFile), &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := []nats.Option{
		nats.Name("bosun-agent " + s.AgentID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			log.Warn("nats", "err", err)
		}),
	}
	if tlsOpt, err := mbusTLS(s); err != nil {
		return err
	} else if tlsOpt != nil {
		opts = append(opts, tlsOpt)
	}
	nc, err := nats.Connect(s.Mbus, opts...)
	if err != nil {
		return fmt.Errorf("connect to mbus: %w", err)
	}
	defer nc.Close()
	a, err := agent.New(s, conn{nc}, agent.Options{Root: *root, HeartbeatInterval: *heartbeat, Log: log})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// mbusTLS reads BOSH's env.bosh.mbus.cert {ca, certificate, private_key} when present.
func mbusTLS(s agent.Settings) (nats.Option, error) {
	var env struct {
		Mbus struct {
			Cert struct {
				CA          string `json:"ca"`
				Certificate string `json:"certificate"`
				PrivateKey  string `json:"private_key"`
			} `json:"cert"`
		} `json:"mbus"`
	}
	if len(s.Env.Bosh) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(s.Env.Bosh, &env); err != nil {
		return nil, fmt.Errorf("settings env.bosh: %w", err)
	}
	c := env.Mbus.Cert
	if c.CA == "" && c.Certificate == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(c.CA)) {
			return nil, errors.New("settings env.bosh.mbus.cert.ca holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if c.Certificate != "" {
		pair, err := tls.X509KeyPair([]byte(c.Certificate), []byte(c.PrivateKey))
		if err != nil {
			return nil, fmt.Errorf("settings env.bosh.mbus.cert: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return nats.Secure(cfg), nil
}

// conn adapts *nats.Conn to protocol.Transport. It repeats bus.Conn so that the agent
// binary does not link the NATS server that package embeds.
type conn struct{ nc *nats.Conn }

func (c conn) Publish(subject string, data []byte) error { return c.nc.Publish(subject, data) }

func (c conn) Subscribe(subject string, handle func(string, []byte)) (func() error, error) {
	sub, err := c.nc.Subscribe(subject, func(m *nats.Msg) { handle(m.Subject, m.Data) })
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	// Before the first connection (the bus may come up after the VM) the subscription is
	// kept and sent once connected; otherwise flush so it is in place on return.
	if c.nc.IsConnected() {
		if err := c.nc.Flush(); err != nil {
			sub.Unsubscribe()
			return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
		}
	}
	return sub.Unsubscribe, nil
}
