// Package localvm boots real bosun-agent processes for the VMs a fake cloud makes, so
// that tests of cloud CPIs and whole deploys against fake clouds reach real agents: each
// VM's agent runs in its own session with the settings the CPI put in its user data.
package localvm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Fleet is the set of agents booted for one fake cloud.
type Fleet struct {
	agent string
	root  string
	env   []string

	mu     sync.Mutex
	agents map[string]*exec.Cmd
	out    map[string]*buffer
}

// New returns a fleet whose VMs run agent with roots under root. Agents get a bare
// environment plus this machine's Go build cache: a release that compiles Go (the demo's
// does) would otherwise rebuild the standard library on every first deploy.
func New(agent, root string) *Fleet {
	env := []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + os.TempDir(), "HOME=" + os.Getenv("HOME")}
	if out, err := exec.Command("go", "env", "GOCACHE").Output(); err == nil {
		env = append(env, "GOCACHE="+strings.TrimSpace(string(out)))
	}
	return &Fleet{agent: agent, root: root, env: env, agents: map[string]*exec.Cmd{}, out: map[string]*buffer{}}
}

// Boot starts VM id's agent with userData as its settings file, as a stemcell's agent
// reads what the cloud handed the VM.
func (f *Fleet) Boot(id string, userData []byte) error {
	dir := filepath.Join(f.root, id)
	path := filepath.Join(dir, "var", "vcap", "bosh", "settings.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("boot %s: %w", id, err)
	}
	if err := os.WriteFile(path, userData, 0o600); err != nil {
		return fmt.Errorf("boot %s: %w", id, err)
	}
	cmd := exec.Command(f.agent, "--settings", path, "--root", dir)
	cmd.Dir, cmd.Env = dir, f.env
	out := &buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// A job that outlived its agent must not hold Wait on the output pipe.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("boot %s: %w", id, err)
	}
	f.mu.Lock()
	f.agents[id], f.out[id] = cmd, out
	f.mu.Unlock()
	return nil
}

// Stop ends every process of VM id's session, its agent and the jobs it started: SIGTERM
// first, SIGKILL for what is left after a grace. It reports whether the agent exited on
// SIGTERM in time.
func (f *Fleet) Stop(id string) bool {
	f.mu.Lock()
	cmd := f.agents[id]
	delete(f.agents, id)
	f.mu.Unlock()
	if cmd == nil {
		return true
	}
	sid := cmd.Process.Pid
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	signalSession(sid, syscall.SIGTERM)
	clean := true
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		clean = false
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(sessionMembers(sid)) > 0 && time.Now().Before(deadline) {
		signalSession(sid, syscall.SIGKILL)
		time.Sleep(50 * time.Millisecond)
	}
	<-done
	return clean
}

// StopAll stops every VM still running; tests call it from t.Cleanup.
func (f *Fleet) StopAll() {
	f.mu.Lock()
	ids := make([]string, 0, len(f.agents))
	for id := range f.agents {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	for _, id := range ids {
		f.Stop(id)
	}
}

// Running counts the VMs whose agents were booted and not stopped.
func (f *Fleet) Running() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.agents)
}

// Output is every agent's output, for a failure message.
func (f *Fleet) Output() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for id, out := range f.out {
		fmt.Fprintf(&b, "--- %s\n%s\n", id, out)
	}
	return b.String()
}

type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *buffer) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

func signalSession(sid int, sig syscall.Signal) {
	for _, pid := range sessionMembers(sid) {
		_ = syscall.Kill(pid, sig)
	}
}

// sessionMembers lists the live processes of session sid.
func sessionMembers(sid int) []int {
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session …; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fs := strings.Fields(string(b[i+1:]))
		if len(fs) < 4 || fs[0] == "Z" || fs[0] == "X" {
			continue
		}
		if s, err := strconv.Atoi(fs[3]); err == nil && s == sid {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			out = append(out, pid)
		}
	}
	return out
}
