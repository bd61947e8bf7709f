package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
)

// bpm's stop sequence: the shutdown signal, 15 s, SIGQUIT, 2 s, SIGKILL.
const (
	termGrace  = 15 * time.Second
	quitGrace  = 2 * time.Second
	maxBackoff = 30 * time.Second
)

type jobProcs struct {
	job   string
	procs []procSpec
}

// supervisor keeps job processes running: each runs in its own process group (never its
// own session, so the CPI can still kill everything in the agent's session), is
// restarted with exponential backoff when it dies, and logs to sys/log/<job>.
type supervisor struct {
	paths       paths
	log         *slog.Logger
	stableAfter time.Duration
	logMax      int64
	// alert reports a failed process: its name and what happened.
	alert func(process, summary string)

	mu      sync.Mutex
	procs   []*proc
	started bool
}

func newSupervisor(p paths, log *slog.Logger, stableAfter time.Duration, logMax int64, alert func(process, summary string)) *supervisor {
	if stableAfter <= 0 {
		stableAfter = 5 * time.Second
	}
	if logMax <= 0 {
		logMax = 10 << 20
	}
	return &supervisor{paths: p, log: log, stableAfter: stableAfter, logMax: logMax, alert: alert}
}

type proc struct {
	job  string
	spec procSpec
	env  []string
	// installed identifies what the process runs (rendered templates and packages), so
	// that a new configuration under an unchanged bpm.yml still restarts it.
	installed string
	stop      context.CancelFunc
	done      chan struct{}

	mu        sync.Mutex
	state     string
	pid       int
	upSince   time.Time
	crashes   int
	lastError string
}

// start runs the given processes; ones already running unchanged are kept, others are
// stopped first.
func (s *supervisor) start(ctx context.Context, jobs []jobProcs, env []string, installed string) error {
	s.mu.Lock()
	old := s.procs
	s.mu.Unlock()
	var keep, next []*proc
	for _, j := range jobs {
		for _, spec := range j.procs {
			var found *proc
			for _, o := range old {
				if o.job == j.job && o.installed == installed && reflect.DeepEqual(o.spec, spec) && reflect.DeepEqual(o.env, env) {
					found = o
				}
			}
			if found != nil {
				keep = append(keep, found)
				next = append(next, found)
				continue
			}
			next = append(next, &proc{job: j.job, spec: spec, env: env, installed: installed, state: protocol.JobStarting})
		}
	}
	for _, o := range old {
		if !contains(keep, o) {
			o.halt(ctx)
		}
	}
	for _, p := range next {
		if p.done == nil {
			if err := os.MkdirAll(s.paths.sysLog(p.job), 0o755); err != nil {
				return err
			}
			pctx, cancel := context.WithCancel(context.Background())
			p.stop, p.done = cancel, make(chan struct{})
			go s.run(pctx, p)
		}
	}
	s.mu.Lock()
	s.procs, s.started = next, true
	s.mu.Unlock()
	return nil
}

func contains(ps []*proc, p *proc) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// stopAll stops every process and waits until each process group is gone.
func (s *supervisor) stopAll(ctx context.Context) {
	s.mu.Lock()
	procs := s.procs
	s.procs, s.started = nil, false
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.halt(ctx) }()
	}
	wg.Wait()
}

func (p *proc) halt(ctx context.Context) {
	p.stop()
	select {
	case <-p.done:
	case <-ctx.Done():
	}
}

