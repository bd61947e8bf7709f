package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/local"
	"github.com/bosun-gitops/bosun/state"
)

// driftJourney: what the drift check (every --drift-interval) finds on VMs changed behind
// Bosun's back, as bosun.yml's drift: says. Report: a configuration changed on a VM gives
// one drifted status commit and nothing else, however long it lasts. Repair (a commit
// away): that same drift is repaired, jobs a reboot left stopped are restarted, and a VM
// deleted from the cloud is recreated — each by a task of the drift check's own.
func driftJourney(t *testing.T, m *manifestRepo, o *operator, data string) {
	is := o.instances(t)
	if len(is) < 3 {
		t.Fatalf("drift needs three instances: %+v", is)
	}
	greeting := greetingOf(t, o, is[0])
	// Every drift check is written as one status commit at most; the journey's earlier
	// commits are left out by counting from here.
	seen := len(m.statusLog())
	tasksBefore := o.tasks(t)

	// Report: the configuration on web/1's VM is changed by hand and the VM rebooted, so
	// its agent holds a configuration hash converge never applied.
	report := m.commitFile("bosun.yml", "only report demo's drift", func(s string) string {
		return replaceOnce(t, s, "    drift: repair\n", "    drift: report\n")
	})
	awaitAccepted(t, o, report)
	changed := is[1]
	specFile := filepath.Join(data, "cpi-local", "vms", changed.VMCID, "var", "vcap", "bosh", "spec.json")
	editSpec(t, specFile, func(spec map[string]any) { spec["configuration_hash"] = "edited-on-the-vm" })
	rebootVM(t, data, changed.VMCID)
	drifted := func(c statusCommit) bool { return strings.Contains(c.Message, "Bosun-Result: drifted") }
	c := m.awaitStatusWhere(o.d, "a drifted status commit", seen, time.Minute, drifted)
	for _, want := range []string{changed.Name, "configuration changed", "reported only"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("the drifted status commit does not say %q:\n%s", want, c.Message)
		}
	}
	// Several more checks see the same drift: no second commit, no task, the VM as it was.
	time.Sleep(5 * time.Second)
	if n := countStatus(m, seen, drifted); n != 1 {
		t.Errorf("%d drifted status commits for one drift; want 1", n)
	}
	if ts := newTasks(t, o, tasksBefore); len(ts) != 0 {
		t.Errorf("report mode queued tasks: %+v", ts)
	}
	if h := specHash(t, specFile); h != "edited-on-the-vm" {
		t.Errorf("report mode changed the VM's configuration hash to %q", h)
	}
	if t.Failed() {
		return
	}

	// Repair: the drift reported above, which lasts, is now repaired: a restart re-applies
	// the recorded spec.
	seen = len(m.statusLog())
	repair := m.commitFile("bosun.yml", "repair demo's drift", func(s string) string {
		return replaceOnce(t, s, "    drift: report\n", "    drift: repair\n")
	})
	awaitAccepted(t, o, repair)
	restarted := func(name string) func(statusCommit) bool {
		return func(c statusCommit) bool {
			return strings.Contains(c.Message, "restart "+name) && strings.Contains(c.Message, "Bosun-Result: succeeded")
		}
	}
	m.awaitStatusWhere(o.d, "the repair of "+changed.Name, seen, time.Minute, restarted(changed.Name))
	if h := specHash(t, specFile); h == "edited-on-the-vm" {
		t.Errorf("after the repair %s still has the hand-made configuration hash", changed.Name)
	}
	answersAgain(t, o, changed, greeting)
	repairTask(t, o, tasksBefore, changed.Name, state.TaskAction)

	// Repair: web/0's VM reboots and its jobs do not come back (its agent's mark that they
	// run is gone): the drift check restarts the instance.
	seen, tasksBefore = len(m.statusLog()), o.tasks(t)
	stopped := is[0]
	if err := os.Remove(filepath.Join(data, "cpi-local", "vms", stopped.VMCID, "var", "vcap", "bosh", "jobs_started")); err != nil {
		t.Fatal(err)
	}
	rebooted := time.Now()
	rebootVM(t, data, stopped.VMCID)
	m.awaitStatusWhere(o.d, "the repair of "+stopped.Name, seen, time.Minute, restarted(stopped.Name))
	t.Logf("%s rebooted without its jobs → restarted by the drift check: %s", stopped.Name, time.Since(rebooted).Round(100*time.Millisecond))
	answersAgain(t, o, stopped, greeting)
	repairTask(t, o, tasksBefore, stopped.Name, state.TaskAction)

	// Repair: web/2's VM is deleted from the cloud (has_vm false): resurrected on a new VM
	// by the drift check, before the health monitor misses its agent.
	seen, tasksBefore = len(m.statusLog()), o.tasks(t)
	gone := is[2]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := localCloud(t, data).DeleteVM(ctx, cpi.VMCID(gone.VMCID)); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	c = m.awaitStatusWhere(o.d, "the resurrection of "+gone.Name, seen, time.Minute, func(c statusCommit) bool {
		return strings.Contains(c.Message, "Bosun-Result: resurrected")
	})
	t.Logf("%s's VM deleted → %q: %s", gone.Name, strings.SplitN(c.Message, "\n", 2)[0], time.Since(deleted).Round(100*time.Millisecond))
	if !strings.Contains(c.Message, gone.Name) || !strings.Contains(c.Message, "vm missing") {
		t.Errorf("the resurrection's status commit does not say which instance and why:\n%s", c.Message)
	}
	var back api.Instance
	for _, in := range o.instances(t) {
		if in.ID == gone.ID {
			back = in
		}
	}
	if back.VMCID == "" || back.VMCID == gone.VMCID {
		t.Fatalf("after the repair %s is on VM %q; want a new VM (was %s)", gone.Name, back.VMCID, gone.VMCID)
	}
	answersAgain(t, o, back, greeting)
	repairTask(t, o, tasksBefore, gone.Name, state.TaskResurrect)
}

