package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
)

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readPID(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// TestSupervisorMonitAndGroups: a monit job whose start program daemonises is followed
// through its pidfile and stopped with its stop program; a bpm process's own children
// die with it on stop; a crash raises an alert and restarts.
func TestSupervisorMonitAndGroups(t *testing.T) {
	root := t.TempDir()
	p := paths{filepath.Join(root, "var", "vcap")}
	jobDir := p.jobDir("svc")
	os.MkdirAll(filepath.Join(jobDir, "bin"), 0o755)
	os.MkdirAll(p.sysRun(), 0o755)
	ctl := `#!/bin/sh
case $1 in
start) sleep 1000 >/dev/null 2>&1 & echo $! > /var/vcap/sys/run/daemon.pid ;;
stop) kill $(cat /var/vcap/sys/run/daemon.pid) ;;
esac
`
	// Rendered templates name /var/vcap; the test maps it by hand as a real VM would not need.
	ctl = strings.ReplaceAll(ctl, "/var/vcap", p.vcap)
	os.WriteFile(filepath.Join(jobDir, "bin", "ctl"), []byte(ctl), 0o755)
	os.WriteFile(filepath.Join(jobDir, "bin", "tree"), []byte("#!/bin/sh\nsleep 1000 &\necho $! > "+p.vcap+"/sys/run/child.pid\nwait\n"), 0o755)
	monit, err := parseMonit([]byte(`check process daemon with pidfile /var/vcap/sys/run/daemon.pid
  start program "/var/vcap/jobs/svc/bin/ctl start"
  stop program "/var/vcap/jobs/svc/bin/ctl stop"`))
	if err != nil {
		t.Fatal(err)
	}
	monit[0].StartProgram = p.host("/var/vcap/jobs/svc/bin/ctl") + " start"
	monit[0].StopProgram = p.host("/var/vcap/jobs/svc/bin/ctl") + " stop"
	procs := append(monit, procSpec{Name: "tree", Executable: "/var/vcap/jobs/svc/bin/tree"})

	var mu sync.Mutex
	type alert struct{ process, summary string }
	var alerts []alert
	s := newSupervisor(p, slog.New(slog.DiscardHandler), 200*time.Millisecond, 0, func(process, summary string) {
		mu.Lock()
		alerts = append(alerts, alert{process, summary})
		mu.Unlock()
	})
	ctx := context.Background()
	if err := s.start(ctx, []jobProcs{{job: "svc", procs: procs}}, nil, "v1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both running", func() bool { st, n := s.state(); return st == protocol.JobRunning && n == 2 })
	daemon, child := readPID(t, filepath.Join(p.sysRun(), "daemon.pid")), readPID(t, filepath.Join(p.sysRun(), "child.pid"))
	if !alive(daemon) || !alive(child) {
		t.Fatalf("daemon %d child %d not alive", daemon, child)
	}
	var treePID int
	for _, pr := range s.processes() {
		if pr.Name == "daemon" && pr.PID != daemon {
			t.Fatalf("daemon followed as pid %d, pidfile says %d", pr.PID, daemon)
		}
		if pr.Name == "tree" {
			treePID = pr.PID
		}
	}

	// Crash the daemon: alert, then a new daemon.
	syscall.Kill(daemon, syscall.SIGKILL)
	waitFor(t, "alert", func() bool { mu.Lock(); defer mu.Unlock(); return len(alerts) > 0 })
	waitFor(t, "daemon restarted", func() bool {
		d := readPID(t, filepath.Join(p.sysRun(), "daemon.pid"))
		st, _ := s.state()
		return d != daemon && alive(d) && st == protocol.JobRunning
	})
	if alerts[0].process != "daemon" || !strings.Contains(alerts[0].summary, "job svc") {
		t.Fatalf("alert %+v", alerts[0])
	}
	daemon = readPID(t, filepath.Join(p.sysRun(), "daemon.pid"))

	s.stopAll(ctx)
	for _, pid := range []int{daemon, child, treePID} {
		waitFor(t, fmt.Sprintf("pid %d gone", pid), func() bool { return !alive(pid) })
	}
	if st, _ := s.state(); st != protocol.JobStopped {
		t.Fatalf("state after stop = %s", st)
	}
	left, _ := filepath.Glob(filepath.Join(p.sysRun(), "bosun", "*", "*.pgid"))
	if len(left) != 0 {
		t.Fatalf("pidfiles left after stop: %v", left)
	}
}

// TestReapLeftovers: process groups recorded by a previous agent are ended.
func TestReapLeftovers(t *testing.T) {
	p := paths{t.TempDir()}
	s := newSupervisor(p, slog.New(slog.DiscardHandler), 0, 0, func(string, string) {})
	pr := &proc{job: "j", spec: procSpec{Name: "x"}}
	cmdline := []string{"/bin/sh", "-c", "sleep 1000"}
	attr := &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Setpgid: true}}
	pid, err := syscall.ForkExec(cmdline[0], cmdline, attr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { var ws syscall.WaitStatus; syscall.Wait4(pid, &ws, 0, nil) }()
	os.MkdirAll(filepath.Dir(s.pidfile(pr)), 0o755)
	os.WriteFile(s.pidfile(pr), []byte(strconv.Itoa(pid)), 0o644)
	s.reap()
	waitFor(t, "leftover group ended", func() bool { return syscall.Kill(-pid, 0) != nil })
}
