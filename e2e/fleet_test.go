package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/jackc/pgx/v5"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/local"
)

// journey is what the later phases of TestReconcileJourney share: one data dir, so the
// demo's Go package is compiled once for the whole run.
type journey struct {
	t    *testing.T
	base string
	data string
	m    *manifestRepo
	d    *directorProc
	args []string // the director's flags, for a restart
	web0 string   // web/0's instance id since the first deploy
	// directors are every director that ran on data, for diagnosing leftovers.
	directors *[]*directorProc
}

// commitTree commits whatever change made to the worktree, deletions included.
func (m *manifestRepo) commitTree(msg string, change func(dir string)) string {
	m.t.Helper()
	change(m.dir)
	wt, err := m.repo.Worktree()
	if err != nil {
		m.t.Fatal(err)
	}
	st, err := wt.Status()
	if err != nil {
		m.t.Fatal(err)
	}
	for path, fs := range st {
		if fs.Worktree == git.Deleted {
			_, err = wt.Remove(path)
		} else {
			_, err = wt.Add(path)
		}
		if err != nil {
			m.t.Fatalf("stage %s: %v", path, err)
		}
	}
	sig := &object.Signature{Name: "Dee Ployer", Email: "dee@example.com", When: time.Now()}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		m.t.Fatal(err)
	}
	return h.String()
}

// privateAddresses moves the demo's manual network to a /24 of 127/8 picked at random and
// returns the commit: the template's 127.77.0.0/24 may be taken by `make demo` or by
// another run of these tests on the same machine.
func (m *manifestRepo) privateAddresses() string {
	m.t.Helper()
	prefix := fmt.Sprintf("127.%d.%d", 120+rand.IntN(100), rand.IntN(256))
	return m.commitTree("e2e: a private address range", func(dir string) {
		p := filepath.Join(dir, "cloud-config.yml")
		b, err := os.ReadFile(p)
		if err != nil {
			m.t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "127.77.0.", prefix+".")
		if s == string(b) {
			m.t.Fatalf("cloud-config.yml has no 127.77.0.x address to move:\n%s", b)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			m.t.Fatal(err)
		}
	})
}

