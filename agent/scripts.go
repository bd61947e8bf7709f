package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
)

// script runs one job script with its output appended to sys/log/<job>/<name>.*.log and
// returns its stdout. The script and anything it started are killed when ctx ends.
func (a *Agent) script(ctx context.Context, job, name string, args, env []string) (string, error) {
	path := filepath.Join(a.paths.jobDir(job), "bin", name)
	logBase := filepath.Join(a.paths.sysLog(job), name)
	if err := os.MkdirAll(filepath.Dir(logBase), 0o755); err != nil {
		return "", err
	}
	stdoutLog, err := os.OpenFile(logBase+".stdout.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer stdoutLog.Close()
	stderrLog, err := os.OpenFile(logBase+".stderr.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer stderrLog.Close()
	var out strings.Builder
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = a.paths.jobDir(job)
	cmd.Env = append(append(os.Environ(), a.processEnv()...), env...)
	cmd.Stdout = io.MultiWriter(stdoutLog, &limitedBuilder{b: &out, max: 64 << 10})
	cmd.Stderr = stderrLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return out.String(), protocol.Errorf(protocol.CodeJobFailed, "job %s: bin/%s: %v\n%s", job, name, err, logTail(a.paths, job, name))
	}
	return out.String(), nil
}

type limitedBuilder struct {
	b   *strings.Builder
	max int
}

func (l *limitedBuilder) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// jobsWith lists the applied jobs that ship bin/<name>.
func (a *Agent) jobsWith(name string) []string {
	var out []string
	for _, job := range a.jobNames() {
		if st, err := os.Stat(filepath.Join(a.paths.jobDir(job), "bin", name)); err == nil && st.Mode().IsRegular() {
			out = append(out, job)
		}
	}
	return out
}

// eachJob runs f for every job concurrently, as BOSH runs scripts, and joins the errors.
func eachJob(jobs []string, f func(job string) error) error {
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f(job) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

var scriptNames = map[string]bool{"pre-start": true, "post-start": true, "post-deploy": true, "pre-stop": true, "post-stop": true}

func (a *Agent) runScript(ctx context.Context, args []json.RawMessage) (any, error) {
	var name string
	var opts struct {
		Env map[string]string `json:"env"`
	}
	if err := arg("run_script", args, 0, &name, true); err != nil {
		return nil, err
	}
	if err := arg("run_script", args, 1, &opts, false); err != nil {
		return nil, err
	}
	if !scriptNames[name] {
		return nil, protocol.Errorf(protocol.CodeBadArguments, "run_script: %q is not a lifecycle script (pre-start, post-start, post-deploy, pre-stop, post-stop)", name)
	}
	var env []string
	for _, k := range sortedKeys(opts.Env) {
		env = append(env, k+"="+opts.Env[k])
	}
	err := eachJob(a.jobsWith(name), func(job string) error {
		_, err := a.script(ctx, job, name, nil, env)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("run_script %s: %w", name, err)
	}
	return "executed", nil
}

// drain runs the jobs' drain scripts (bosh-spec §8.5), following dynamic drain (a
// negative answer means "wait that long and ask again") until each says it is done.
// It answers 0: the waiting already happened here.
func (a *Agent) drain(ctx context.Context, args []json.RawMessage) (any, error) {
	var kind string
	if err := arg("drain", args, 0, &kind, true); err != nil {
		return nil, err
	}
	current := a.currentSpec()
	var next *protocol.ApplySpec
	if err := arg("drain", args, 1, &next, false); err != nil {
		return nil, err
	}
	var first []string
	switch kind {
	case "update":
		if next == nil {
			return nil, protocol.Errorf(protocol.CodeBadArguments, "drain update: the next apply spec is missing")
		}
		first = []string{jobChange(current, *next), hashChange(current, *next)}
		first = append(first, updatedPackages(current, *next)...)
	case "shutdown":
		if err := a.t.Publish(protocol.ShutdownSubject(a.settings.AgentID), []byte("{}")); err != nil {
			a.log.Warn("shutdown notice not sent", "err", err)
		}
		first = []string{"job_shutdown", "hash_unchanged"}
	case "status":
		return nil, protocol.Errorf(protocol.CodeBadArguments, "drain status is no longer supported: the agent follows dynamic drain itself")
	default:
		return nil, protocol.Errorf(protocol.CodeBadArguments, "drain: type %q: want update or shutdown", kind)
	}
	nextDisk := 0
	if next != nil {
		nextDisk = next.PersistentDisk
	}
	env := []string{
		fmt.Sprintf(`BOSH_JOB_STATE={"persistent_disk":%d}`, current.PersistentDisk),
		fmt.Sprintf(`BOSH_JOB_NEXT_STATE={"persistent_disk":%d}`, nextDisk),
	}
	err := eachJob(a.jobsWith("drain"), func(job string) error {
		args := first
		for {
			out, err := a.script(ctx, job, "drain", args, env)
			if err != nil {
				return err
			}
			fields := strings.Fields(out)
			if len(fields) == 0 {
				return protocol.Errorf(protocol.CodeJobFailed, "job %s: bin/drain printed nothing; it must print an integer", job)
			}
			n, err := strconv.Atoi(fields[len(fields)-1])
			if err != nil {
				return protocol.Errorf(protocol.CodeJobFailed, "job %s: bin/drain printed %q; it must print an integer", job, fields[len(fields)-1])
			}
			wait := time.Duration(n) * time.Second
			if n < 0 {
				wait = -wait
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			if n >= 0 {
				return nil
			}
			args = []string{"job_check_status", "hash_unchanged"}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("drain %s: %w", kind, err)
	}
	return 0, nil
}

func jobChange(cur, next protocol.ApplySpec) string {
	switch {
	case cur.Job.Name == "" && len(cur.Job.Templates) == 0:
		return "job_new"
	case jobsDigest(cur) == jobsDigest(next):
		return "job_unchanged"
	default:
		return "job_changed"
	}
}

func jobsDigest(s protocol.ApplySpec) string {
	b, _ := json.Marshal(s.Job)
	return string(b)
}

func hashChange(cur, next protocol.ApplySpec) string {
	switch {
	case cur.ConfigurationHash == "":
		return "hash_new"
	case cur.ConfigurationHash == next.ConfigurationHash:
		return "hash_unchanged"
	default:
		return "hash_changed"
	}
}

func updatedPackages(cur, next protocol.ApplySpec) []string {
	var out []string
	for _, name := range sortedKeys(next.Packages) {
		if cur.Packages[name].Version != next.Packages[name].Version {
			out = append(out, name)
		}
	}
	return out
}
