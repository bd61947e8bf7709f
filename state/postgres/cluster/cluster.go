// Package cluster owns running a private PostgreSQL cluster from the system's server
// binaries: the throwaway database of tests and of `bosun director --dev`. The data dir
// is initialised once and reused, so state survives restarts of the same dir.
//
// PostgreSQL refuses to run as root; when this process is root, the cluster runs as
// Debian's postgres user, which must own the data dir and be able to reach it.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config says where the cluster lives and how it runs.
type Config struct {
	// Dir is the data directory; created and initialised when missing or empty.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// BinDir holds initdb and postgres; empty finds the system's (see BinDir).
	BinDir string
	// NoFsync trades durability for speed: for tests only.
	NoFsync bool
	Log     *slog.Logger
}

// Cluster is a running postgres server this process started.
type Cluster struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the server's exit, valid once done is closed
	log  *slog.Logger
}

// BinDir finds the directory holding PostgreSQL's server binaries: `pg_config --bindir`,
// else the newest /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	has := func(d string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if _, err := os.Stat(filepath.Join(d, b)); err != nil {
				return false
			}
		}
		return true
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); has(d) {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, postgres) not found via pg_config or /usr/lib/postgresql/*/bin; install Debian's postgresql package (make deps)")
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start initialises cfg.Dir when it holds no cluster yet, starts postgres on it and waits
// until it accepts connections. On error nothing is left running.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin := cfg.BinDir
	if bin == "" {
		var err error
		if bin, err = BinDir(); err != nil {
			return nil, err
		}
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("postgres data dir %s: %w", cfg.Dir, err)
	}
	// The kernel bounds a unix socket's path (108 bytes with its NUL).
	if len(dir)+len("/.s.PGSQL.65535") > 107 {
		return nil, fmt.Errorf("postgres data dir %s: path too long for its unix socket (at most %d characters)", dir, 107-len("/.s.PGSQL.65535"))
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	if err := prepareDir(dir, cred); err != nil {
		return nil, err
	}
	port := cfg.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, fmt.Errorf("postgres: pick a free port: %w", err)
		}
	} else if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
		return nil, fmt.Errorf("postgres: port %d on 127.0.0.1 is in use: %w", port, err)
	} else {
		l.Close()
	}

	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		log.Info("initialising postgres cluster", "dir", dir)
		// Bosun connects through the socket in the data dir, which only its owner (and
		// root) can reach. TCP logins need a password, and the superuser has none until an
		// operator sets one.
		args := []string{"-D", dir, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"}
		if cfg.NoFsync {
			args = append(args, "--no-sync")
		}
		// Not bound to ctx: an initdb killed halfway leaves a dir no later start can use.
		c := exec.Command(filepath.Join(bin, "initdb"), args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
		c.Dir = "/"
		if out, err := c.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("initdb %s: %w: %s", dir, err, lastLine(out))
		}
	}

	logPath := filepath.Join(dir, "server.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("postgres: open server log: %w", err)
	}
	defer logf.Close()
	args := []string{"-D", dir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + dir,
		"-c", "max_connections=200",
	}
	if cfg.NoFsync {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: a terminal's Ctrl-C reaches the director, which stops postgres in
	// order. Pdeathsig: if the director dies anyway, the server shuts down fast with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGINT}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres on %s: %w", dir, err)
	}
	c := &Cluster{dir: dir, port: port, cmd: cmd, done: make(chan struct{}), log: log}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	if err := c.waitReady(ctx, logPath); err != nil {
		c.kill()
		return nil, err
	}
	log.Info("postgres started", "dir", dir, "port", port, "pid", cmd.Process.Pid)
	return c, nil
}

// waitReady polls postmaster.pid, whose eighth line the server sets to "ready".
func (c *Cluster) waitReady(ctx context.Context, logPath string) error {
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(filepath.Join(c.dir, "postmaster.pid")); err == nil {
			lines := strings.Split(string(b), "\n")
			if len(lines) > 7 && lines[0] == strconv.Itoa(c.cmd.Process.Pid) && strings.TrimSpace(lines[7]) == "ready" {
				return nil
			}
		}
		select {
		case <-c.done:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres on %s exited before it was ready: %s", c.dir, lastLine(out))
		case <-ctx.Done():
			return fmt.Errorf("start postgres on %s: %w", c.dir, ctx.Err())
		case <-tick.C:
			if time.Now().After(deadline) {
				return fmt.Errorf("start postgres on %s: not ready after 60s (see %s)", c.dir, logPath)
			}
		}
	}
}

// Port is the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// Pid is the postmaster's process id.
func (c *Cluster) Pid() int { return c.cmd.Process.Pid }

// Exited is closed when the server process has ended, whoever stopped it.
func (c *Cluster) Exited() <-chan struct{} { return c.done }

// Dir is the data directory.
func (c *Cluster) Dir() string { return c.dir }

// URL is a connection URL for database db as the superuser, through the unix socket in
// the data dir: it carries no password, so it is safe to log.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&port=%d&sslmode=disable", db, url.QueryEscape(c.dir), c.port)
}

// Stop shuts the server down fast (open transactions are rolled back) and waits for it,
// escalating to an immediate shutdown when ctx ends first.
func (c *Cluster) Stop(ctx context.Context) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
		c.log.Info("postgres stopped", "dir", c.dir)
		return nil
	case <-ctx.Done():
		c.kill()
		return fmt.Errorf("stop postgres on %s: fast shutdown did not finish: %w", c.dir, ctx.Err())
	}
}

// kill ends the server immediately and reaps it.
func (c *Cluster) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// runAs returns the credential postgres must run with: nil unless this process is root.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("postgres refuses to run as root and there is no 'postgres' user to run it as (Debian's postgresql package creates one)")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// prepareDir creates dir (0700) and, when running as another user, hands it over and
// checks that user can reach it through every parent.
func prepareDir(dir string, cred *syscall.Credential) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("postgres data dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("postgres data dir: %w", err)
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
			return fmt.Errorf("postgres data dir %s is not empty and holds no PostgreSQL cluster", dir)
		}
	}
	if cred == nil {
		return nil
	}
	if err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	}); err != nil {
		return fmt.Errorf("postgres data dir: hand %s to the postgres user: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("postgres data dir: %w", err)
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("postgres data dir: %w", err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		m := fi.Mode().Perm()
		ok := m&0o001 != 0 || (st.Uid == cred.Uid && m&0o100 != 0) || (st.Gid == cred.Gid && m&0o010 != 0)
		if !ok {
			return fmt.Errorf("postgres data dir %s: the postgres user cannot enter %s (mode %o); choose a data dir under a directory others may traverse", dir, p, m)
		}
		if p == "/" {
			return nil
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lastLine is the last non-empty line of a program's output: where initdb and postgres
// say why they failed.
func lastLine(out []byte) string {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(string(lines[i])); l != "" {
			return l
		}
	}
	return "(no output)"
}