// run is one process's supervision loop.
func (s *supervisor) run(ctx context.Context, p *proc) {
	defer close(p.done)
	log := s.log.With("job", p.job, "process", p.spec.Name)
	backoff := time.Second
	for {
		err := s.once(ctx, p, log)
		if ctx.Err() != nil {
			p.set(func() { p.state, p.pid = protocol.JobStopped, 0 })
			return
		}
		tail := logTail(s.paths, p.job, p.spec.Name)
		var crashes int
		p.set(func() {
			if p.state == protocol.JobRunning {
				backoff = time.Second // it stayed up long enough to earn a fresh backoff
			}
			p.crashes++
			crashes = p.crashes
			p.state, p.pid = protocol.JobFailing, 0
			p.lastError = err.Error()
			if tail != "" {
				p.lastError += "\n" + tail
			}
		})
		log.Warn("process failed; restarting", "err", err, "restarts", crashes, "backoff", backoff)
		s.alert(p.spec.Name, fmt.Sprintf("job %s process %s %v (restart %d in %s); log tail:\n%s", p.job, p.spec.Name, err, crashes, backoff, tail))
		select {
		case <-ctx.Done():
			p.set(func() { p.state = protocol.JobStopped })
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (p *proc) set(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
}

// once starts the process and returns when it ends (error: why) or ctx ends (it is then
// stopped with bpm's signal sequence).
func (s *supervisor) once(ctx context.Context, p *proc, log *slog.Logger) error {
	stdout, err := openRotating(filepath.Join(s.paths.sysLog(p.job), p.spec.Name+".stdout.log"), s.logMax)
	if err != nil {
		return err
	}
	defer stdout.Close()
	stderr, err := openRotating(filepath.Join(s.paths.sysLog(p.job), p.spec.Name+".stderr.log"), s.logMax)
	if err != nil {
		return err
	}
	defer stderr.Close()
	cmd := s.command(p)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A daemonising monit start program leaves children holding the output pipes.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var waited <-chan error = exited
	pid := cmd.Process.Pid
	// The process group outlives its leader only until this returns: whatever the job
	// left behind dies with it, and the pidfile lets a restarted agent reap a group it
	// lost track of.
	pgid := pid
	pidfile := s.pidfile(p)
	if err := os.MkdirAll(filepath.Dir(pidfile), 0o755); err == nil {
		os.WriteFile(pidfile, []byte(strconv.Itoa(pgid)), 0o644)
	}
	defer func() {
		syscall.Kill(-pgid, syscall.SIGKILL)
		os.Remove(pidfile)
	}()
	p.set(func() {
		p.pid, p.upSince = pid, time.Now()
		if p.crashes == 0 {
			p.state = protocol.JobStarting
		}
	})
	stable := time.NewTimer(s.stableAfter)
	defer stable.Stop()
	daemon := false
	for {
		select {
		case err := <-waited:
			if p.spec.Pidfile != "" && err == nil && !daemon {
				// The monit start program returned: follow the daemon it left behind.
				dpid, ok := readPidfile(s.paths.host(p.spec.Pidfile))
				if !ok {
					return fmt.Errorf("start program exited without leaving a live process in %s", p.spec.Pidfile)
				}
				daemon, pid = true, dpid
				p.set(func() { p.pid = dpid })
				waited = pollExit(ctx, dpid)
				continue
			}
			if err == nil {
				return fmt.Errorf("exited with status 0")
			}
			return fmt.Errorf("exited: %w", err)
		case <-stable.C:
			p.set(func() { p.state, p.crashes = protocol.JobRunning, 0 })
		case <-ctx.Done():
			s.terminate(p, pid, pgid, waited, log)
			return ctx.Err()
		}
	}
}

// terminate runs the stop program (monit) or sends the shutdown signal (bpm), then
// escalates, and finally kills whatever is left in the process group.
func (s *supervisor) terminate(p *proc, pid, pgid int, waited <-chan error, log *slog.Logger) {
	sig := syscall.SIGTERM
	if p.spec.ShutdownSignal == "INT" {
		sig = syscall.SIGINT
	}
	if p.spec.StopProgram != "" {
		stop := exec.Command("/bin/sh", "-c", p.spec.StopProgram)
		stop.Env = append(os.Environ(), p.env...)
		stop.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		stop.WaitDelay = time.Second
		out, err := runWithTimeout(stop, termGrace)
		if err != nil {
			log.Warn("stop program failed", "err", err, "output", string(out))
		}
	} else {
		syscall.Kill(-pgid, sig)
		syscall.Kill(pid, sig)
	}
	for _, step := range []struct {
		wait time.Duration
		sig  syscall.Signal
	}{{termGrace, syscall.SIGQUIT}, {quitGrace, syscall.SIGKILL}} {
		select {
		case <-waited:
			return
		case <-time.After(step.wait):
			log.Warn("process did not stop; escalating", "signal", step.sig)
			syscall.Kill(-pgid, step.sig)
			syscall.Kill(pid, step.sig)
		}
	}
	<-waited
}

func (s *supervisor) pidfile(p *proc) string {
	return filepath.Join(s.paths.sysRun(), "bosun", p.job, p.spec.Name+".pgid")
}

// reap ends process groups a previous agent run left behind (it crashed or was killed
// without stopping its jobs), so that restarted jobs do not find their ports taken.
func (s *supervisor) reap() {
	files, _ := filepath.Glob(filepath.Join(s.paths.sysRun(), "bosun", "*", "*.pgid"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		pgid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && pgid > 1 && syscall.Kill(-pgid, 0) == nil {
			s.log.Warn("ending a process group left by a previous agent", "pidfile", f, "pgid", pgid)
			syscall.Kill(-pgid, syscall.SIGTERM)
			for i := 0; i < 50 && syscall.Kill(-pgid, 0) == nil; i++ {
				time.Sleep(100 * time.Millisecond)
			}
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
		os.Remove(f)
	}
}

func runWithTimeout(cmd *exec.Cmd, d time.Duration) ([]byte, error) {
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return buf.Bytes(), err
	case <-time.After(d):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return buf.Bytes(), fmt.Errorf("timed out after %s", d)
	}
}

func readPidfile(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 0 && syscall.Kill(pid, 0) == nil
}

// pollExit reports when a process that is not our child goes away.
func pollExit(ctx context.Context, pid int) <-chan error {
	ch := make(chan error, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				// Keep watching: terminate waits on this channel for the daemon to go.
			case <-time.After(250 * time.Millisecond):
			}
			if syscall.Kill(pid, 0) != nil {
				ch <- fmt.Errorf("process %d is gone", pid)
				return
			}
		}
	}()
	return ch
}

// command builds the exec.Cmd for one process, mapping /var/vcap paths beneath the root
// and applying bpm limits through the shell's ulimit.
func (s *supervisor) command(p *proc) *exec.Cmd {
	env := append(os.Environ(), p.env...)
	for _, k := range sortedKeys(p.spec.Env) {
		env = append(env, k+"="+s.paths.host(p.spec.Env[k]))
	}
	if p.spec.StartProgram != "" {
		cmd := exec.Command("/bin/sh", "-c", p.spec.StartProgram)
		cmd.Env, cmd.Dir = env, s.paths.jobDir(p.job)
		return cmd
	}
	args := make([]string, len(p.spec.Args))
	for i, a := range p.spec.Args {
		args[i] = s.paths.host(a)
	}
	exe := s.paths.host(p.spec.Executable)
	var cmd *exec.Cmd
	if ul := ulimits(p.spec.Limits); ul != "" {
		cmd = exec.Command("/bin/sh", append([]string{"-c", ul + `exec "$0" "$@"`, exe}, args...)...)
	} else {
		cmd = exec.Command(exe, args...)
	}
	cmd.Env = env
	cmd.Dir = s.paths.jobDir(p.job)
	if p.spec.Workdir != "" {
		cmd.Dir = s.paths.host(p.spec.Workdir)
	}
	return cmd
}

func ulimits(l limits) string {
	var b strings.Builder
	if kb, _ := memoryKB(l.Memory); kb > 0 {
		fmt.Fprintf(&b, "ulimit -v %d; ", kb)
	}
	if l.OpenFiles > 0 {
		fmt.Fprintf(&b, "ulimit -n %d; ", l.OpenFiles)
	}
	if l.Processes > 0 {
		fmt.Fprintf(&b, "ulimit -u %d; ", l.Processes)
	}
	return b.String()
}

// state aggregates job_state: any failing process makes the instance failing, any
// starting one starting; no started jobs is stopped.
func (s *supervisor) state() (string, int) {
	s.mu.Lock()
	procs, started := s.procs, s.started
	s.mu.Unlock()
	if !started {
		return protocol.JobStopped, 0
	}
	state, n := protocol.JobRunning, 0
	for _, p := range procs {
		p.mu.Lock()
		st, pid := p.state, p.pid
		p.mu.Unlock()
		if pid != 0 {
			n++
		}
		switch {
		case st == protocol.JobFailing:
			state = protocol.JobFailing
		case st == protocol.JobStarting && state != protocol.JobFailing:
			state = protocol.JobStarting
		}
	}
	return state, n
}

func (s *supervisor) processes() []protocol.Process {
	s.mu.Lock()
	procs := s.procs
	s.mu.Unlock()
	out := make([]protocol.Process, 0, len(procs))
	for _, p := range procs {
		p.mu.Lock()
		pr := protocol.Process{Name: p.spec.Name, State: p.state, Job: p.job, PID: p.pid}
		if p.state == protocol.JobFailing {
			pr.LogTail = p.lastError
		}
		if p.pid != 0 {
			pr.Uptime = &protocol.Uptime{Secs: int64(time.Since(p.upSince).Seconds())}
			pr.Mem, pr.CPU = procUsage(p.pid)
		}
		p.mu.Unlock()
		out = append(out, pr)
	}
	return out
}

// logTail returns the last lines of a process's stderr and stdout logs.
func logTail(p paths, job, name string) string {
	var parts []string
	for _, stream := range []string{"stderr", "stdout"} {
		if t := tailFile(filepath.Join(p.sysLog(job), name+"."+stream+".log"), 1024); t != "" {
			parts = append(parts, stream+": "+t)
		}
	}
	return strings.Join(parts, "\n")
}

func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b, _ := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	s := string(b)
	if off > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return strings.TrimSpace(s)
}

// rotating is a log file rotated to .1 … .3 when it passes max bytes.
type rotating struct {
	mu   sync.Mutex
	path string
	max  int64
	f    *os.File
	size int64
}

const keepRotated = 3

func openRotating(path string, max int64) (*rotating, error) {
	r := &rotating{path: path, max: max}
	return r, r.open()
}

func (r *rotating) open() error {
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open process log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open process log: %w", err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

func (r *rotating) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.size > 0 && r.size+int64(len(b)) > r.max {
		r.f.Close()
		for i := keepRotated - 1; i >= 1; i-- {
			os.Rename(fmt.Sprintf("%s.%d", r.path, i), fmt.Sprintf("%s.%d", r.path, i+1))
		}
		os.Rename(r.path, r.path+".1")
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(b)
	r.size += int64(n)
	return n, err
}

func (r *rotating) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}
