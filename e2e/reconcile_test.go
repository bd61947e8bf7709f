package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"
)

var agentBinOnce sync.Once

// agentBinary builds cmd/bosun-agent beside the bosun binary, where the local CPI looks.
func agentBinary(t *testing.T) {
	t.Helper()
	dir := filepath.Dir(directorBinary(t))
	var err error
	var out []byte
	agentBinOnce.Do(func() {
		out, err = exec.Command("go", "build", "-o", filepath.Join(dir, "bosun-agent"), "../cmd/bosun-agent").CombinedOutput()
	})
	if err != nil {
		t.Fatalf("go build ./cmd/bosun-agent: %v\n%s", err, out)
	}
}

// manifestRepo is the repository `bosun init` made, which the test commits to as a team would.
type manifestRepo struct {
	t    *testing.T
	dir  string
	repo *git.Repository
}

func (m *manifestRepo) edit(msg string, change func(manifest string) string) string {
	m.t.Helper()
	return m.commitFile("deployments/demo/manifest.yml", msg, change)
}

// commitFile changes one file of the repository and commits it.
func (m *manifestRepo) commitFile(name, msg string, change func(string) string) string {
	m.t.Helper()
	p := filepath.Join(m.dir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		m.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(change(string(b))), 0o644); err != nil {
		m.t.Fatal(err)
	}
	wt, err := m.repo.Worktree()
	if err != nil {
		m.t.Fatal(err)
	}
	if _, err := wt.Add(name); err != nil {
		m.t.Fatal(err)
	}
	sig := &object.Signature{Name: "Dee Ployer", Email: "dee@example.com", When: time.Now()}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		m.t.Fatal(err)
	}
	return h.String()
}

type statusInstance struct {
	Name  string   `yaml:"name"`
	ID    string   `yaml:"id"`
	State string   `yaml:"state"`
	VMCID string   `yaml:"vm_cid"`
	IPs   []string `yaml:"ips"`
}

type statusFile struct {
	SourceCommit string           `yaml:"source_commit"`
	Result       string           `yaml:"result"`
	Instances    []statusInstance `yaml:"instances"`
	Error        *struct {
		Message  string `yaml:"message"`
		Instance string `yaml:"instance"`
		Process  string `yaml:"process"`
		LogTail  string `yaml:"log_tail"`
	} `yaml:"error"`
}

// awaitStatus waits for a status commit on demo naming source commit sha, and returns its
// message and file.
func (m *manifestRepo) awaitStatus(d *directorProc, sha string, within time.Duration) (string, statusFile) {
	m.t.Helper()
	return m.awaitStatusOf(d, "demo", sha, within)
}

