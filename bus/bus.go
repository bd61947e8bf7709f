// Package bus owns the embedded NATS server the director runs when no external NATS is
// given, and the credentials and permissions of everyone on it: the director may reach
// every agent, and each agent may only hear its own requests and publish its own
// heartbeats, alerts and replies (BOSH's per-agent ACLs, bosh-spec §8.1).
//
// Agent passwords are derived from a secret the director keeps (HMAC-SHA256 over the
// agent id), so a new VM's credentials exist the moment the director names its agent:
// nothing is stored, and the server needs no reload when agents come and go.
package bus

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Usernames of the non-agent roles.
const (
	DirectorUser = "bosun-director"
	MonitorUser  = "bosun-hm"
)

// Config says where the embedded server listens and which secret derives passwords.
type Config struct {
	// Listen is host:port; port 0 picks a free port.
	Listen string
	// Secret derives every password; at least 16 bytes.
	Secret []byte
	// MaxPayload bounds one message (default 1 MiB, as BOSH's agent replies are bounded).
	MaxPayload int32
}

// Server is a running embedded NATS server.
type Server struct {
	ns     *server.Server
	secret []byte
	host   string
	port   int
}

// Start starts the server and waits until it accepts connections.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	if len(cfg.Secret) < 16 {
		return nil, errors.New("start nats: secret must be at least 16 bytes")
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("start nats: listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("start nats: listen port %q is not a number", portStr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	// Bind first ourselves so that "address in use" is a clear error rather than a
	// server that logs and never becomes ready.
	if port != server.RANDOM_PORT {
		l, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("start nats on %s: %w", cfg.Listen, err)
		}
		l.Close()
	}
	maxPayload := cfg.MaxPayload
	if maxPayload == 0 {
		maxPayload = 1 << 20
	}
	s := &Server{secret: append([]byte(nil), cfg.Secret...)}
	opts := &server.Options{
		Host:                       host,
		Port:                       port,
		NoSigs:                     true,
		NoLog:                      true,
		MaxPayload:                 maxPayload,
		CustomClientAuthentication: authenticator{s},
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	if log != nil {
		ns.SetLoggerV2(logAdapter{log.With("component", "nats")}, false, false, false)
	}
	go ns.Start()
	deadline := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d)
	}
	if !ns.ReadyForConnections(deadline) {
		ns.Shutdown()
		return nil, fmt.Errorf("start nats on %s: not ready after %s", cfg.Listen, deadline)
	}
	addr := ns.Addr().(*net.TCPAddr)
	s.ns, s.host, s.port = ns, host, addr.Port
	return s, nil
}

// Addr is the host:port clients dial.
func (s *Server) Addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// URL returns the server's URL carrying user and password.
func (s *Server) URL(user, password string) string {
	u := url.URL{Scheme: "nats", Host: s.Addr(), User: url.UserPassword(user, password)}
	return u.String()
}

// DirectorURL is the URL the director connects with.
func (s *Server) DirectorURL() string { return s.URL(DirectorUser, Password(s.secret, DirectorUser)) }

// MonitorURL is the URL the health monitor connects with.
func (s *Server) MonitorURL() string { return s.URL(MonitorUser, Password(s.secret, MonitorUser)) }

// AgentURL is the URL handed to the agent with this id in its settings (mbus).
func (s *Server) AgentURL(agentID string) string {
	return s.URL(agentID, Password(s.secret, agentID))
}

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// Password derives the password of user from secret.
func Password(secret []byte, user string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("bosun-nats-user\x00" + user))
	return hex.EncodeToString(m.Sum(nil))
}

// ValidAgentID reports whether id can name an agent: one NATS subject token.
func ValidAgentID(id string) bool {
	if id == "" || len(id) > 128 || id == DirectorUser || id == MonitorUser {
		return false
	}
	return !strings.ContainsAny(id, ".*> \t\r\n")
}

// AgentPermissions are the subjects an agent may use (bosh-spec §8.1).
func AgentPermissions(agentID string) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"hm.agent.heartbeat." + agentID,
			"hm.agent.alert." + agentID,
			"hm.agent.shutdown." + agentID,
			"director.*." + agentID + ".*",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{"agent." + agentID}},
	}
}

type authenticator struct{ s *Server }

func (a authenticator) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	user := o.Username
	want := Password(a.s.secret, user)
	if subtle.ConstantTimeCompare([]byte(o.Password), []byte(want)) != 1 {
		return false
	}
	switch {
	case user == DirectorUser:
		c.RegisterUser(&server.User{Username: user})
	case user == MonitorUser:
		c.RegisterUser(&server.User{Username: user, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Deny: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"hm.>"}},
		}})
	case ValidAgentID(user):
		c.RegisterUser(&server.User{Username: user, Permissions: AgentPermissions(user)})
	default:
		return false
	}
	return true
}

type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Noticef(f string, v ...any) { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a logAdapter) Warnf(f string, v ...any)   { a.l.Warn(fmt.Sprintf(f, v...)) }
func (a logAdapter) Fatalf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a logAdapter) Errorf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a logAdapter) Debugf(f string, v ...any)  { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a logAdapter) Tracef(f string, v ...any)  {}
