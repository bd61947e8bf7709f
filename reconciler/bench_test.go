package reconciler

import (
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/bosun-gitops/bosun/reconciler/plan"
	repotemplate "github.com/bosun-gitops/bosun/repo-template"
	"github.com/bosun-gitops/bosun/state"
)

// BenchmarkRenderPlanOneProperty is the reconciler's share of a one-property change on
// the demo: render the whole revision (bosun.yml, cloud-config, the release directory —
// built once, then found by content digest —, stemcell, manifest with variables) and plan
// it against the instances the previous revision converged.
func BenchmarkRenderPlanOneProperty(b *testing.B) {
	ctx := testCtx(b)
	rr := &Renderer{}
	m, _ := fs.ReadFile(repotemplate.FS(), "deployments/demo/manifest.yml")
	base, err := rr.Render(ctx, "base", templateFS(b, nil))
	if err != nil {
		b.Fatal(err)
	}
	bp, err := plan.Compute(base.Deployments["demo"].Desired, plan.Observed{}, plan.Options{NewID: seqIDs("i")})
	if err != nil {
		b.Fatal(err)
	}
	obs := observedAfter(bp)
	trees := make([]fstest.MapFS, 2)
	for i := range trees {
		trees[i] = templateFS(b, map[string]string{"deployments/demo/manifest.yml": strings.Replace(string(m), "Hello from Bosun", fmt.Sprintf("Hello %d", i), 1)})
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		rd, err := rr.Render(ctx, "head", trees[i%2])
		if err != nil {
			b.Fatal(err)
		}
		p, err := plan.Compute(rd.Deployments["demo"].Desired, obs, plan.Options{NewID: seqIDs("n")})
		if err != nil {
			b.Fatal(err)
		}
		if n := actions(p)["update"]; n != 2 {
			b.Fatalf("updates = %d", n)
		}
	}
}

// BenchmarkJudgeCommit is a fetched commit → accepted revision with its task in Postgres:
// render it from the mirror's object store, judge it with the repo-template policies,
// store the verdict and the task in one transaction. (The fetch itself is the source's,
// measured there.)
func BenchmarkJudgeCommit(b *testing.B) {
	h := newBenchHarness(b)
	files := templateFiles(b)
	h.repo.commit("first", files)
	if j, err := h.r.ReconcileNow(h.ctx); err != nil || j.Verdict != state.RevisionAccepted {
		b.Fatalf("first: %+v, %v", j, err)
	}
	m := files["deployments/demo/manifest.yml"]
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		h.repo.commit("greet", map[string]string{"deployments/demo/manifest.yml": strings.Replace(m, "Hello from Bosun", fmt.Sprintf("Hello %d", i), 1)})
		rev, _, err := h.r.cfg.Source.Check(h.ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		h.r.mu.Lock()
		j, err := h.r.judge(h.ctx, rev, false)
		h.r.mu.Unlock()
		if err != nil || j.Verdict != state.RevisionAccepted || len(j.Tasks) != 1 {
			b.Fatalf("judge: %+v, %v", j, err)
		}
	}
}