// awaitStatusOf waits for a status commit on deployment naming source commit sha.
func (m *manifestRepo) awaitStatusOf(d *directorProc, deployment, sha string, within time.Duration) (string, statusFile) {
	m.t.Helper()
	deadline := time.Now().Add(within)
	for {
		select {
		case <-d.done:
			m.t.Fatalf("director exited while waiting for the status of %s:\n%s", sha[:7], d.stderr)
		default:
		}
		if msg, f, ok := m.findStatusOf(deployment, sha); ok {
			return msg, f
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("no status commit for %s within %s; director output:\n%s", sha[:7], within, d.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (m *manifestRepo) findStatus(sha string) (string, statusFile, bool) {
	return m.findStatusOf("demo", sha)
}

// findStatusOf finds the status commit of deployment naming source commit sha.
func (m *manifestRepo) findStatusOf(deployment, sha string) (string, statusFile, bool) {
	ref, err := m.repo.Reference(plumbing.NewBranchReferenceName("bosun/status"), true)
	if err != nil {
		return "", statusFile{}, false
	}
	iter, err := m.repo.Log(&git.LogOptions{From: ref.Hash()})
	if err != nil {
		return "", statusFile{}, false
	}
	defer iter.Close()
	for {
		c, err := iter.Next()
		if err != nil {
			return "", statusFile{}, false
		}
		if !strings.HasPrefix(c.Message, deployment+": ") || !strings.Contains(c.Message, "Bosun-Source: "+sha) {
			continue
		}
		f, err := c.File("deployments/" + deployment + ".yml")
		if err != nil {
			return "", statusFile{}, false
		}
		s, err := f.Contents()
		if err != nil {
			return "", statusFile{}, false
		}
		var sf statusFile
		if err := yaml.Unmarshal([]byte(s), &sf); err != nil {
			m.t.Fatalf("status file: %v\n%s", err, s)
		}
		return c.Message, sf, true
	}
}

// get asks an instance's job over HTTP.
func get(ip string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + ip + ":8080/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// answers checks every instance answers with greeting and its own name.
func answers(t *testing.T, sf statusFile, greeting string) {
	t.Helper()
	for _, in := range sf.Instances {
		if len(in.IPs) == 0 {
			t.Fatalf("instance %s has no address: %+v", in.Name, in)
		}
		var body string
		var err error
		for range 50 { // the job may still be binding right after converge says running
			if body, err = get(in.IPs[0]); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		group, _, _ := strings.Cut(in.Name, "/")
		if want := greeting + " from " + group + "/" + in.ID; err != nil || strings.TrimSpace(body) != want {
			t.Errorf("%s (%s) answers %q, %v; want %q", in.Name, in.IPs[0], body, err, want)
		}
	}
}

// String shows a status file in failures, its error included.
func (sf statusFile) String() string {
	s := fmt.Sprintf("result %s of %s, instances %+v", sf.Result, sf.SourceCommit, sf.Instances)
	if sf.Error != nil {
		s += fmt.Sprintf("\nerror: %s\ninstance: %s process: %s\nlog tail:\n%s", sf.Error.Message, sf.Error.Instance, sf.Error.Process, sf.Error.LogTail)
	}
	return s
}

func ids(sf statusFile) map[string]string {
	out := map[string]string{}
	for _, in := range sf.Instances {
		out[in.Name] = in.ID
	}
	return out
}

// TestReconcileJourney is issue #6's "done when" on the embedded default: bosun init, a
// director on it, and commits a team would make.
func TestReconcileJourney(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the demo's Go package on local-CPI VMs")
	}
	base := reachableTempDir(t)
	t.Cleanup(func() { killLocalVMs(t, base) }) // runs after the director is stopped
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
	// Another demo on this machine (make demo, a parallel run) holds the template's
	// addresses: this run's VMs get a range of their own.
	first := m.privateAddresses()

	data := filepath.Join(base, "data")
	var directors []*directorProc
	// Registered first, so it runs after every director stopped.
	cleanupLocalVMs(t, base, data, func() []*directorProc { return directors })
	args := []string{"--dev", "--data-dir", data, "--repo", dir,
		"--listen", directorFreePort(t), "--nats-listen", directorFreePort(t), "--poll-interval", "2s"}
	d := startDirector(t, args...)
	directors = append(directors, d)
	d.healthy(t)

	// The first commit converges: both instances answer with the manifest's greeting.
	msg, sf := m.awaitStatus(d, first, 15*time.Minute)
	if sf.Result != "succeeded" || len(sf.Instances) != 2 {
		t.Fatalf("first deploy: %s\n%s\ndirector output:\n%s", msg, sf, d.stderr)
	}
	answers(t, sf, "Hello from Bosun")
	before := ids(sf)

	// A new greeting: the canary first, then the other; a succeeded status names the commit.
	committed := time.Now()
	greet := m.edit("greet in French", func(s string) string { return strings.Replace(s, "Hello from Bosun", "Bonjour", 1) })
	msg, sf = m.awaitStatus(d, greet, 5*time.Minute)
	// A figure for BENCHMARKS.md, not an assertion: commit → both instances updated (two
	// canary/update watch windows of at least 1 s each) → status commit seen.
	t.Logf("one-property change: commit to succeeded status commit in %v (%s)", time.Since(committed).Round(10*time.Millisecond), strings.SplitN(msg, "\n", 2)[0])
	if sf.Result != "succeeded" || !strings.Contains(msg, "Bosun-Result: succeeded") || !strings.Contains(msg, "2 updated") {
		t.Fatalf("new greeting: %s", msg)
	}
	answers(t, sf, "Bonjour")
	if got := ids(sf); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("instance ids moved: %v → %v", before, got)
	}
	canaryFirst(t, base, greet)

	// A job that cannot start: the canary fails, the other instance is left as it was.
	bad := m.edit("bad port", func(s string) string {
		return strings.Replace(s, "greeting: Bonjour", "greeting: Broken\n      port: not-a-port", 1)
	})
	msg, sf = m.awaitStatus(d, bad, 5*time.Minute)
	if sf.Result != "failed" || sf.Error == nil || sf.Error.Process == "" {
		t.Fatalf("failing job: %s\n%+v", msg, sf)
	}
	untouched := 0
	for _, in := range sf.Instances {
		if body, err := get(in.IPs[0]); err == nil && strings.HasPrefix(body, "Bonjour") {
			untouched++
		}
	}
	if untouched != 1 {
		t.Errorf("after a failed canary %d instances still answer Bonjour; want the non-canary one", untouched)
	}
	fix := m.edit("fix port", func(s string) string {
		return strings.Replace(s, "greeting: Broken\n      port: not-a-port", "greeting: Fixed", 1)
	})
	_, sf = m.awaitStatus(d, fix, 5*time.Minute)
	if sf.Result != "succeeded" {
		t.Fatalf("fix: %+v", sf)
	}
	answers(t, sf, "Fixed")

	// vm_strategy create-swap-delete and a new env: each instance's new VM boots on a new
	// address while the old one still serves, then takes over; ids stay.
	old := map[string]string{}
	for _, in := range sf.Instances {
		old[in.Name] = in.IPs[0] + " " + in.VMCID
	}
	swap := m.edit("swap VMs", func(s string) string {
		s = strings.Replace(s, "  canaries: 1\n", "  canaries: 1\n  vm_strategy: create-swap-delete\n", 1)
		return strings.Replace(s, "  vm_type: default\n", "  vm_type: default\n  env: {bosun_e2e: swapped}\n", 1)
	})
	msg, sf = m.awaitStatus(d, swap, 5*time.Minute)
	if sf.Result != "succeeded" || !strings.Contains(msg, "2 recreated") {
		t.Fatalf("create-swap-delete: %s\n%+v", msg, sf)
	}
	for _, in := range sf.Instances {
		if was := strings.Fields(old[in.Name]); len(was) != 2 || was[0] == in.IPs[0] || was[1] == in.VMCID {
			t.Errorf("%s: %s → %s %s; want a new VM on a new address", in.Name, old[in.Name], in.IPs[0], in.VMCID)
		}
	}
	if got := ids(sf); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("instance ids moved: %v → %v", before, got)
	}
	answers(t, sf, "Fixed")

	// Scale 2 → 3 → 1: nobody is renamed by accident.
	up := m.edit("scale up", func(s string) string { return strings.Replace(s, "instances: 2", "instances: 3", 1) })
	_, sf = m.awaitStatus(d, up, 5*time.Minute)
	if sf.Result != "succeeded" || len(sf.Instances) != 3 {
		t.Fatalf("scale up: %+v", sf)
	}
	answers(t, sf, "Fixed")
	for name, id := range before {
		if ids(sf)[name] != id {
			t.Errorf("scale up renamed %s: %s → %s", name, id, ids(sf)[name])
		}
	}
	down := m.edit("scale down", func(s string) string { return strings.Replace(s, "instances: 3", "instances: 1", 1) })
	_, sf = m.awaitStatus(d, down, 5*time.Minute)
	if sf.Result != "succeeded" || len(sf.Instances) != 1 || sf.Instances[0].ID != before["web/0"] {
		t.Fatalf("scale down: %+v; want web/0 (%s) alone", sf, before["web/0"])
	}
	answers(t, sf, "Fixed")

	// The rest of #6: a director killed mid-rollout, commit-to-converged latency, deleting
	// a deployment and an empty repository, on the same data dir (fleet_test.go).
	j := &journey{t: t, base: base, data: data, m: m, d: d, args: args, web0: before["web/0"], directors: &directors}
	j.killMidRollout()
	j.latency()
	j.deleteDeployment()
}

// canaryFirst checks, in the task's event log, that the first instance touched is the
// canary and that it finished before the other one started.
func canaryFirst(t *testing.T, base, sha string) {
	t.Helper()
	_, port := postmaster(t, filepath.Join(base, "data"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgSocketURL(filepath.Join(base, "data"), port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT e.task || ' ' || array_to_string(e.tags, ',') || ' ' || e.stage FROM task_events e
		JOIN revisions r ON r.task_id = e.task_id WHERE r.sha = $1 ORDER BY e.seq`, sha)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if strings.Contains(l, "web/") {
			if !strings.Contains(strings.ToLower(l), "canary") {
				t.Errorf("the first instance event is not the canary's: %q\nevents:\n%s", l, strings.Join(lines, "\n"))
			}
			return
		}
	}
	t.Errorf("no instance events for %s:\n%s", sha[:7], strings.Join(lines, "\n"))
}
