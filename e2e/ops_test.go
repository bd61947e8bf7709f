package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"gopkg.in/yaml.v3"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/state"
)

// TestOpsJourney is what operators and policy authors do with a running fleet (issues
// #7, #8, #9), on one demo deployment of three local-CPI VMs: the policy gate refuses
// commits without touching anything, the CLI the dev director logged in shows and steers
// everything, a killed VM comes back — unless most of the fleet dies at once — and drift
// found every second is reported or repaired as bosun.yml says.
func TestOpsJourney(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the demo's Go package on local-CPI VMs")
	}
	base := reachableTempDir(t)
	data := filepath.Join(base, "data")
	// Registered before the director starts, so it runs after the director is stopped:
	// nothing recreates what it kills.
	t.Cleanup(func() { killLocalVMs(t, base) })

	dir := filepath.Join(base, "repo")
	if out, err := exec.Command(directorBinary(t), "init", dir).CombinedOutput(); err != nil {
		t.Fatalf("bosun init: %v\n%s", err, out)
	}
	agentBinary(t)
	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifestRepo{t: t, dir: dir, repo: repo}
	// Three instances whose agents heartbeat every second, so that a 5 s agent timeout
	// tells a dead VM from a live one.
	// Three instances with persistent disks whose agents heartbeat every second, so that a
	// 5 s agent timeout tells a dead VM from a live one; bosun.yml lets instances with
	// disks be resurrected.
	m.edit("three web instances with disks, heartbeats every second", func(s string) string {
		s = strings.Replace(s, "instances: 2", "instances: 3", 1)
		return strings.Replace(s, "  vm_type: default\n", "  vm_type: default\n  persistent_disk_type: default\n  env:\n    bosun:\n      heartbeat_interval: 1s\n", 1)
	})
	by := filepath.Join(dir, "bosun.yml")
	byb, err := os.ReadFile(by)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(byb, []byte("      enabled: true\n")) {
		t.Fatalf("bosun.yml has no resurrection section to extend:\n%s", byb)
	}
	if err := os.WriteFile(by, bytes.Replace(byb, []byte("      enabled: true\n"), []byte("      enabled: true\n      persistent_disks: true\n"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	// A second deployment, of no VMs, so that deleting demo leaves a repository that
	// still describes a fleet (an empty one never deletes anything).
	b, err := os.ReadFile(filepath.Join(dir, "deployments/demo/manifest.yml"))
	if err != nil {
		t.Fatal(err)
	}
	spare := strings.Replace(strings.Replace(string(b), "name: demo\n", "name: spare\n", 1), "instances: 3", "instances: 0", 1)
	if err := os.MkdirAll(filepath.Join(dir, "deployments/spare"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "deployments/spare/manifest.yml"), []byte(spare), 0o644); err != nil {
		t.Fatal(err)
	}
	m.ownAddresses()
	first := m.commitAll("a spare deployment, and addresses of our own")

	env := []string{"BOSUN_CONFIG=" + filepath.Join(base, "cli", "config.json"), "BOSUN_ENVIRONMENT=", "BOSUN_TOKEN="}
	d := startDirectorEnv(t, env, "--dev", "--data-dir", data, "--repo", dir,
		"--listen", directorFreePort(t), "--nats-listen", directorFreePort(t), "--poll-interval", "1s",
		"--agent-timeout", "5s", "--health-interval", "1s", "--meltdown-min-down", "2", "--meltdown-percent", "50",
		"--drift-interval", "1s")
	d.healthy(t)
	o := &operator{t: t, env: env, d: d}

	msg, sf := m.awaitStatus(d, first, 15*time.Minute)
	if sf.Result != "succeeded" || len(sf.Instances) != 3 {
		t.Fatalf("first deploy: %s\n%+v", msg, sf)
	}
	answers(t, sf, "Hello from Bosun")

	t.Run("policy gate", func(t *testing.T) { policyGate(t, m.on(t), o, data) })
	if t.Failed() {
		return
	}
	t.Run("cli", func(t *testing.T) { cliJourney(t, m.on(t), o, base) })
	if t.Failed() {
		return
	}
	t.Run("resurrection", func(t *testing.T) { resurrection(t, m.on(t), o, data) })
	if t.Failed() {
		return
	}
	t.Run("drift", func(t *testing.T) { driftJourney(t, m.on(t), o, data) })
}

// on is m for a subtest: its failures are the subtest's.
func (m *manifestRepo) on(t *testing.T) *manifestRepo {
	c := *m
	c.t = t
	return &c
}

// awaitSource waits for demo's status commit naming source commit sha.
func (m *manifestRepo) awaitSource(d *directorProc, sha string, within time.Duration) statusCommit {
	m.t.Helper()
	return m.awaitStatusWhere(d, "source "+sha[:7], 0, within, func(c statusCommit) bool {
		return strings.Contains(c.Message, "Bosun-Source: "+sha)
	})
}

// ownAddresses gives the repository's local VMs addresses of their own: other
// directors' local VMs on this machine (the template's 127.77.0.0/24, perhaps left
// running by a crashed test) must not answer for ours, nor hold our ports. The change is
// left in the work tree, for the caller's next commit.
func (m *manifestRepo) ownAddresses() {
	m.t.Helper()
	cc := filepath.Join(m.dir, "cloud-config.yml")
	b, err := os.ReadFile(cc)
	if err != nil {
		m.t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("127.77.0.")) {
		m.t.Fatalf("cloud-config.yml no longer uses 127.77.0.0/24:\n%s", b)
	}
	subnet := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(150), rand.IntN(250))
	if err := os.WriteFile(cc, bytes.ReplaceAll(b, []byte("127.77.0."), []byte(subnet)), 0o644); err != nil {
		m.t.Fatal(err)
	}
}

// operator runs CLI verbs against the dev director with the login it wrote.
type operator struct {
	t   *testing.T
	env []string
	d   *directorProc
}

// run runs a verb that must succeed and returns its stdout.
func (o *operator) run(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := bosunCLI(t, o.env, "", args...)
	if code != 0 {
		t.Fatalf("bosun %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// json runs a verb with --json, checks it prints one valid JSON document, and decodes it.
func (o *operator) json(t *testing.T, v any, args ...string) {
	t.Helper()
	out := o.run(t, append(args, "--json")...)
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("bosun %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
	if dec.More() {
		t.Fatalf("bosun %s --json printed more than one JSON document:\n%s", strings.Join(args, " "), out)
	}
}

func (o *operator) instances(t *testing.T) []api.Instance {
	t.Helper()
	var is []api.Instance
	o.json(t, &is, "instances", "-d", "demo")
	slices.SortFunc(is, func(a, b api.Instance) int { return a.Index - b.Index })
	return is
}

func (o *operator) tasks(t *testing.T) []state.Task {
	t.Helper()
	var ts []state.Task
	o.json(t, &ts, "tasks", "--recent", "1000")
	return ts
}

func (o *operator) events(t *testing.T) []state.Event {
	t.Helper()
	var es []state.Event
	o.json(t, &es, "events", "-d", "demo", "--limit", "1000")
	return es
}

// vmDirs lists the local CPI's VMs as the cloud holds them.
func vmDirs(t *testing.T, data string) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(data, "cpi-local", "vms"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// commitAll commits the work tree as it is (additions and deletions) as Dee would.
func (m *manifestRepo) commitAll(msg string) string {
	m.t.Helper()
	wt, err := m.repo.Worktree()
	if err != nil {
		m.t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		m.t.Fatal(err)
	}
	sig := &object.Signature{Name: "Dee Ployer", Email: "dee@example.com", When: time.Now()}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig, All: true})
	if err != nil {
		m.t.Fatal(err)
	}
	return h.String()
}

// statusCommit is one commit of the status branch with demo's status file.
type statusCommit struct {
	Message string
	File    opsStatusFile
}

type opsStatusFile struct {
	SourceCommit string `yaml:"source_commit"`
	Result       string `yaml:"result"`
	Task         string `yaml:"task"`
	Instances    []struct {
		Name  string   `yaml:"name"`
		ID    string   `yaml:"id"`
		State string   `yaml:"state"`
		VMCID string   `yaml:"vm_cid"`
		IPs   []string `yaml:"ips"`
	} `yaml:"instances"`
}

// statusLog lists demo's status commits, newest first.
func (m *manifestRepo) statusLog() []statusCommit {
	m.t.Helper()
	ref, err := m.repo.Reference(plumbing.NewBranchReferenceName("bosun/status"), true)
	if err != nil {
		return nil
	}
	iter, err := m.repo.Log(&git.LogOptions{From: ref.Hash()})
	if err != nil {
		m.t.Fatal(err)
	}
	defer iter.Close()
	var out []statusCommit
	_ = iter.ForEach(func(c *object.Commit) error {
		if !strings.HasPrefix(c.Message, "demo: ") {
			return nil
		}
		sc := statusCommit{Message: c.Message}
		if f, err := c.File("deployments/demo.yml"); err == nil {
			if s, err := f.Contents(); err == nil {
				if err := yaml.Unmarshal([]byte(s), &sc.File); err != nil {
					m.t.Fatalf("status file of %s: %v\n%s", c.Hash, err, s)
				}
			}
		}
		out = append(out, sc)
		return nil
	})
	return out
}

// awaitStatusWhere waits for a status commit, among those after the first skip ones
// seen, that pred accepts.
func (m *manifestRepo) awaitStatusWhere(d *directorProc, what string, skip int, within time.Duration, pred func(statusCommit) bool) statusCommit {
	m.t.Helper()
	deadline := time.Now().Add(within)
	for {
		select {
		case <-d.done:
			m.t.Fatalf("director exited while waiting for %s:\n%s", what, d.stderr)
		default:
		}
		log := m.statusLog()
		for _, c := range log[:max(0, len(log)-skip)] {
			if pred(c) {
				return c
			}
		}
		if time.Now().After(deadline) {
			var msgs []string
			for _, c := range log {
				msgs = append(msgs, strings.SplitN(c.Message, "\n", 2)[0])
			}
			refs, _ := exec.Command("git", "-C", m.dir, "log", "--all", "--format=%h %d %s").CombinedOutput()
			m.t.Fatalf("no status commit for %s within %s; status log:\n%s\nrepository:\n%s\ndirector output:\n%s", what, within, strings.Join(msgs, "\n"), refs, tail(d.stderr.String(), 60))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}

func waitFor(t *testing.T, d *directorProc, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		select {
		case <-d.done:
			t.Fatalf("director exited while waiting for %s:\n%s", what, d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; director output:\n%s", within, what, tail(d.stderr.String(), 60))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// policyGate: a commit the repo-template's deletion policy denies is rejected with its
// message and touches nothing; so is one that also deletes that policy; a compliant
// commit then converges.
func policyGate(t *testing.T, m *manifestRepo, o *operator, data string) {
	beforeInst, beforeVMs, beforeTasks := o.instances(t), vmDirs(t, data), len(o.tasks(t))

	if err := os.RemoveAll(filepath.Join(m.dir, "deployments", "demo")); err != nil {
		t.Fatal(err)
	}
	del := m.commitAll("retire the demo")
	c := m.awaitSource(o.d, del, 3*time.Minute)
	msg, sf := c.Message, c.File
	const deny = `deleting deployment demo needs a "Bosun-Allow-Delete: demo" trailer in the commit message`
	if sf.Result != "rejected" || !strings.Contains(msg, "Bosun-Result: rejected") || !strings.Contains(msg, deny) {
		t.Errorf("a deletion without its trailer: result %q, message:\n%s", sf.Result, msg)
	}

	// Deleting the policy in the same commit does not help: the last accepted revision's
	// policies judge it.
	if err := os.Remove(filepath.Join(m.dir, "policies", "deletion.rego")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(m.dir, "policies", "deletion_test.rego")); err != nil {
		t.Fatal(err)
	}
	both := m.commitAll("no more deletion policy, and retire the demo")
	c = m.awaitSource(o.d, both, 3*time.Minute)
	msg, sf = c.Message, c.File
	if sf.Result != "rejected" || !strings.Contains(msg, deny) {
		t.Errorf("a deletion that also deletes its policy: result %q, message:\n%s", sf.Result, msg)
	}

	var revs []map[string]any
	o.json(t, &revs, "revisions")
	verdicts := map[string]any{}
	for _, r := range revs {
		for _, k := range []string{"sha", "commit", "SHA"} {
			if s, ok := r[k].(string); ok {
				verdicts[s] = r["verdict"]
			}
		}
	}
	for _, sha := range []string{del, both} {
		if verdicts[sha] != "rejected" {
			t.Errorf("bosun revisions: %s has verdict %v, want rejected: %v", sha[:7], verdicts[sha], revs)
		}
	}

	// Nothing moved: same instances and VMs, no task.
	if after := o.instances(t); !sameInstances(beforeInst, after) {
		t.Errorf("instances changed across rejected commits:\nbefore %+v\nafter  %+v", beforeInst, after)
	}
	if after := vmDirs(t, data); !slices.Equal(beforeVMs, after) {
		t.Errorf("VMs changed across rejected commits: %v → %v", beforeVMs, after)
	}
	if after := len(o.tasks(t)); after != beforeTasks {
		t.Errorf("rejected commits made tasks: %d → %d", beforeTasks, after)
	}

	// A compliant commit: the deployment and the policy back, and a new greeting.
	for _, p := range []string{"deployments/demo/manifest.yml", "policies/deletion.rego", "policies/deletion_test.rego"} {
		out, err := exec.Command("git", "-C", m.dir, "checkout", m.firstAccepted(), "--", p).CombinedOutput()
		if err != nil {
			t.Fatalf("git checkout %s: %v\n%s", p, err, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(m.dir, "deployments/demo/manifest.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.dir, "deployments/demo/manifest.yml"), bytes.Replace(b, []byte("Hello from Bosun"), []byte("Hola"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := m.commitAll("keep the demo, greet in Spanish")
	okMsg, okSF := m.awaitStatus(o.d, ok, 5*time.Minute)
	if okSF.Result != "succeeded" {
		t.Fatalf("compliant commit: %s\n%+v", okMsg, okSF)
	}
	answers(t, okSF, "Hola")
	if got := ids(okSF); len(got) != 3 {
		t.Errorf("after the compliant commit: %v", got)
	}
}

// firstAccepted is the commit the director converged first: HEAD~2 once the two rejected
// commits are made.
func (m *manifestRepo) firstAccepted() string {
	m.t.Helper()
	out, err := exec.Command("git", "-C", m.dir, "rev-parse", "HEAD~2").Output()
	if err != nil {
		m.t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func sameInstances(a, b []api.Instance) bool {
	key := func(is []api.Instance) string {
		var parts []string
		for _, i := range is {
			parts = append(parts, fmt.Sprintf("%s %s %s %s %v %s", i.Name, i.ID, i.VMCID, i.AgentID, i.IPs, i.State))
		}
		return strings.Join(parts, "\n")
	}
	return key(a) == key(b)
}

// cliJourney drives the converged demo only through the CLI.
func cliJourney(t *testing.T, m *manifestRepo, o *operator, base string) {
	// instances --ps: every process running.
	out := o.run(t, "instances", "-d", "demo", "--ps")
	if !strings.Contains(out, "3 instances") || strings.Count(out, "running") < 6 { // 3 instances + 3 processes
		t.Errorf("bosun instances --ps:\n%s", out)
	}
	var is []api.Instance
	o.json(t, &is, "instances", "-d", "demo", "--ps")
	for _, i := range is {
		if i.ProcessState != "running" || i.Probe == nil || len(i.Probe.Processes) == 0 {
			t.Errorf("instances --ps --json: %s is %q with %+v", i.Name, i.ProcessState, i.Probe)
			continue
		}
		for _, p := range i.Probe.Processes {
			if p.State != "running" {
				t.Errorf("instances --ps --json: %s process %s is %q", i.Name, p.Name, p.State)
			}
		}
	}

	// vms: one per instance.
	out = o.run(t, "vms", "-d", "demo")
	if !strings.Contains(out, "3 vms") {
		t.Errorf("bosun vms:\n%s", out)
	}
	var vms []map[string]any
	o.json(t, &vms, "vms", "-d", "demo")
	if len(vms) != 3 {
		t.Errorf("vms --json: %d VMs: %v", len(vms), vms)
	}
	for _, verb := range [][]string{{"deployments"}, {"locks"}, {"revisions"}, {"sources"}, {"events"}, {"tasks", "--recent"}} {
		var v any
		o.json(t, &v, verb...)
	}

	// task --follow while a deploy runs: BOSH-style progress lines to the end.
	before := o.tasks(t)
	deploy := m.edit("greet in Italian", func(s string) string { return strings.Replace(s, "greeting: Hola", "greeting: Ciao", 1) })
	var task state.Task
	waitFor(t, o.d, "the deploy task of "+deploy[:7], 3*time.Minute, func() bool {
		for _, tk := range o.tasks(t) {
			if tk.Type == "deploy" && !slices.ContainsFunc(before, func(b state.Task) bool { return b.ID == tk.ID }) {
				task = tk
				return true
			}
		}
		return false
	})
	followed := o.run(t, "task", strconv.FormatInt(task.ID, 10), "--follow")
	prefix := fmt.Sprintf("Task %d | ", task.ID)
	progress := 0
	for _, l := range strings.Split(followed, "\n") {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, "web/") {
			progress++
		}
	}
	if progress < 3 || !strings.Contains(followed, fmt.Sprintf("Task %d done", task.ID)) || !strings.Contains(followed, "canary") {
		t.Errorf("bosun task %d --follow:\n%s", task.ID, followed)
	}
	_, sf := m.awaitStatus(o.d, deploy, 5*time.Minute)
	if sf.Result != "succeeded" {
		t.Fatalf("deploy %s: %+v", deploy[:7], sf)
	}
	answers(t, sf, "Ciao")
	// A task's --json is a stream: one JSON document per line, events then the task.
	lines := strings.Split(strings.TrimSpace(o.run(t, "task", strconv.FormatInt(task.ID, 10), "--json")), "\n")
	for _, l := range lines {
		var v map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Errorf("task --json line %q: %v", l, err)
		}
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, `{"task":`) || !strings.Contains(last, `"state":"done"`) {
		t.Errorf("task --json ends with %q; want the task, done", last)
	}

	// stop, then start, web/0: its job stops answering, then answers again; both are
	// events and status commits.
	is = o.instances(t)
	web0 := is[0]
	if web0.Name != "web/0" || len(web0.IPs) == 0 {
		t.Fatalf("instances: %+v", is)
	}
	seen := len(m.statusLog())
	out = o.run(t, "stop", "-d", "demo", "web/0")
	if !strings.Contains(out, "done") {
		t.Errorf("bosun stop:\n%s", out)
	}
	if body, err := get(web0.IPs[0]); err == nil {
		t.Errorf("web/0 still answers after stop: %q", body)
	}
	out = o.run(t, "instances", "-d", "demo", "--ps")
	if !strings.Contains(out, "stopped") {
		t.Errorf("instances --ps after stop:\n%s", out)
	}
	m.awaitStatusWhere(o.d, "stop web/0", seen, time.Minute, func(c statusCommit) bool {
		return strings.Contains(c.Message, "stop web/0") && strings.Contains(c.Message, "Bosun-Result: succeeded")
	})
	seen = len(m.statusLog())
	o.run(t, "start", "-d", "demo", "web/0")
	var body string
	waitFor(t, o.d, "web/0 to answer after start", time.Minute, func() bool {
		b, err := get(web0.IPs[0])
		body = b
		return err == nil
	})
	if want := "Ciao from web/" + web0.ID; strings.TrimSpace(body) != want {
		t.Errorf("web/0 after start answers %q, want %q", body, want)
	}
	m.awaitStatusWhere(o.d, "start web/0", seen, time.Minute, func(c statusCommit) bool {
		return strings.Contains(c.Message, "start web/0") && strings.Contains(c.Message, "Bosun-Result: succeeded")
	})
	acts := map[string]bool{}
	for _, e := range o.events(t) {
		if e.Instance == "web/0" || strings.Contains(e.ObjectName, "web/0") || e.Instance == web0.ID {
			acts[e.Action] = true
		}
	}
	if !acts["stop"] || !acts["start"] {
		t.Errorf("events of web/0: actions %v; want stop and start", acts)
	}
	if out := o.run(t, "events", "-d", "demo"); !strings.Contains(out, "stop") || !strings.Contains(out, "start") {
		t.Errorf("bosun events:\n%s", out)
	}

	// logs: the job's stdout/stderr, unpacked.
	logDir := filepath.Join(base, "logs")
	o.run(t, "logs", "-d", "demo", "web/0", "--dir", logDir)
	found := false
	_ = filepath.WalkDir(logDir, func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte("greeter: web/"+web0.ID+" listening")) {
				found = true
			}
		}
		return nil
	})
	if !found {
		var files []string
		_ = filepath.WalkDir(logDir, func(p string, de os.DirEntry, err error) error {
			files = append(files, p)
			return nil
		})
		t.Errorf("bosun logs: no file holds the greeter's start line; got %v", files)
	}

	// An unknown deployment: one line, exit 1.
	for _, args := range [][]string{{"instances", "-d", "nope"}, {"vms", "-d", "nope"}, {"stop", "-d", "nope", "web/0"}, {"logs", "-d", "nope", "web/0"}} {
		out, errOut, code := bosunCLI(t, o.env, "", args...)
		if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "no deployment named nope") || out != "" {
			t.Errorf("bosun %s: exit %d, stdout %q, stderr %q; want exit 1 and one line naming the deployment", strings.Join(args, " "), code, out, errOut)
		}
	}
}

// resurrection: a VM killed whole comes back as a new VM of the same instance; killing
// most of the fleet is a meltdown, where nothing is recreated; cck then reports them.
func resurrection(t *testing.T, m *manifestRepo, o *operator, data string) {
	is := o.instances(t)
	victim := is[1]
	seen := len(m.statusLog())
	tasksBefore := o.tasks(t)
	// What the job keeps on its persistent disk must survive the VM.
	if victim.DiskCID == "" {
		t.Fatalf("%s has no persistent disk: %+v", victim.Name, victim)
	}
	kept := "written before " + victim.Name + " died\n"
	if err := os.WriteFile(filepath.Join(data, "cpi-local", "vms", victim.VMCID, "var", "vcap", "store", "e2e-kept"), []byte(kept), 0o644); err != nil {
		t.Fatal(err)
	}
	killVM(t, data, victim.VMCID)
	killed := time.Now()

	c := m.awaitStatusWhere(o.d, "the resurrection of "+victim.Name, seen, 3*time.Minute, func(c statusCommit) bool {
		return strings.Contains(c.Message, "Bosun-Result: resurrected")
	})
	if !strings.Contains(c.Message, victim.Name) || !strings.Contains(c.Message, "unresponsive") {
		t.Errorf("resurrection status commit does not say which instance and why:\n%s", c.Message)
	}
	t.Logf("%s killed → status %q: %s", victim.Name, strings.SplitN(c.Message, "\n", 2)[0], time.Since(killed).Round(time.Second))
	var back *struct {
		Name  string   `yaml:"name"`
		ID    string   `yaml:"id"`
		State string   `yaml:"state"`
		VMCID string   `yaml:"vm_cid"`
		IPs   []string `yaml:"ips"`
	}
	for i := range c.File.Instances {
		if c.File.Instances[i].Name == victim.Name {
			back = &c.File.Instances[i]
		}
	}
	if back == nil || back.ID != victim.ID || back.VMCID == victim.VMCID || back.VMCID == "" || len(back.IPs) == 0 {
		t.Fatalf("after resurrection %s is %+v; want id %s on a new VM (was %s)", victim.Name, back, victim.ID, victim.VMCID)
	}
	if want := victim.Name + ": VM " + victim.VMCID + " → " + back.VMCID; !strings.Contains(c.Message, want) {
		t.Errorf("resurrection status commit does not say %q:\n%s", want, c.Message)
	}
	if b, err := os.ReadFile(filepath.Join(data, "cpi-local", "vms", back.VMCID, "var", "vcap", "store", "e2e-kept")); err != nil || string(b) != kept {
		t.Errorf("the persistent disk's file on the new VM: %q, %v; want %q", b, err, kept)
	}
	for _, i := range o.instances(t) {
		if i.ID == victim.ID && i.DiskCID != victim.DiskCID {
			t.Errorf("%s's disk moved from %s to %s", victim.Name, victim.DiskCID, i.DiskCID)
		}
	}
	var body string
	waitFor(t, o.d, victim.Name+" to answer HTTP again", time.Minute, func() bool {
		b, err := get(back.IPs[0])
		body = b
		return err == nil
	})
	if want := "Ciao from web/" + victim.ID; strings.TrimSpace(body) != want {
		t.Errorf("resurrected %s answers %q, want %q", victim.Name, body, want)
	}
	var rez []state.Task
	for _, tk := range o.tasks(t) {
		if tk.Type == state.TaskResurrect && !slices.ContainsFunc(tasksBefore, func(b state.Task) bool { return b.ID == tk.ID }) {
			rez = append(rez, tk)
		}
	}
	if len(rez) != 1 || rez[0].User != "health_monitor" || rez[0].State != "done" {
		t.Errorf("resurrect tasks: %+v; want one done, by health_monitor", rez)
	}
	alerted := false
	for _, e := range o.events(t) {
		if e.User == "health_monitor" && e.Action == "alert" && (strings.Contains(e.Instance, victim.ID) || strings.Contains(e.ObjectName, victim.ID)) {
			alerted = true
		}
	}
	if !alerted {
		t.Errorf("no health monitor alert about %s in bosun events:\n%s", victim.Name, o.run(t, "events", "-d", "demo"))
	}
	if t.Failed() {
		return
	}

	// Meltdown: the two others die too. With the first death still in the window, three
	// of three are down within it: one alert, nothing recreated.
	is = o.instances(t)
	tasksBefore = o.tasks(t)
	for _, i := range []api.Instance{is[0], is[2]} {
		killVM(t, data, i.VMCID)
	}
	melted := time.Now()
	meltdowns := func() int {
		n := 0
		for _, e := range o.events(t) {
			if e.User == "health_monitor" && strings.Contains(e.ObjectName, "meltdown") {
				n++
			}
		}
		return n
	}
	waitFor(t, o.d, "a meltdown alert", 2*time.Minute, func() bool { return meltdowns() > 0 })
	t.Logf("two more VMs killed → meltdown alert: %s", time.Since(melted).Round(time.Second))
	// The monitor keeps analysing every second; give it many passes to misbehave.
	time.Sleep(10 * time.Second)
	if n := meltdowns(); n != 1 {
		t.Errorf("%d meltdown alerts; want one", n)
	}
	for _, tk := range o.tasks(t) {
		if !slices.ContainsFunc(tasksBefore, func(b state.Task) bool { return b.ID == tk.ID }) {
			t.Errorf("task %d (%s: %s) queued during a meltdown", tk.ID, tk.Type, tk.Description)
		}
	}

	// cck reports the two dead agents and what it would do about them.
	out, errOut, code := bosunCLI(t, o.env, "", "cck", "-d", "demo")
	t.Logf("bosun cck -d demo: exit %d\n%s%s", code, out, errOut)
	names := func(i api.Instance) bool { return strings.Contains(out, i.Name) || strings.Contains(out, i.ID) }
	if code == 1 && names(is[0]) && names(is[2]) {
		var probs []map[string]any
		out, _, _ := bosunCLI(t, o.env, "", "cck", "-d", "demo", "--json")
		if err := json.Unmarshal([]byte(out), &probs); err != nil || len(probs) < 2 {
			t.Errorf("cck --json: %v\n%s", err, out)
		}
	} else {
		t.Errorf("bosun cck -d demo does not report %s and %s: exit %d\n%s%s", is[0].Name, is[2].Name, code, out, errOut)
	}

	// Bring them back as an operator would: recreate the group.
	seen = len(m.statusLog())
	o.run(t, "recreate", "-d", "demo", "web")
	is = o.instances(t)
	for _, i := range is {
		if len(i.IPs) == 0 {
			t.Fatalf("after recreate %s has no address", i.Name)
		}
		waitFor(t, o.d, i.Name+" to answer after recreate", time.Minute, func() bool {
			b, err := get(i.IPs[0])
			body = b
			return err == nil
		})
		if want := "Ciao from web/" + i.ID; strings.TrimSpace(body) != want {
			t.Errorf("%s answers %q after recreate, want %q", i.Name, body, want)
		}
	}
	t.Logf("meltdown → recreated by the operator: %s", time.Since(melted).Round(time.Second))
	m.awaitStatusWhere(o.d, "recreate web", seen, time.Minute, func(c statusCommit) bool {
		return strings.Contains(c.Message, "recreate") && strings.Contains(c.Message, "Bosun-Result: succeeded")
	})
}

// killVM kills a local-CPI VM whole, as a crashed machine: every process of its agent's
// session (the agent and the jobs it supervises), without a chance to say goodbye.
func killVM(t *testing.T, data, cid string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "cpi-local", "vms", cid, "agent.pid"))
	if err != nil {
		t.Fatalf("VM %s: %v", cid, err)
	}
	sid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || sid <= 1 {
		t.Fatalf("VM %s: agent.pid holds %q", cid, b)
	}
	if err := killSessions(map[int]bool{sid: true}); err != nil {
		t.Fatalf("kill VM %s: %v", cid, err)
	}
}

// killLocalVMs kills every local-CPI VM under base: the sessions of the agents running
// from it, and those recorded in its VMs' agent.pid files (jobs outlive a dead agent).
func killLocalVMs(t *testing.T, base string) {
	sids := map[int]bool{}
	pids, _ := filepath.Glob(filepath.Join(base, "data", "cpi-local", "vms", "*", "agent.pid"))
	for _, p := range pids {
		if b, err := os.ReadFile(p); err == nil {
			if sid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && sid > 1 {
				sids[sid] = true
			}
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, []byte(base)) || !bytes.Contains(b, []byte("bosun-agent")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if sid, err := sessionOf(pid); err == nil && sid > 1 {
			sids[sid] = true
		}
	}
	if err := killSessions(sids); err != nil {
		t.Errorf("local VMs left running: %v", err)
	}
}

// killSessions SIGKILLs every process of the given sessions until none is left.
func killSessions(sids map[int]bool) error {
	if len(sids) == 0 {
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []int
		procs, _ := filepath.Glob("/proc/[0-9]*")
		for _, p := range procs {
			pid, err := strconv.Atoi(filepath.Base(p))
			if err != nil || pid == os.Getpid() {
				continue
			}
			if sid, err := sessionOf(pid); err == nil && sids[sid] {
				left = append(left, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v survive SIGKILL", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sessionOf reads a live process's session id from /proc/<pid>/stat; zombies count as
// gone.
func sessionOf(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 4 || f[0] == "Z" || f[0] == "X" {
		return 0, errors.New("not running")
	}
	return strconv.Atoi(f[3])
}