func localCPIOf(t *testing.T, data string) *local.CPI {
	t.Helper()
	c, err := local.New(local.Config{Dir: filepath.Join(data, "cpi-local"), AgentPath: "bosun-agent", StopGrace: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cleanupLocalVMs deletes, when the test ends (failed or not), every VM of the local CPI
// under data: their agents and jobs run in sessions of their own and outlive the
// director by design. Then nothing may be left running from base: a process still there
// is reported with its log and the directors' lines about its VM, and killed. Register
// it before starting a director, so that it runs after the director's own cleanup;
// directors lists the directors that ran on data, for those lines.
func cleanupLocalVMs(t *testing.T, base, data string, directors func() []*directorProc) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c := localCPIOf(t, data)
		vms, err := c.ListVMs(ctx)
		if err != nil {
			t.Errorf("list local VMs to clean up: %v", err)
		}
		for _, vm := range vms {
			if err := c.DeleteVM(ctx, vm.CID); err != nil {
				t.Errorf("clean up local VM %s: %v", vm.CID, err)
			}
		}
		// Postgres may take a moment to go after its director.
		deadline := time.Now().Add(time.Minute)
		for len(procsUnder(base)) > 0 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		for _, p := range procsUnder(base) {
			pid, _ := strconv.Atoi(strings.Fields(p)[0])
			log, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fd/2", pid)) // an agent's log, even when its VM dir is gone
			var about []string
			if i := strings.Index(p, "/vms/"); i >= 0 {
				cid, _, _ := strings.Cut(p[i+len("/vms/"):], "/")
				for _, d := range directors() {
					for _, l := range strings.Split(d.stderr.String(), "\n") {
						if strings.Contains(l, cid) {
							about = append(about, l)
						}
					}
				}
			}
			t.Errorf("still running after the test, killed: %s\nits log:\n%s\nthe directors on its VM:\n%s", p, tailLines(string(log), 20), strings.Join(about, "\n"))
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// procsUnder lists the live processes whose command line names dir.
func procsUnder(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if i := strings.LastIndexByte(string(st), ')'); i > 0 && i+2 < len(st) && (st[i+2] == 'Z' || st[i+2] == 'X') {
				continue
			}
		}
		out = append(out, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(strings.TrimSpace(string(b)), "\x00", " ")))
	}
	return out
}

// withDB runs f on a connection to the director's Postgres (its port changes across
// restarts, so it is read each time).
func withDB(t *testing.T, data string, f func(ctx context.Context, conn *pgx.Conn)) {
	t.Helper()
	_, port := postmaster(t, data)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgSocketURL(data, port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	f(ctx, conn)
}

type instanceRow struct {
	ID, Deployment, Group string
	Index                 int
	VMCID, AgentID        string
	IPs                   []string
}

// checkFleet compares the local CPI's VMs with the instances Postgres holds: every VM
// belongs to exactly one instance and every instance has exactly one VM, its agent runs,
// its addresses are leased to it, and no write-ahead intent is left pending. It returns
// the instances by deployment.
func checkFleet(t *testing.T, data string) map[string][]instanceRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := localCPIOf(t, data)
	vms, err := c.ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var insts []instanceRow
	vmRows := map[string]string{} // cid → instance id
	pending := 0
	withDB(t, data, func(ctx context.Context, conn *pgx.Conn) {
		rows, err := conn.Query(ctx, `SELECT id::text, deployment, grp, idx, vm_cid, agent_id, ips FROM instances ORDER BY deployment, grp, idx`)
		if err != nil {
			t.Fatal(err)
		}
		insts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (instanceRow, error) {
			var i instanceRow
			err := r.Scan(&i.ID, &i.Deployment, &i.Group, &i.Index, &i.VMCID, &i.AgentID, &i.IPs)
			return i, err
		})
		if err != nil {
			t.Fatal(err)
		}
		rows, err = conn.Query(ctx, `SELECT cid, coalesce(instance_id::text, '') FROM vms`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var cid, inst string
			if err := rows.Scan(&cid, &inst); err != nil {
				t.Fatal(err)
			}
			vmRows[cid] = inst
		}
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM intents WHERE state = 'pending'`).Scan(&pending); err != nil {
			t.Fatal(err)
		}
	})
	if pending != 0 {
		t.Errorf("%d write-ahead intents still pending", pending)
	}

	cloud := map[cpi.VMCID]cpi.VMInfo{}
	for _, vm := range vms {
		cloud[vm.CID] = vm
	}
	owner := map[string]instanceRow{} // vm cid → the instance naming it
	byDeployment := map[string][]instanceRow{}
	for _, in := range insts {
		name := fmt.Sprintf("%s %s/%d (%s)", in.Deployment, in.Group, in.Index, in.ID)
		byDeployment[in.Deployment] = append(byDeployment[in.Deployment], in)
		if in.VMCID == "" {
			t.Errorf("instance %s has no VM", name)
			continue
		}
		if o, dup := owner[in.VMCID]; dup {
			t.Errorf("VM %s belongs to two instances: %s/%d and %s", in.VMCID, o.Group, o.Index, name)
		}
		owner[in.VMCID] = in
		vm, ok := cloud[cpi.VMCID(in.VMCID)]
		if !ok {
			t.Errorf("instance %s names VM %s, which the local CPI does not have", name, in.VMCID)
			continue
		}
		if vm.AgentID != in.AgentID {
			t.Errorf("instance %s: VM %s runs agent %s, the instance says %s", name, in.VMCID, vm.AgentID, in.AgentID)
		}
		if id := vm.Metadata["id"]; id != "" && id != in.ID {
			t.Errorf("VM %s's metadata names instance %s; it serves %s", in.VMCID, id, name)
		}
		if vmRows[in.VMCID] != in.ID {
			t.Errorf("the vms row of %s names instance %q; want %s", in.VMCID, vmRows[in.VMCID], name)
		}
		if !agentAlive(filepath.Join(data, "cpi-local", "vms", in.VMCID)) {
			t.Errorf("instance %s: the agent of VM %s is not running", name, in.VMCID)
		}
		for _, ip := range in.IPs {
			if b, err := os.ReadFile(filepath.Join(data, "cpi-local", "ips", ip)); err != nil || string(b) != in.VMCID {
				t.Errorf("instance %s: address %s is leased to %q (%v); want its VM %s", name, ip, b, err, in.VMCID)
			}
		}
	}
	for cid, vm := range cloud {
		if _, ok := owner[string(cid)]; !ok {
			t.Errorf("orphan VM %s (agent %s, metadata %v): no instance names it", cid, vm.AgentID, vm.Metadata)
		}
	}
	for cid := range vmRows {
		if _, ok := cloud[cpi.VMCID(cid)]; !ok {
			t.Errorf("the vms table holds %s, which the local CPI does not have", cid)
		}
	}
	// A lease held by a live VM must be one of that VM's instance's addresses.
	leases, _ := os.ReadDir(filepath.Join(data, "cpi-local", "ips"))
	for _, l := range leases {
		if strings.HasPrefix(l.Name(), ".") {
			continue // a write a crash interrupted: no lease
		}
		b, err := os.ReadFile(filepath.Join(data, "cpi-local", "ips", l.Name()))
		if err != nil {
			continue
		}
		if _, live := cloud[cpi.VMCID(b)]; live && !slices.Contains(owner[string(b)].IPs, l.Name()) {
			t.Errorf("address %s is leased to VM %s, whose instance does not have it", l.Name(), b)
		}
	}
	return byDeployment
}

func agentAlive(vmDir string) bool {
	b, err := os.ReadFile(filepath.Join(vmDir, "agent.pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && pid > 1 && syscall.Kill(pid, 0) == nil
}

// restart starts the director again on the same data dir, repository and ports, with
// the poll interval replaced: after a restart, pick-up is fsnotify's alone.
func (j *journey) restart() {
	t := j.t
	args := slices.Clone(j.args)
	for i, a := range args {
		if a == "--poll-interval" {
			args[i+1] = "10m"
		}
	}
	j.d = startDirector(t, args...)
	*j.directors = append(*j.directors, j.d)
	j.d.healthy(t)
}

// killMidRollout scales the demo to 10 instances two at a time, SIGKILLs the director
// while the rollout has made some VMs but not all, restarts it, and checks it converges
// with every VM belonging to exactly one instance.
func (j *journey) killMidRollout() {
	t, m := j.t, j.m
	phase := time.Now()
	c := localCPIOf(t, j.data)
	up := m.edit("scale to 10, two at a time", func(s string) string {
		s = strings.Replace(s, "instances: 1", "instances: 10", 1)
		return strings.Replace(s, "max_in_flight: 1", "max_in_flight: 2", 1)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	pgPid, port := postmaster(t, j.data)
	conn, err := pgx.Connect(ctx, pgSocketURL(j.data, port))
	if err != nil {
		t.Fatal(err)
	}
	// Kill once the canary's VM and at least one of a batch's exist (how many is drawn,
	// so that runs cover different points), while a create_vm is in flight if the poll
	// catches one: some of the 10 are made, some are being made, the rest are not.
	target := 3 + rand.IntN(5)
	var n, inFlight int
	var taskID int64
	for {
		select {
		case <-j.d.done:
			t.Fatalf("director exited before the kill:\n%s", j.d.stderr)
		default:
		}
		if ctx.Err() != nil {
			t.Fatalf("the scale-up never got under way; director output:\n%s", j.d.stderr)
		}
		vms, err := c.ListVMs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n = len(vms)
		inFlight, taskID = 0, 0
		_ = conn.QueryRow(ctx, `SELECT count(*) FROM intents WHERE state = 'pending' AND kind = 'create_vm'`).Scan(&inFlight)
		_ = conn.QueryRow(ctx, `SELECT coalesce(max(t.id), 0) FROM tasks t JOIN revisions r ON r.task_id = t.id WHERE r.sha = $1 AND t.state = 'processing'`, up).Scan(&taskID)
		if n >= 10 {
			t.Fatalf("the rollout made all %d VMs before the director could be killed", n)
		}
		if taskID != 0 && n >= target && (inFlight > 0 || n >= target+2) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := j.d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	j.d.wait(t)
	conn.Close(context.Background())
	t.Logf("SIGKILL at %d of 10 VMs (aimed at %d), %d create_vm in flight, task %d processing", n, target, inFlight, taskID)
	// Its Postgres follows (parent-death signal); the restart needs the data dir free.
	for syscall.Kill(pgPid, 0) == nil {
		if time.Since(killed) > 2*time.Minute {
			t.Fatalf("postgres %d still runs 2 minutes after its director was killed", pgPid)
		}
		time.Sleep(100 * time.Millisecond)
	}

	j.restart()
	restarted := time.Now()
	msg, sf := m.awaitStatus(j.d, up, 10*time.Minute)
	if sf.Result != "succeeded" || len(sf.Instances) != 10 {
		t.Fatalf("after the restart: %s\n%+v", msg, sf)
	}
	how := "requeued by the reaper after the worker TTL"
	if strings.Contains(j.d.stderr.String(), "released the task of a director that is gone") {
		how = "released at start: its owner's process is gone"
	}
	t.Logf("after the restart the task (%s) converged in %s", how, time.Since(restarted).Round(time.Second))
	if got := ids(sf)["web/0"]; got != j.web0 {
		t.Errorf("web/0 is %s after the restart; was %s", got, j.web0)
	}
	fleet := checkFleet(t, j.data)
	if len(fleet["demo"]) != 10 {
		t.Errorf("Postgres holds %d demo instances; want 10", len(fleet["demo"]))
	}
	for _, in := range sf.Instances {
		found := false
		for _, row := range fleet["demo"] {
			found = found || row.ID == in.ID && row.VMCID == in.VMCID
		}
		if !found {
			t.Errorf("status names %s (%s) on VM %s; Postgres does not", in.Name, in.ID, in.VMCID)
		}
	}
	answers(t, sf, "Fixed")
	if out := j.d.stderr.String(); strings.Contains(out, "deleting a VM whose creation was interrupted") {
		t.Logf("the restarted director deleted VMs whose creation was interrupted")
	}

	// Back to the demo's two instances, one at a time, for the phases that follow.
	down := m.edit("back to 2", func(s string) string {
		s = strings.Replace(s, "instances: 10", "instances: 2", 1)
		return strings.Replace(s, "max_in_flight: 2", "max_in_flight: 1", 1)
	})
	if _, sf = m.awaitStatus(j.d, down, 10*time.Minute); sf.Result != "succeeded" || len(sf.Instances) != 2 {
		t.Fatalf("scale 10 → 2: %+v", sf)
	}
	if fleet := checkFleet(t, j.data); len(fleet["demo"]) != 2 {
		t.Errorf("Postgres holds %d demo instances; want 2", len(fleet["demo"]))
	}
	t.Logf("phase kill mid-rollout: %s", time.Since(phase).Round(time.Second))
}

// latency measures commit-to-converged for one-property changes picked up by fsnotify
// (the restarted director polls every 10 minutes), split into Bosun's share and the
// job's: the instances' update intervals (drain, stop, apply, start, and the watch
// time's minimum of 1 s per instance) are the job's, the rest is Bosun's. Printed, not
// asserted: the figures go to BENCHMARKS.md.
func (j *journey) latency() {
	t, m := j.t, j.m
	phase := time.Now()
	prev := "Fixed"
	const runs = 3
	var totals, bosuns, jobs []time.Duration
	for i := 1; i <= runs; i++ {
		greeting := fmt.Sprintf("Latency %d", i)
		from := prev
		committed := time.Now()
		sha := m.edit("greeting "+greeting, func(s string) string {
			return strings.Replace(s, "greeting: "+from, "greeting: "+greeting, 1)
		})
		committed = committed.Add(time.Since(committed) / 2) // the ref moved during the commit
		var sf statusFile
		deadline := time.Now().Add(5 * time.Minute)
		for {
			var ok bool
			if _, sf, ok = m.findStatus(sha); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no status commit for %s within 5 minutes:\n%s", sha[:7], j.d.stderr)
			}
			time.Sleep(10 * time.Millisecond)
		}
		seen := time.Now()
		if sf.Result != "succeeded" {
			t.Fatalf("greeting %q: %+v", greeting, sf)
		}
		var received, created, started, finished time.Time
		var spans [][2]time.Time
		var timeline []string
		// The status commit is written before the task is marked finished: wait for that.
		for finished.IsZero() {
			if time.Now().After(deadline) {
				t.Fatalf("task of %s never finished:\n%s", sha[:7], j.d.stderr)
			}
			spans, timeline = nil, nil
			withDB(t, j.data, func(ctx context.Context, conn *pgx.Conn) {
				var task int64
				var fin *time.Time
				err := conn.QueryRow(ctx, `SELECT r.received, t.id, t.created_at, t.started_at, t.finished_at
					FROM revisions r JOIN tasks t ON t.id = r.task_id WHERE r.sha = $1`, sha).Scan(&received, &task, &created, &started, &fin)
				if err != nil {
					t.Fatalf("revision %s and its task: %v", sha[:7], err)
				}
				if fin == nil {
					return
				}
				finished = *fin
				rows, err := conn.Query(ctx, `SELECT time, stage, state, task FROM task_events WHERE task_id = $1 ORDER BY seq`, task)
				if err != nil {
					t.Fatal(err)
				}
				open := map[string]time.Time{}
				for rows.Next() {
					var at time.Time
					var stage, st, name string
					if err := rows.Scan(&at, &stage, &st, &name); err != nil {
						t.Fatal(err)
					}
					timeline = append(timeline, fmt.Sprintf("%8s %s %s %s", ms(at.Sub(committed)), stage, name, st))
					if stage != "Updating instance" {
						continue
					}
					switch st {
					case "started":
						open[name] = at
					case "finished", "failed":
						spans = append(spans, [2]time.Time{open[name], at})
					}
				}
			})
			if finished.IsZero() {
				time.Sleep(20 * time.Millisecond)
			}
		}
		job := union(spans)
		total := seen.Sub(committed)
		bosun := total - job
		first, last := finished, started
		for _, sp := range spans {
			if sp[0].Before(first) {
				first = sp[0]
			}
			if sp[1].After(last) {
				last = sp[1]
			}
		}
		t.Logf("latency %d: commit→status commit %s = Bosun %s + job %s (%d instances) | commit→revision judged %s, →task created %s, →task started %s, →first instance %s, →last instance done %s, →task finished %s, →status commit seen %s",
			i, ms(total), ms(bosun), ms(job), len(spans),
			ms(received.Sub(committed)), ms(created.Sub(committed)), ms(started.Sub(committed)),
			ms(first.Sub(committed)), ms(last.Sub(committed)), ms(finished.Sub(committed)), ms(total))
		if i == 1 {
			t.Logf("task events of the first change (time since the commit):\n%s", strings.Join(timeline, "\n"))
			if len(sf.Instances) > 0 && sf.Instances[0].VMCID != "" {
				b, _ := os.ReadFile(filepath.Join(j.data, "cpi-local", "vms", sf.Instances[0].VMCID, "var/vcap/bosh/log/bosun-agent.log"))
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("the agent log of %s, last lines:\n%s", sf.Instances[0].Name, strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
		}
		totals, bosuns, jobs = append(totals, total), append(bosuns, bosun), append(jobs, job)
		answers(t, sf, greeting)
		prev = greeting
	}
	t.Logf("latency over %d one-property changes (median): commit→converged %s, Bosun's share %s, the job's %s",
		runs, ms(median(totals)), ms(median(bosuns)), ms(median(jobs)))
	// The later phases expect the journey's greeting again; a change that renders as
	// before makes no task, so this one is waited for like any other.
	back := m.edit("greeting Fixed", func(s string) string { return strings.Replace(s, "greeting: "+prev, "greeting: Fixed", 1) })
	if _, sf := m.awaitStatus(j.d, back, 5*time.Minute); sf.Result != "succeeded" {
		t.Fatalf("greeting back to Fixed: %+v", sf)
	}
	t.Logf("phase latency: %s", time.Since(phase).Round(time.Second))
}

// union is the time covered by the spans.
func union(spans [][2]time.Time) time.Duration {
	sort.Slice(spans, func(a, b int) bool { return spans[a][0].Before(spans[b][0]) })
	var total time.Duration
	var end time.Time
	for _, s := range spans {
		if s[0].IsZero() {
			continue
		}
		if s[0].After(end) {
			total += s[1].Sub(s[0])
			end = s[1]
		} else if s[1].After(end) {
			total += s[1].Sub(end)
			end = s[1]
		}
	}
	return total
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

const extraManifest = `name: extra

releases:
- name: demo
  version: latest

stemcells:
- alias: default
  os: local
  version: latest

update:
  canaries: 1
  max_in_flight: 1
  canary_watch_time: 1000-30000
  update_watch_time: 1000-30000

instance_groups:
- name: api
  instances: 1
  azs: [z1]
  vm_type: default
  stemcell: default
  networks:
  - name: default
  jobs:
  - name: web
    release: demo
    properties:
      greeting: Extra
`

// deleteDeployment adds a second deployment, removes its directory (the other one is
// untouched), then removes every deployment at once: an empty repository deletes nothing.
func (j *journey) deleteDeployment() {
	t, m := j.t, j.m
	phase := time.Now()
	add := m.commitTree("add the extra deployment", func(dir string) {
		if err := os.MkdirAll(filepath.Join(dir, "deployments/extra"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "deployments/extra/manifest.yml"), []byte(extraManifest), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	msg, sf := m.awaitStatusOf(j.d, "extra", add, 5*time.Minute)
	if sf.Result != "succeeded" || len(sf.Instances) != 1 {
		t.Fatalf("extra deployed: %s\n%+v", msg, sf)
	}
	answers(t, sf, "Extra")
	fleet := checkFleet(t, j.data)
	if len(fleet["extra"]) != 1 || len(fleet["demo"]) != 2 {
		t.Fatalf("instances before the deletion: %+v", fleet)
	}
	demo := fleet["demo"]

	del := m.commitTree("delete the extra deployment\n\nBosun-Allow-Delete: extra", func(dir string) {
		if err := os.RemoveAll(filepath.Join(dir, "deployments/extra")); err != nil {
			t.Fatal(err)
		}
	})
	msg, sf = m.awaitStatusOf(j.d, "extra", del, 5*time.Minute)
	if sf.Result != "deleted" || !strings.Contains(msg, "Bosun-Result: deleted") || len(sf.Instances) != 0 {
		t.Errorf("the status of the deleted deployment: %s\n%+v", msg, sf)
	}
	fleet = checkFleet(t, j.data)
	if len(fleet["extra"]) != 0 {
		t.Errorf("extra still has instances: %+v", fleet["extra"])
	}
	if fmt.Sprint(fleet["demo"]) != fmt.Sprint(demo) {
		t.Errorf("deleting extra touched demo:\nbefore %+v\nafter  %+v", demo, fleet["demo"])
	}
	withDB(t, j.data, func(ctx context.Context, conn *pgx.Conn) {
		for _, q := range []string{
			`SELECT count(*) FROM instances WHERE deployment = 'extra'`,
			`SELECT count(*) FROM vms WHERE deployment = 'extra'`,
			`SELECT count(*) FROM disks WHERE deployment = 'extra'`,
			`SELECT count(*) FROM deployments WHERE name = 'extra'`,
		} {
			var n int
			if err := conn.QueryRow(ctx, q).Scan(&n); err != nil || n != 0 {
				t.Errorf("%s: %d, %v; want 0", q, n, err)
			}
		}
	})
	disks, _ := filepath.Glob(filepath.Join(j.data, "cpi-local", "disks", "*.json"))
	for _, d := range disks {
		if b, err := os.ReadFile(d); err == nil && strings.Contains(string(b), `"extra"`) {
			t.Errorf("a disk of the deleted deployment is left: %s\n%s", d, b)
		}
	}

	// Every deployment gone at once, deletion allowed by the commit: still nothing is
	// deleted (Argo CD's allowEmpty lesson).
	empty := m.commitTree("remove every deployment\n\nBosun-Allow-Delete: demo", func(dir string) {
		if err := os.RemoveAll(filepath.Join(dir, "deployments")); err != nil {
			t.Fatal(err)
		}
	})
	var verdict string
	var messages []string
	deadline := time.Now().Add(5 * time.Minute)
	for verdict == "" {
		if time.Now().After(deadline) {
			t.Fatalf("the empty repository's commit %s was never judged:\n%s", empty[:7], j.d.stderr)
		}
		time.Sleep(200 * time.Millisecond)
		withDB(t, j.data, func(ctx context.Context, conn *pgx.Conn) {
			err := conn.QueryRow(ctx, `SELECT verdict, policy_messages FROM revisions WHERE sha = $1`, empty).Scan(&verdict, &messages)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				t.Fatal(err)
			}
		})
	}
	t.Logf("an empty repository: verdict %s, %q", verdict, messages)
	if !slices.ContainsFunc(messages, func(s string) bool { return strings.Contains(s, "empty repository") }) {
		t.Errorf("the empty repository's revision does not say why nothing is deleted: %s %q", verdict, messages)
	}
	withDB(t, j.data, func(ctx context.Context, conn *pgx.Conn) {
		// The tasks of a revision are made in the transaction that judges it.
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM tasks WHERE deployment = 'demo' AND type = 'delete_deployment'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("delete tasks for demo: %d, %v", n, err)
		}
	})
	if msg, sf, ok := m.findStatusOf("demo", empty); ok && sf.Result == "deleted" {
		t.Errorf("the empty repository deleted demo: %s", msg)
	}
	if fleet := checkFleet(t, j.data); fmt.Sprint(fleet["demo"]) != fmt.Sprint(demo) {
		t.Errorf("the empty repository touched demo:\nbefore %+v\nafter  %+v", demo, fleet["demo"])
	}
	for _, in := range demo {
		if body, err := get(in.IPs[0]); err != nil || !strings.HasPrefix(body, "Fixed") {
			t.Errorf("demo %s/%d after the empty repository: %q, %v", in.Group, in.Index, body, err)
		}
	}
	t.Logf("phase delete: %s", time.Since(phase).Round(time.Second))
}
