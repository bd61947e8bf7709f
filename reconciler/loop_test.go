package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/policy"
	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/reconciler/source"
	"github.com/bosun-gitops/bosun/reconciler/status"
	repotemplate "github.com/bosun-gitops/bosun/repo-template"
	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/bosun-gitops/bosun/state/postgres/pgtest"
	"github.com/bosun-gitops/bosun/state/postgres/worker"
)

// workRepo is a manifest repository tests commit to.
type workRepo struct {
	t    testing.TB
	dir  string
	repo *git.Repository
	n    int
	// signKey, when set, signs every commit.
	signKey *openpgp.Entity
}

func newWorkRepo(t testing.TB) *workRepo {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.Main}})
	if err != nil {
		t.Fatal(err)
	}
	return &workRepo{t: t, dir: dir, repo: repo}
}

// commit writes files (path → content; empty content deletes a file, "-dir/" deletes a
// directory) and commits them.
func (r *workRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	wt, err := r.repo.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	for p, c := range files {
		full := filepath.Join(r.dir, p)
		if strings.HasSuffix(p, "/") {
			if err := os.RemoveAll(full); err != nil {
				r.t.Fatal(err)
			}
			continue
		}
		if c == "" {
			if err := os.Remove(full); err != nil {
				r.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		r.t.Fatal(err)
	}
	r.n++
	when := time.Date(2026, 11, 22, 1, 0, r.n, 0, time.UTC)
	h, err := wt.Commit(msg, &git.CommitOptions{AllowEmptyCommits: true, SignKey: r.signKey,
		Author:    &object.Signature{Name: "Ada Author", Email: "ada@example.com", When: when},
		Committer: &object.Signature{Name: "Ada Author", Email: "ada@example.com", When: when}})
	if err != nil {
		r.t.Fatal(err)
	}
	return h.String()
}

func (r *workRepo) read(p string) string {
	b, err := os.ReadFile(filepath.Join(r.dir, p))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

// templateFiles is the repo-template with a second deployment, other (1 instance).
func templateFiles(t testing.TB) map[string]string {
	files := map[string]string{}
	err := fs.WalkDir(repotemplate.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(repotemplate.FS(), p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	files["deployments/other/manifest.yml"] = strings.Replace(strings.Replace(files["deployments/demo/manifest.yml"], "name: demo\n", "name: other\n", 1), "instances: 2", "instances: 1", 1)
	return files
}

// statusLog is the status branch's commit messages, newest first.
func (r *workRepo) statusLog() []string {
	r.t.Helper()
	ref, err := r.repo.Reference(plumbing.NewBranchReferenceName("bosun/status"), true)
	if err != nil {
		return nil
	}
	iter, err := r.repo.Log(&git.LogOptions{From: ref.Hash()})
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	_ = iter.ForEach(func(c *object.Commit) error { out = append(out, c.Message); return nil })
	return out
}

// fakeConverger plays converge against the real store: instances the plan creates get a
// row and a VM, deleted ones go. fail makes the first changed instance fail.
type fakeConverger struct {
	store *postgres.Store
	mu    sync.Mutex
	runs  []converge.Task
	acts  []actCall
	fail  bool
	vm    int
}

type actCall struct {
	Deployment string
	IDs        []string
	Params     state.ActionParams
}

// statusFile reads a file at the status branch's head.
func (r *workRepo) statusFile(p string) string {
	r.t.Helper()
	ref, err := r.repo.Reference(plumbing.NewBranchReferenceName("bosun/status"), true)
	if err != nil {
		r.t.Fatal(err)
	}
	c, err := r.repo.CommitObject(ref.Hash())
	if err != nil {
		r.t.Fatal(err)
	}
	f, err := c.File(p)
	if err != nil {
		r.t.Fatal(err)
	}
	s, err := f.Contents()
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

func (f *fakeConverger) Run(ctx context.Context, t converge.Task, emit func(state.TaskEvent) error) (converge.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs = append(f.runs, t)
	var res converge.Result
	for _, g := range t.Plan.Groups {
		for _, b := range g.Batches {
			for _, id := range b.Instances {
				var in plan.InstancePlan
				for _, x := range g.Instances {
					if x.ID == id {
						in = x
					}
				}
				if f.fail && in.Action != plan.Delete {
					res.Failure = &converge.Failure{Instance: in.Name() + " (" + in.ID + ")", Process: "web", Error: "process web is failing", LogTail: "greeter: bind: address in use"}
					return f.result(ctx, t.Deployment, res)
				}
				switch in.Action {
				case plan.Delete:
					if err := f.store.DeleteInstance(ctx, in.ID); err != nil {
						return res, err
					}
					res.Deleted++
				case plan.Create, plan.Recreate, plan.Update:
					f.vm++
					var ips []string
					for _, a := range in.IPs {
						ips = append(ips, a.IP)
					}
					vm := in.VMCID
					if in.Action != plan.Update || vm == "" {
						vm = fmt.Sprintf("vm-%d", f.vm)
					}
					if _, err := f.store.PutInstance(ctx, state.Instance{ID: in.ID, Deployment: t.Deployment, Group: in.Group, Index: in.Index, AZ: in.AZ, Bootstrap: in.Bootstrap, VMCID: vm, IPs: ips}); err != nil {
						return res, err
					}
					switch in.Action {
					case plan.Create:
						res.Created++
					case plan.Recreate:
						res.Recreated++
					default:
						res.Updated++
					}
				}
			}
		}
	}
	return f.result(ctx, t.Deployment, res)
}

func (f *fakeConverger) result(ctx context.Context, dep string, res converge.Result) (converge.Result, error) {
	insts, err := f.store.Instances(ctx, dep)
	for _, in := range insts {
		res.Instances = append(res.Instances, converge.InstanceResult{Name: fmt.Sprintf("%s/%d", in.Group, in.Index), ID: in.ID, AZ: in.AZ, State: "running", VMCID: in.VMCID, IPs: in.IPs})
	}
	return res, err
}

func (f *fakeConverger) Act(ctx context.Context, deployment string, ids []string, p state.ActionParams, emit func(state.TaskEvent) error) (converge.Result, error) {
	f.mu.Lock()
	f.acts = append(f.acts, actCall{deployment, ids, p})
	f.mu.Unlock()
	return f.result(ctx, deployment, converge.Result{Updated: len(ids)})
}

func (f *fakeConverger) lastRun(t *testing.T) converge.Task {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.runs) == 0 {
		t.Fatal("converge never ran")
	}
	return f.runs[len(f.runs)-1]
}

type fakeCloud struct {
	mu      sync.Mutex
	missing map[string]bool
}

func (c *fakeCloud) HasVM(_ context.Context, cid cpi.VMCID) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.missing[string(cid)], nil
}

func (c *fakeCloud) lose(cids ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cid := range cids {
		c.missing[cid] = true
	}
}

type harness struct {
	t     testing.TB
	ctx   context.Context
	repo  *workRepo
	store *postgres.Store
	conv  *fakeConverger
	cloud *fakeCloud
	r     *Reconciler
	// tweak, when set, changes the Config newReconciler builds.
	tweak func(*Config)
}

func newHarness(t *testing.T) *harness { return newBenchHarness(t) }

func newBenchHarness(t testing.TB) *harness {
	ctx := testCtx(t)
	h := &harness{t: t, ctx: ctx, repo: newWorkRepo(t)}
	st, err := postgres.Open(ctx, pgtest.NewDatabase(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	h.store = st
	h.conv = &fakeConverger{store: st}
	h.cloud = &fakeCloud{missing: map[string]bool{}}
	h.r = h.newReconciler()
	return h
}

// newReconciler makes a reconciler over the harness's repository and database, as a
// restarted director would.
func (h *harness) newReconciler() *Reconciler {
	t := h.t
	src, err := source.Open(source.Config{Remote: source.Remote{URL: h.repo.dir}, Branch: "main", CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	sw, err := status.Open(status.Config{Remote: source.Remote{URL: h.repo.dir}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	blobs, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, KeySize)
	vault, err := NewVault(h.store, key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Source: src, Watcher: source.NewWatcher(src, source.WatchOptions{Interval: 300 * time.Millisecond}),
		Store: h.store, Gate: policy.NewGate(nil, PoliciesDir), Converger: h.conv, Status: sw, Blobs: blobs,
		Renderer: &Renderer{Vars: vault}, Cloud: h.cloud, DriftInterval: 200 * time.Millisecond}
	if h.tweak != nil {
		h.tweak(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (h *harness) reconcile(want string) Judgement {
	h.t.Helper()
	j, err := h.r.ReconcileNow(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	if j.Verdict != want {
		h.t.Fatalf("verdict = %q (problems %q); want %q", j.Verdict, j.Problems, want)
	}
	return j
}

// run runs a task with the reconciler's handler, as a worker would.
func (h *harness) run(task state.Task) (string, error) {
	h.t.Helper()
	hd := h.r.Handlers()[task.Type]
	if hd == nil {
		h.t.Fatalf("no handler for %s", task.Type)
	}
	return hd(h.ctx, task, func(state.TaskEvent) error { return nil })
}

func (h *harness) mustRun(task state.Task) string {
	h.t.Helper()
	res, err := h.run(task)
	if err != nil {
		h.t.Fatalf("task %s %s: %v", task.Type, task.Deployment, err)
	}
	return res
}

func taskTypes(ts []state.Task) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Type+" "+t.Deployment)
	}
	return out
}

func actions(p plan.Plan) map[string]int {
	out := map[string]int{}
	for _, g := range p.Groups {
		for _, in := range g.Instances {
			out[string(in.Action)]++
		}
	}
	return out
}

func (h *harness) statusHead(contains ...string) string {
	h.t.Helper()
	log := h.repo.statusLog()
	if len(log) == 0 {
		h.t.Fatal("no status commit")
	}
	for _, c := range contains {
		if !strings.Contains(log[0], c) {
			h.t.Errorf("status commit lacks %q:\n%s", c, log[0])
		}
	}
	return log[0]
}

func TestLoopDeployChangeAndNoop(t *testing.T) {
	h := newHarness(t)
	files := templateFiles(t)
	sha1 := h.repo.commit("first", files)
	j := h.reconcile(state.RevisionAccepted)
	if got := taskTypes(j.Tasks); !slices.Equal(got, []string{"deploy demo", "deploy other"}) {
		t.Fatalf("tasks = %v; want deploy demo then other", got)
	}
	title := h.mustRun(j.Tasks[0])
	if want := "demo: deployed " + sha1[:7] + " (2 created)"; !strings.HasPrefix(title, want) {
		t.Errorf("result = %q; want prefix %q", title, want)
	}
	task := h.conv.lastRun(t)
	if got := actions(task.Plan); got["create"] != 2 || len(task.Instances) != 2 || task.ID != j.Tasks[0].ID {
		t.Fatalf("converge task: actions %v, %d instances, id %d", got, len(task.Instances), task.ID)
	}
	h.statusHead("Bosun-Source: "+sha1, "Bosun-Result: succeeded", fmt.Sprintf("Bosun-Task: %d", j.Tasks[0].ID))
	h.mustRun(j.Tasks[1])
	if v, err := h.store.Verdict(h.ctx, sha1); err != nil || v.PolicyRevision == "" {
		t.Errorf("stored verdict = %+v, %v; want the policy revision", v, err)
	}

	// Nothing rendered changes: accepted, no task.
	h.repo.commit("docs", map[string]string{"README.md": "other words\n"})
	if j := h.reconcile(state.RevisionAccepted); len(j.Tasks) != 0 {
		t.Fatalf("a README change made tasks %v", taskTypes(j.Tasks))
	}
	// The same head again: nothing at all.
	if j, err := h.r.ReconcileNow(h.ctx); err != nil || j.Verdict != "" {
		t.Fatalf("re-check = %+v, %v; want nothing", j, err)
	}

	// A new greeting: only demo, canary first, instances updated in place.
	m := h.repo.read("deployments/demo/manifest.yml")
	sha3 := h.repo.commit("greet", map[string]string{"deployments/demo/manifest.yml": strings.Replace(m, "Hello from Bosun", "Bonjour", 1)})
	j = h.reconcile(state.RevisionAccepted)
	if got := taskTypes(j.Tasks); !slices.Equal(got, []string{"deploy demo"}) {
		t.Fatalf("tasks = %v", got)
	}
	h.mustRun(j.Tasks[0])
	task = h.conv.lastRun(t)
	if got := actions(task.Plan); got["update"] != 2 {
		t.Fatalf("actions = %v; want 2 updates", got)
	}
	if b := task.Plan.Groups[0].Batches; b[0].Kind != plan.BatchCanary || len(b[0].Instances) != 1 {
		t.Fatalf("batches = %+v; want a canary first", b)
	}
	h.statusHead("demo: deployed "+sha3[:7]+" (2 updated)", "Bosun-Result: succeeded")

	// A restarted director judges from where the last one left off.
	h.r = h.newReconciler()
	if j, err := h.r.ReconcileNow(h.ctx); err != nil || j.Verdict != "" {
		t.Fatalf("after restart = %+v, %v; want the head already judged", j, err)
	}
	// Scale 2 → 3 → 1: ids stay.
	before, _ := h.store.Instances(h.ctx, "demo")
	m = h.repo.read("deployments/demo/manifest.yml")
	h.repo.commit("scale up", map[string]string{"deployments/demo/manifest.yml": strings.Replace(m, "instances: 2", "instances: 3", 1)})
	h.mustRun(h.reconcile(state.RevisionAccepted).Tasks[0])
	if got := actions(h.conv.lastRun(t).Plan); got["create"] != 1 || got["unchanged"] != 2 {
		t.Fatalf("scale up actions = %v", got)
	}
	h.repo.commit("scale down", map[string]string{"deployments/demo/manifest.yml": strings.Replace(m, "instances: 2", "instances: 1", 1)})
	h.mustRun(h.reconcile(state.RevisionAccepted).Tasks[0])
	after, _ := h.store.Instances(h.ctx, "demo")
	if len(after) != 1 || after[0].ID != before[0].ID {
		t.Fatalf("after scaling down: %+v; want web/0 kept (%s)", after, before[0].ID)
	}

	// A burst of two commits: the older task yields to the newer one.
	m = h.repo.read("deployments/demo/manifest.yml")
	h.repo.commit("burst 1", map[string]string{"deployments/demo/manifest.yml": strings.Replace(m, "Bonjour", "Hallo", 1)})
	older := h.reconcile(state.RevisionAccepted).Tasks[0]
	newest := h.repo.commit("burst 2", map[string]string{"deployments/demo/manifest.yml": strings.Replace(m, "Bonjour", "Hola", 1)})
	newer := h.reconcile(state.RevisionAccepted).Tasks[0]
	runs := len(h.conv.runs)
	if res := h.mustRun(older); !strings.Contains(res, "superseded by "+newest[:7]) || len(h.conv.runs) != runs {
		t.Fatalf("older task: %q, converged %d times", res, len(h.conv.runs)-runs)
	}
	h.mustRun(newer)
	if d, _ := h.store.Deployment(h.ctx, "demo"); d.Revision != newest || !strings.Contains(string(d.Manifest), "Hola") {
		t.Errorf("deployment recorded at %s with manifest %q", d.Revision, d.Manifest)
	}
}

func TestLoopBadInputFailsAndNextGoodCommitProceeds(t *testing.T) {
	h := newHarness(t)
	files := templateFiles(t)
	h.repo.commit("first", files)
	for _, task := range h.reconcile(state.RevisionAccepted).Tasks {
		h.mustRun(task)
	}
	runs := len(h.conv.runs)
	bad := h.repo.commit("oops", map[string]string{"deployments/demo/manifest.yml": strings.Replace(files["deployments/demo/manifest.yml"], "instances: 2", "instances: [2", 1)})
	j := h.reconcile(state.RevisionFailed)
	if len(j.Problems) != 1 || !strings.Contains(j.Problems[0], "deployments/demo/manifest.yml:19") {
		t.Fatalf("problems = %q; want the file and line", j.Problems)
	}
	rev, err := h.store.Revision(h.ctx, bad)
	if err != nil || rev.Verdict != state.RevisionFailed {
		t.Fatalf("revision = %+v, %v", rev, err)
	}
	if v, _ := h.store.Verdict(h.ctx, bad); !strings.Contains(v.Error, "manifest.yml:19") {
		t.Errorf("stored verdict error = %q", v.Error)
	}
	msg := h.statusHead("demo: failed to render "+bad[:7], "Bosun-Result: failed", "deployments/demo/manifest.yml:19")
	if strings.Contains(msg, "other:") {
		t.Errorf("the failure was reported to other, which it does not concern")
	}
	if len(h.conv.runs) != runs {
		t.Fatal("a failed revision converged something")
	}
	// More instances than the subnet has addresses: failed before anything is enqueued.
	h.repo.commit("too big", map[string]string{"deployments/demo/manifest.yml": strings.Replace(files["deployments/demo/manifest.yml"], "instances: 2", "instances: 300", 1)})
	j = h.reconcile(state.RevisionFailed)
	if len(j.Problems) != 1 || !strings.Contains(j.Problems[0], "deployments/demo/manifest.yml: cannot be planned") {
		t.Fatalf("problems = %q", j.Problems)
	}
	h.statusHead("demo: cannot plan", "Bosun-Result: failed")
	// The fix proceeds, and with nothing rendered changed since the last accepted
	// revision it needs no task.
	h.repo.commit("fix", map[string]string{"deployments/demo/manifest.yml": files["deployments/demo/manifest.yml"]})
	if j := h.reconcile(state.RevisionAccepted); len(j.Tasks) != 0 {
		t.Fatalf("tasks = %v", taskTypes(j.Tasks))
	}
}

func TestLoopPolicyDenyRejectsAndDeletionNeedsTrailer(t *testing.T) {
	h := newHarness(t)
	files := templateFiles(t)
	h.repo.commit("first", files)
	for _, task := range h.reconcile(state.RevisionAccepted).Tasks {
		h.mustRun(task)
	}
	runs := len(h.conv.runs)
	// Deleting other without the trailer: the deletion policy denies it.
	denied := h.repo.commit("drop other", map[string]string{"deployments/other/": ""})
	j := h.reconcile(state.RevisionRejected)
	if len(j.Problems) != 1 || !strings.Contains(j.Problems[0], "Bosun-Allow-Delete: other") {
		t.Fatalf("problems = %q", j.Problems)
	}
	if len(j.Tasks) != 0 || len(h.conv.runs) != runs {
		t.Fatal("a rejected revision enqueued or converged")
	}
	h.statusHead("other: rejected "+denied[:7]+" by policy (1 denied)", "Bosun-Result: rejected", "deny: ")
	if v, _ := h.store.Verdict(h.ctx, denied); len(v.Denies) != 1 {
		t.Errorf("stored denies = %q", v.Denies)
	}
	// Deleting the policy in the same commit does not help: the last accepted revision's
	// policies judge it.
	h.repo.commit("drop other and the rule", map[string]string{"policies/deletion.rego": "", "policies/deletion_test.rego": ""})
	if j := h.reconcile(state.RevisionRejected); !strings.Contains(strings.Join(j.Problems, " "), "Bosun-Allow-Delete: other") {
		t.Fatalf("problems = %q", j.Problems)
	}
	h.repo.commit("restore the rule", map[string]string{"policies/deletion.rego": files["policies/deletion.rego"], "policies/deletion_test.rego": files["policies/deletion_test.rego"]})
	h.reconcile(state.RevisionRejected) // other is still gone from the tree
	// The same deletion, meant: the deployment goes.
	allowed := h.repo.commit("drop other\n\nBosun-Allow-Delete: other", map[string]string{"README.md": "again\n"})
	j = h.reconcile(state.RevisionAccepted)
	if got := taskTypes(j.Tasks); !slices.Equal(got, []string{"delete_deployment other"}) {
		t.Fatalf("tasks = %v", got)
	}
	h.mustRun(j.Tasks[0])
	if got := actions(h.conv.lastRun(t).Plan); got["delete"] != 1 {
		t.Fatalf("delete actions = %v", got)
	}
	if _, err := h.store.Deployment(h.ctx, "other"); err == nil {
		t.Error("other is still recorded")
	}
	h.statusHead("other: deleted (source "+allowed[:7]+")", "Bosun-Result: deleted")
}

func TestLoopEmptyRepositoryAndProtectedKeepTheFleet(t *testing.T) {
	h := newHarness(t)
	files := templateFiles(t)
	files["bosun.yml"] = strings.Replace(files["bosun.yml"], "protected_deployments: []", "protected_deployments: [other]", 1)
	h.repo.commit("first", files)
	for _, task := range h.reconcile(state.RevisionAccepted).Tasks {
		h.mustRun(task)
	}
	h.repo.commit("drop other\n\nBosun-Allow-Delete: other", map[string]string{"deployments/other/": ""})
	j := h.reconcile(state.RevisionAccepted)
	if len(j.Tasks) != 0 {
		t.Fatalf("a protected deployment's removal made tasks %v", taskTypes(j.Tasks))
	}
	// Emptying the repository without the trailer is denied, and the denial is reported.
	denied := h.repo.commit("empty", map[string]string{"deployments/": ""})
	h.reconcile(state.RevisionRejected)
	if log := h.repo.statusLog(); !slices.ContainsFunc(log[:2], func(m string) bool {
		return strings.HasPrefix(m, "demo: rejected "+denied[:7]) && strings.Contains(m, "Bosun-Allow-Delete: demo")
	}) {
		t.Errorf("no rejection reported to demo:\n%s", strings.Join(log[:2], "\n"))
	}
	sha := h.repo.commit("empty\n\nBosun-Allow-Delete: demo", map[string]string{"README.md": "empty now\n"})
	j = h.reconcile(state.RevisionAccepted)
	if len(j.Tasks) != 0 {
		t.Fatalf("an empty repository made tasks %v", taskTypes(j.Tasks))
	}
	v, err := h.store.Verdict(h.ctx, sha)
	if err != nil || !slices.ContainsFunc(v.Warnings, func(w string) bool { return strings.Contains(w, "never deletes the fleet") }) {
		t.Fatalf("warnings = %q, %v", v.Warnings, err)
	}
	if ds, _ := h.store.Deployments(h.ctx); len(ds) != 2 {
		t.Fatalf("deployments = %v; want both kept", ds)
	}
}

// A commit emptying the repository would delete nothing, but its rejection is still a
// status commit on every deployment it would have removed.
func TestLoopRejectedEmptyRepositoryWritesStatus(t *testing.T) {
	h := newHarness(t)
	h.repo.commit("first", templateFiles(t))
	for _, task := range h.reconcile(state.RevisionAccepted).Tasks {
		h.mustRun(task)
	}
	before := len(h.repo.statusLog())
	sha := h.repo.commit("empty", map[string]string{"deployments/": ""})
	h.reconcile(state.RevisionRejected)
	h.statusHead(": rejected "+sha[:7]+" by policy", "Bosun-Result: rejected", "Bosun-Allow-Delete")
	if got := len(h.repo.statusLog()) - before; got != 2 {
		t.Errorf("%d status commits for the rejection; want one per deployment (2)", got)
	}
}

func TestLoopConvergeFailureThenFix(t *testing.T) {
	h := newHarness(t)
	files := templateFiles(t)
	h.repo.commit("first", files)
	for _, task := range h.reconcile(state.RevisionAccepted).Tasks {
		h.mustRun(task)
	}
	h.conv.fail = true
	bad := h.repo.commit("break", map[string]string{"deployments/demo/manifest.yml": strings.Replace(files["deployments/demo/manifest.yml"], "Hello from Bosun", "Broken", 1)})
	j := h.reconcile(state.RevisionAccepted)
	if _, err := h.run(j.Tasks[0]); err == nil {
		t.Fatal("a failed rollout returned no error")
	}
	h.statusHead("demo: failed to deploy "+bad[:7], "(web)", "Bosun-Result: failed")
	if f := h.repo.statusFile("deployments/demo.yml"); !strings.Contains(f, "log_tail: 'greeter: bind: address in use'") || !strings.Contains(f, "process: web") {
		t.Errorf("status file lacks the process and log tail:\n%s", f)
	}
	h.conv.fail = false
	h.repo.commit("fix", map[string]string{"deployments/demo/manifest.yml": strings.Replace(files["deployments/demo/manifest.yml"], "Hello from Bosun", "Fixed", 1)})
	j = h.reconcile(state.RevisionAccepted)
	h.mustRun(j.Tasks[0])
	if got := actions(h.conv.lastRun(t).Plan); got["update"] != 2 {
		t.Fatalf("fix actions = %v; want both updated", got)
	}
	h.statusHead("Bosun-Result: succeeded")
}

func TestResurrectActionAndDrift(t *testing.T) {
	h := newHarness(t)
	files := templateFiles(t)
	files["bosun.yml"] = strings.Replace(files["bosun.yml"], "deployments:\n  demo:\n", "deployments:\n  other:\n    drift: report\n  demo:\n", 1)
	h.repo.commit("first", files)
	for _, task := range h.reconcile(state.RevisionAccepted).Tasks {
		h.mustRun(task)
	}
	insts, _ := h.store.Instances(h.ctx, "demo")
	params, _ := json.Marshal(state.ResurrectParams{Instances: []string{insts[0].ID}, Reason: "unresponsive agent"})
	title := h.mustRun(state.Task{ID: 77, Type: state.TaskResurrect, Deployment: "demo", Params: params})
	task := h.conv.lastRun(t)
	var recreated []plan.InstancePlan
	for _, in := range task.Plan.Groups[0].Instances {
		if in.Action != plan.Keep {
			recreated = append(recreated, in)
		}
	}
	if len(recreated) != 1 || recreated[0].ID != insts[0].ID || recreated[0].Action != plan.Recreate || recreated[0].Reasons[0].Kind != plan.ReasonUnresponsive {
		t.Fatalf("resurrect plan changes %+v; want web/0 recreated as unresponsive", recreated)
	}
	if !strings.HasPrefix(title, "demo: resurrected web/0 (unresponsive agent)") {
		t.Errorf("title = %q", title)
	}
	h.statusHead("Bosun-Result: resurrected", "Bosun-Task: 77", "web/0: VM "+insts[0].VMCID+" → ")

	params, _ = json.Marshal(state.ActionParams{Action: state.ActionRestart, Group: "web", Instance: "1"})
	h.mustRun(state.Task{ID: 78, Type: state.TaskAction, Deployment: "demo", Params: params, User: "ops"})
	if len(h.conv.acts) != 1 || !slices.Equal(h.conv.acts[0].IDs, []string{insts[1].ID}) || h.conv.acts[0].Params.Action != state.ActionRestart {
		t.Fatalf("act calls = %+v", h.conv.acts)
	}
	h.statusHead("demo: restart web/1 (requested by ops)", "Bosun-Result: succeeded")
	params, _ = json.Marshal(state.ActionParams{Action: state.ActionStop, Group: "nope"})
	if _, err := h.run(state.Task{ID: 79, Type: state.TaskAction, Deployment: "demo", Params: params}); err == nil {
		t.Error("an action on a missing group succeeded")
	}

	// Drift: demo (repair) gets a resurrect task, other (report) a drifted status commit.
	insts, _ = h.store.Instances(h.ctx, "demo")
	others, _ := h.store.Instances(h.ctx, "other")
	h.cloud.lose(insts[1].VMCID, others[0].VMCID)
	drifts, err := h.r.CheckDrift(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(drifts) != 2 || drifts[0].Deployment != "demo" || drifts[0].Task == 0 || drifts[1].Mode != DriftReport {
		t.Fatalf("drifts = %+v", drifts)
	}
	h.statusHead("other: drift: 1 VM(s) missing (web/0)", "Bosun-Result: drifted")
	if again, _ := h.r.CheckDrift(h.ctx); len(again) != 0 {
		t.Fatalf("the same drift was acted on twice: %+v", again)
	}
	rt, err := h.store.Task(h.ctx, drifts[0].Task)
	if err != nil {
		t.Fatal(err)
	}
	h.mustRun(rt)
	var got []plan.InstancePlan
	for _, in := range h.conv.lastRun(t).Plan.Groups[0].Instances {
		if in.Action != plan.Keep {
			got = append(got, in)
		}
	}
	if len(got) != 1 || got[0].ID != insts[1].ID || got[0].Reasons[0].Kind != plan.ReasonVMMissing {
		t.Fatalf("drift repair changes %+v", got)
	}
}

func TestRotateVariableRedeploys(t *testing.T) {
	h := newHarness(t)
	files := templateFiles(t)
	files["deployments/demo/manifest.yml"] = strings.Replace(files["deployments/demo/manifest.yml"], "greeting: Hello from Bosun", "greeting: Hello from Bosun\n      token: ((token))", 1) +
		"\nvariables:\n- name: token\n  type: password\n"
	h.repo.commit("first", files)
	for _, task := range h.reconcile(state.RevisionAccepted).Tasks {
		h.mustRun(task)
	}
	sealed, _ := h.store.SealedVariables(h.ctx, "demo")
	j, err := h.r.RotateVariable(h.ctx, "demo", "token")
	if err != nil {
		t.Fatal(err)
	}
	if got := taskTypes(j.Tasks); !slices.Equal(got, []string{"deploy demo"}) {
		t.Fatalf("tasks after rotation = %v", got)
	}
	h.mustRun(j.Tasks[0])
	if got := actions(h.conv.lastRun(t).Plan); got["update"] != 2 {
		t.Fatalf("actions = %v; want both updated with the new value", got)
	}
	again, _ := h.store.SealedVariables(h.ctx, "demo")
	if string(again["token"]) == string(sealed["token"]) {
		t.Error("the stored value did not change")
	}
	// The token never reaches the status branch.
	vals, err := h.r.cfg.Renderer.Vars.Load(h.ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	token := fmt.Sprint(vals.Get("token").Value)
	for _, msg := range h.repo.statusLog() {
		if strings.Contains(msg, token) {
			t.Errorf("status commit shows the token: %s", msg)
		}
	}
	if f := h.repo.statusFile("deployments/demo.yml"); strings.Contains(f, token) {
		t.Errorf("status file shows the token:\n%s", f)
	}
	if _, err := h.r.RotateVariable(h.ctx, "demo", "nope"); err == nil {
		t.Error("rotating an unknown variable succeeded")
	}
}

func TestRedactHidesRenderedVariables(t *testing.T) {
	h := newHarness(t)
	files := templateFiles(t)
	files["deployments/demo/manifest.yml"] = strings.Replace(files["deployments/demo/manifest.yml"], "greeting: Hello from Bosun", "greeting: ((pw))", 1) +
		"\nvariables:\n- name: pw\n  type: password\n"
	h.repo.commit("first", files)
	h.reconcile(state.RevisionAccepted)
	vals, err := h.r.cfg.Renderer.Vars.Load(h.ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	pw := fmt.Sprint(vals.Get("pw").Value)
	if got := h.r.Redact("greeter said " + pw + " twice: " + pw); strings.Contains(got, pw) || !strings.Contains(got, "(redacted)") {
		t.Errorf("redacted = %q", got)
	}
}

// TestRunWithWorkers runs the reconciler as the director does: its watcher picks up each
// commit, the real worker pool runs the tasks with its handlers, and the drift check runs
// on its interval.
func TestRunWithWorkers(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(h.ctx)
	handlers := map[string]worker.Handler{}
	for typ, hd := range h.r.Handlers() {
		handlers[typ] = hd
	}
	pool := worker.New(h.store, handlers, worker.Config{Workers: 2, Poll: 100 * time.Millisecond}, nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := h.r.Run(ctx); err != nil {
			t.Errorf("reconciler: %v", err)
		}
	})
	wg.Go(func() { _ = pool.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	files := templateFiles(t)
	first := h.repo.commit("first", files)
	await := func(what string) string {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			for _, m := range h.repo.statusLog() {
				if strings.Contains(m, what) {
					return m
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no status commit with %q; log:\n%s", what, strings.Join(h.repo.statusLog(), "\n"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	await("demo: deployed " + first[:7])
	await("other: deployed " + first[:7])
	m := files["deployments/demo/manifest.yml"]
	second := h.repo.commit("greet", map[string]string{"deployments/demo/manifest.yml": strings.Replace(m, "Hello from Bosun", "Salut", 1)})
	await("demo: deployed " + second[:7] + " (2 updated)")

	// A VM vanishes: the drift check enqueues its recreation and the workers run it.
	insts, _ := h.store.Instances(h.ctx, "demo")
	h.cloud.lose(insts[0].VMCID)
	await("demo: resurrected web/0 (vm missing)")
}

// OnAccepted hears bosun.yml of every accepted revision, and of the last accepted one when
// a reconciler starts, but not of a rejected one.
func TestLoopOnAcceptedHearsBosunYML(t *testing.T) {
	h := newHarness(t)
	var heard []bool // each call: is demo's resurrection enabled?
	h.tweak = func(c *Config) {
		c.OnAccepted = func(rc RepoConfig) {
			r := rc.EffectiveResurrection("demo")
			heard = append(heard, r.Enabled == nil || *r.Enabled)
		}
	}
	h.r = h.newReconciler()
	files := templateFiles(t)
	files["bosun.yml"] = "deployments:\n  demo:\n    resurrection:\n      enabled: false\n"
	h.repo.commit("first", files)
	h.reconcile(state.RevisionAccepted)
	if want := []bool{false}; !slices.Equal(heard, want) {
		t.Fatalf("after the first accepted revision heard %v; want %v", heard, want)
	}
	h.repo.commit("broken", map[string]string{"bosun.yml": "deployments: [\n"})
	h.reconcile(state.RevisionFailed)
	if want := []bool{false}; !slices.Equal(heard, want) {
		t.Fatalf("after a failed revision heard %v; want nothing more", heard)
	}
	h.repo.commit("resurrect again", map[string]string{"bosun.yml": "resurrection:\n  enabled: true\n"})
	h.reconcile(state.RevisionAccepted)
	if want := []bool{false, true}; !slices.Equal(heard, want) {
		t.Fatalf("heard %v; want %v", heard, want)
	}

	// A restarted reconciler hears the last accepted revision's before any new commit.
	heard = nil
	h.r = h.newReconciler()
	if _, err := h.r.ReconcileNow(h.ctx); err != nil {
		t.Fatal(err)
	}
	if want := []bool{true}; !slices.Equal(heard, want) {
		t.Errorf("after a restart heard %v; want %v", heard, want)
	}
}

// A director starting on a new mirror (a fresh data dir, another director) after commits
// came since the last accepted revision judges the head by that revision's policies, not
// by the head's own: the source deepens its shallow mirror to reach it.
func TestRestartOnNewMirrorJudgesByLastAcceptedPolicies(t *testing.T) {
	h := newHarness(t)
	files := templateFiles(t)
	h.repo.commit("first", files)
	h.reconcile(state.RevisionAccepted)

	h.repo.commit("touch", map[string]string{"README.md": "again\n"})
	h.repo.commit("touch more", map[string]string{"README.md": "and again\n"})
	h.repo.commit("drop other and the rule", map[string]string{"deployments/other/": "", "policies/deletion.rego": "", "policies/deletion_test.rego": ""})
	h.r = h.newReconciler()
	if j := h.reconcile(state.RevisionRejected); !strings.Contains(strings.Join(j.Problems, " "), "Bosun-Allow-Delete: other") {
		t.Fatalf("problems = %q", j.Problems)
	}
}
