package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func randRead(b []byte) { rand.Read(b) }

// startAgent starts the VM's agent detached: its own session, stdio on a log file in
// the VM, and a minimal environment (the director's may hold secrets).
func (c *CPI) startAgent(root string) error {
	logf, err := os.OpenFile(filepath.Join(root, agentLogRel), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(c.cfg.AgentPath, "--settings", filepath.Join(root, settingsRel), "--root", root)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=" + envOr("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "TMPDIR=" + os.TempDir()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	// Reap it if it dies while we live; after we exit, init does.
	go cmd.Wait() //nolint:errcheck
	if err := writeFileAtomic(filepath.Join(root, "agent.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		stopSession(context.Background(), cmd.Process.Pid, 0)
		return fmt.Errorf("record agent pid: %w", err)
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// stopAgent ends every process of the VM's session. An agent that already died (the
// VM crashed) is not an error; its jobs, still in its session, are stopped all the
// same.
func (c *CPI) stopAgent(ctx context.Context, root string) error {
	b, err := os.ReadFile(filepath.Join(root, "agent.pid"))
	if errors.Is(err, os.ErrNotExist) {
		// A crash before the agent started, or between starting it and recording its
		// pid (a director killed mid create_vm): then the agent runs, and names this
		// VM's settings on its command line.
		for _, sid := range sessionsNaming(filepath.Join(root, settingsRel)) {
			if err := stopSession(ctx, sid, c.cfg.StopGrace); err != nil {
				return err
			}
		}
		return nil
	}
	if err != nil {
		return err
	}
	sid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || sid <= 1 {
		return fmt.Errorf("agent.pid holds %q, not a process id", bytes.TrimSpace(b))
	}
	// A live session leader that is not our agent means the pid was reused after a
	// crash: nothing of this VM is left to stop.
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", sid)); err == nil && procState(sid) != 'Z' {
		if !bytes.Contains(cmdline, []byte(filepath.Join(root, settingsRel))) {
			return nil
		}
	}
	return stopSession(ctx, sid, c.cfg.StopGrace)
}

// stopSession sends SIGTERM to every live process of session sid, SIGKILL to those
// left after grace, and waits until none is left or ctx is done. /proc is scanned
// whole only to find the members and to confirm none was forked meanwhile; between,
// only the known members are polled (the scans are most of a delete's CPU).
func stopSession(ctx context.Context, sid int, grace time.Duration) error {
	procs := sessionProcs(sid)
	if len(procs) == 0 {
		return nil
	}
	signalAll(procs, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	wait := 2 * time.Millisecond
	killed := false
	for {
		procs = slices.DeleteFunc(procs, func(pid int) bool {
			st, err := readStat(pid)
			return err != nil || st.session != sid || st.state == 'Z' || st.state == 'X'
		})
		if len(procs) == 0 {
			if procs = sessionProcs(sid); len(procs) == 0 {
				return nil
			}
			signalAll(procs, syscall.SIGTERM) // forked since the first scan
		}
		if !killed && !time.Now().Before(deadline) {
			killed = true
		}
		if killed {
			signalAll(procs, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d processes of session %d still running: %w", len(procs), sid, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 100*time.Millisecond)
	}
}

func signalAll(pids []int, sig syscall.Signal) {
	for _, p := range pids {
		syscall.Kill(p, sig)
	}
}

// sessionProcs lists the live (not zombie) processes whose session id is sid.
func sessionProcs(sid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.session != sid || st.state == 'Z' || st.state == 'X' {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// sessionsNaming lists the sessions of the live processes having arg as one argument.
func sessionsNaming(arg string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := []byte("\x00" + arg + "\x00")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(cmdline, want) {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.state == 'Z' || st.state == 'X' || slices.Contains(out, st.session) {
			continue
		}
		out = append(out, st.session)
	}
	return out
}

type procStat struct {
	state   byte
	session int
}

// readStat parses /proc/<pid>/stat: "pid (comm) state ppid pgrp session …"; comm may
// hold spaces and parentheses, so fields are counted after the last ')'.
func readStat(pid int) (procStat, error) {
	// Raw syscalls into a stack buffer: a delete reads every process's stat, and
	// os.ReadFile's stat, poller registration and allocation were most of its CPU.
	fd, err := syscall.Open("/proc/"+strconv.Itoa(pid)+"/stat", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return procStat{}, err
	}
	var buf [512]byte
	n, err := syscall.Read(fd, buf[:])
	syscall.Close(fd)
	if err != nil {
		return procStat{}, err
	}
	return parseStat(buf[:max(n, 0)])
}

// parseStat parses the start of a /proc/<pid>/stat line.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procStat{}, errors.New("malformed stat")
	}
	// After ") ": state, ppid, pgrp, session.
	var f [4][]byte
	rest := b[i+1:]
	for k := range f {
		rest = bytes.TrimLeft(rest, " ")
		end := bytes.IndexByte(rest, ' ')
		if end <= 0 {
			return procStat{}, errors.New("malformed stat")
		}
		f[k], rest = rest[:end], rest[end:]
	}
	sess, err := strconv.Atoi(string(f[3]))
	if err != nil {
		return procStat{}, err
	}
	return procStat{state: f[0][0], session: sess}, nil
}

func procState(pid int) byte {
	st, err := readStat(pid)
	if err != nil {
		return 'X'
	}
	return st.state
}