// greetingOf is what an instance's job answers, less its own name ("Hello from Bosun").
func greetingOf(t *testing.T, o *operator, in api.Instance) string {
	t.Helper()
	var body string
	waitFor(t, o.d, in.Name+" to answer", time.Minute, func() bool {
		b, err := get(in.IPs[0])
		body = b
		return err == nil
	})
	g, ok := strings.CutSuffix(strings.TrimSpace(body), " from web/"+in.ID)
	if !ok {
		t.Fatalf("%s answers %q; want a greeting from web/%s", in.Name, body, in.ID)
	}
	return g
}

// answersAgain waits for an instance to answer HTTP with greeting and its own name.
func answersAgain(t *testing.T, o *operator, in api.Instance, greeting string) {
	t.Helper()
	var body string
	waitFor(t, o.d, in.Name+" to answer HTTP again", time.Minute, func() bool {
		b, err := get(in.IPs[0])
		body = b
		return err == nil
	})
	if want := greeting + " from web/" + in.ID; strings.TrimSpace(body) != want {
		t.Errorf("%s answers %q, want %q", in.Name, body, want)
	}
}

// repairTask checks that exactly one task was queued since before, by the drift check
// (user bosun), of type typ, naming instance name, and that it ends done (its status
// commit comes just before the task is marked finished).
func repairTask(t *testing.T, o *operator, before []state.Task, name, typ string) {
	t.Helper()
	var ts []state.Task
	waitFor(t, o.d, "the repair task of "+name+" to end", time.Minute, func() bool {
		ts = newTasks(t, o, before)
		return !slices.ContainsFunc(ts, func(tk state.Task) bool { return !state.TaskFinal(tk.State) })
	})
	if len(ts) != 1 || ts[0].Type != typ || ts[0].User != "bosun" || ts[0].State != state.TaskDone ||
		!strings.Contains(ts[0].Description, "repair drift") || !strings.Contains(ts[0].Description, name) {
		t.Errorf("tasks since the drift: %+v; want one done %s task by bosun repairing the drift of %s", ts, typ, name)
	}
}

func newTasks(t *testing.T, o *operator, before []state.Task) []state.Task {
	t.Helper()
	var out []state.Task
	for _, tk := range o.tasks(t) {
		if !slices.ContainsFunc(before, func(b state.Task) bool { return b.ID == tk.ID }) {
			out = append(out, tk)
		}
	}
	return out
}

// countStatus counts demo's status commits after the first skip ones that pred accepts.
func countStatus(m *manifestRepo, skip int, pred func(statusCommit) bool) int {
	log := m.statusLog()
	n := 0
	for _, c := range log[:max(0, len(log)-skip)] {
		if pred(c) {
			n++
		}
	}
	return n
}

// awaitAccepted waits until the director accepted revision sha (bosun.yml changes make no
// task and no status commit).
func awaitAccepted(t *testing.T, o *operator, sha string) {
	t.Helper()
	waitFor(t, o.d, "revision "+sha[:7]+" accepted", time.Minute, func() bool {
		var revs []map[string]any
		o.json(t, &revs, "revisions")
		for _, r := range revs {
			if r["sha"] == sha {
				return r["verdict"] == "accepted"
			}
		}
		return false
	})
}

func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("no %q in:\n%s", old, s)
	}
	return strings.Replace(s, old, new, 1)
}

// editSpec changes the applied spec an agent keeps on its VM, as a hand on the VM would.
func editSpec(t *testing.T, file string, change func(map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	change(spec)
	if b, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func specHash(t *testing.T, file string) string {
	t.Helper()
	var spec struct {
		Hash string `json:"configuration_hash"`
	}
	b, err := os.ReadFile(file)
	if err == nil {
		err = json.Unmarshal(b, &spec)
	}
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return spec.Hash
}

// localCloud is the director's local CPI as another hand on the same cloud: what it does
// to VMs, Bosun did not ask for.
func localCloud(t *testing.T, data string) *local.CPI {
	t.Helper()
	c, err := local.New(local.Config{Dir: filepath.Join(data, "cpi-local"), AgentPath: filepath.Join(filepath.Dir(directorBinary(t)), "bosun-agent"), StopGrace: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rebootVM reboots a local VM through the cloud: its processes stop, its agent starts
// again from what is on the VM.
func rebootVM(t *testing.T, data, cid string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := localCloud(t, data).RebootVM(ctx, cpi.VMCID(cid)); err != nil {
		t.Fatalf("reboot VM %s: %v", cid, err)
	}
}
