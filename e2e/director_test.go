package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	bosunBinOnce sync.Once
	bosunBin     string
	bosunBinErr  error
)

// directorBinary builds cmd/bosun once per test process.
func directorBinary(t *testing.T) string {
	t.Helper()
	bosunBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bosun-e2e-bin-")
		if err != nil {
			bosunBinErr = err
			return
		}
		bosunBin = filepath.Join(dir, "bosun")
		out, err := exec.Command("go", "build", "-o", bosunBin, "../cmd/bosun").CombinedOutput()
		if err != nil {
			bosunBinErr = fmt.Errorf("go build ./cmd/bosun: %v\n%s", err, out)
		}
	})
	if bosunBinErr != nil {
		t.Fatal(bosunBinErr)
	}
	return bosunBin
}

// reachableTempDir is a temp dir that Postgres, run as the postgres user when the tests
// run as root, can pass through.
func reachableTempDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func directorFreePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type directorProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	api    string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func startDirector(t *testing.T, args ...string) *directorProc {
	t.Helper()
	p := &directorProc{stderr: &syncBuffer{}, done: make(chan struct{})}
	for i, a := range args {
		if a == "--listen" {
			p.api = args[i+1]
		}
	}
	p.cmd = exec.Command(directorBinary(t), append([]string{"director"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.terminate)
	return p
}

// terminate stops a director still running when its test ends: SIGTERM first, so that it
// stops its own Postgres (a SIGKILLed director's Postgres only begins a shutdown), then
// SIGKILL if it takes too long.
func (p *directorProc) terminate() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// wait waits for the director to exit and returns its status.
func (p *directorProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("director did not exit within 2 minutes; output:\n%s", p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

type directorHealth struct {
	OK         bool              `json:"ok"`
	Postgres   string            `json:"postgres"`
	NATS       string            `json:"nats"`
	Roles      map[string]string `json:"roles"`
	WaitingFor string            `json:"waiting_for"`
}

// healthy polls /healthz until it answers ok.
func (p *directorProc) healthy(t *testing.T) directorHealth {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case <-p.done:
			t.Fatalf("director exited (%v) before it was healthy:\n%s", p.cmd.ProcessState, p.stderr)
		default:
		}
		if resp, err := client.Get("http://" + p.api + "/healthz"); err == nil {
			var h directorHealth
			err := json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err == nil && h.OK {
				return h
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("director not healthy within 3 minutes:\n%s", p.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// postmaster reads the pid and port of the cluster running on dataDir.
func postmaster(t *testing.T, dataDir string) (pid, port int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "postgres", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	pid, _ = strconv.Atoi(lines[0])
	port, _ = strconv.Atoi(lines[3])
	if pid == 0 || port == 0 {
		t.Fatalf("unreadable postmaster.pid:\n%s", b)
	}
	return pid, port
}

// assertNothingLeft checks no process runs from dir (postgres and its children name their
// data dir on the command line) and that the given addresses are free again.
func assertNothingLeft(t *testing.T, dir string, pids []int, addrs ...string) {
	t.Helper()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists (kill 0: %v)", pid, err)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte(dir)) {
			t.Errorf("process %s still runs from %s: %q", filepath.Base(filepath.Dir(f)), dir, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s still taken: %v", a, err)
			continue
		}
		l.Close()
	}
}

// pgSocketURL reaches the director's cluster as Bosun does, through its socket.
func pgSocketURL(data string, port int) string {
	return fmt.Sprintf("postgres://postgres@/postgres?host=%s&port=%d&sslmode=disable", filepath.Join(data, "postgres"), port)
}

func TestDirectorDevStartStopRestart(t *testing.T) {
	base := reachableTempDir(t)
	data := filepath.Join(base, "data")
	api, natsAddr := directorFreePort(t), directorFreePort(t)
	args := []string{"--dev", "--data-dir", data, "--listen", api, "--nats-listen", natsAddr, "--log-format", "json"}

	d := startDirector(t, args...)
	h := d.healthy(t)
	if h.Postgres != "ok" || h.NATS != "ok" || h.Roles["workers"] != "running" || h.Roles["api"] != "running" {
		t.Errorf("health = %+v", h)
	}
	if !strings.Contains(h.WaitingFor, "repository") {
		t.Errorf("health does not say what the director waits for: %+v", h)
	}
	pgPid, pgPort := postmaster(t, data)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Leave a task behind to find after the restart.
	conn, err := pgx.Connect(ctx, pgSocketURL(data, pgPort))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO tasks (type, state, description, finished_at) VALUES ('deploy', 'done', 'kept across restarts', now())"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	secret, err := os.ReadFile(filepath.Join(data, "nats.secret"))
	if err != nil {
		t.Fatal(err)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM; output:\n%s", code, d.stderr)
	}
	assertNothingLeft(t, base, []int{pgPid}, api, natsAddr, fmt.Sprintf("127.0.0.1:%d", pgPort))

	d = startDirector(t, args...)
	d.healthy(t)
	pgPid, pgPort = postmaster(t, data)
	conn, err = pgx.Connect(ctx, pgSocketURL(data, pgPort))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM tasks WHERE description = 'kept across restarts'").Scan(&n); err != nil || n != 1 {
		t.Errorf("task from the first run: count %d, %v", n, err)
	}
	conn.Close(ctx)
	if again, _ := os.ReadFile(filepath.Join(data, "nats.secret")); !bytes.Equal(again, secret) {
		t.Error("the NATS secret changed across a restart; agents would lose their credentials")
	}
	if strings.Contains(d.stderr.String(), "initialising postgres cluster") {
		t.Error("the second start ran initdb again")
	}
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit status %d after SIGINT; output:\n%s", code, d.stderr)
	}
	assertNothingLeft(t, base, []int{pgPid}, api, natsAddr)
}

func TestDirectorBadInput(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyAddr := busy.Addr().String()
	base := reachableTempDir(t)
	file := filepath.Join(base, "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"--dev", "--frobnicate"}, 2, "flag provided but not defined: -frobnicate"},
		{"no database", []string{}, 2, "no database: give --database-url, or --dev"},
		{"bad log format", []string{"--dev", "--log-format", "xml"}, 2, `--log-format "xml": want text or json`},
		{"api port in use", []string{"--dev", "--listen", busyAddr}, 1, "listen on " + busyAddr + ": bind: address already in use"},
		{"data dir under a file", []string{"--dev", "--data-dir", filepath.Join(file, "d")}, 1, "data dir " + filepath.Join(file, "d") + ": not a directory"},
		{"unreachable database", []string{"--database-url", "postgres://bosun:s3cret@127.0.0.1:1/bosun"}, 1, "open database at 127.0.0.1:1/bosun as bosun: dial tcp 127.0.0.1:1: connect: connection refused"},
		// Postgres is already running when NATS fails to bind: it must be stopped again.
		{"nats port in use", []string{"--dev", "--nats-listen", busyAddr}, 1, "embedded NATS on " + busyAddr},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(base, strconv.Itoa(i))
			args := append([]string{"--listen", directorFreePort(t), "--nats-listen", directorFreePort(t), "--data-dir", data}, tt.args...)
			d := startDirector(t, args...)
			code := d.wait(t)
			out := strings.TrimSpace(d.stderr.String())
			lines := strings.Split(out, "\n")
			last := lines[len(lines)-1]
			if code != tt.code || !strings.Contains(last, tt.want) {
				t.Errorf("exit %d (want %d), last line %q (want it to contain %q); output:\n%s", code, tt.code, last, tt.want, out)
			}
			if strings.Contains(out, "s3cret") {
				t.Errorf("the database password was printed:\n%s", out)
			}
			assertNothingLeft(t, data, nil)
		})
	}
}

func TestDirectorStopsWhenItsPostgresDies(t *testing.T) {
	base := reachableTempDir(t)
	data := filepath.Join(base, "data")
	api, natsAddr := directorFreePort(t), directorFreePort(t)
	d := startDirector(t, "--dev", "--data-dir", data, "--listen", api, "--nats-listen", natsAddr)
	d.healthy(t)
	pgPid, _ := postmaster(t, data)
	if err := syscall.Kill(pgPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t); code == 0 {
		t.Fatalf("director exited 0 after its Postgres died; output:\n%s", d.stderr)
	}
	if out := d.stderr.String(); !strings.Contains(out, "postgres: the PostgreSQL server under "+filepath.Join(data, "postgres")+" exited") {
		t.Errorf("the director did not say its Postgres died:\n%s", out)
	}
	assertNothingLeft(t, base, nil, api, natsAddr)
}

// A signal while the director is still starting (initdb takes seconds) is a clean stop,
// and leaves a data dir the next start can use.
func TestDirectorSignalDuringStartup(t *testing.T) {
	base := reachableTempDir(t)
	data := filepath.Join(base, "data")
	api, natsAddr := directorFreePort(t), directorFreePort(t)
	args := []string{"--dev", "--data-dir", data, "--listen", api, "--nats-listen", natsAddr}
	d := startDirector(t, args...)
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(d.stderr.String(), "initialising postgres cluster") {
		if time.Now().After(deadline) {
			t.Fatalf("director never began initdb:\n%s", d.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM during startup:\n%s", code, d.stderr)
	}
	assertNothingLeft(t, base, nil, api, natsAddr)

	d = startDirector(t, args...)
	d.healthy(t)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit status %d:\n%s", code, d.stderr)
	}
}
