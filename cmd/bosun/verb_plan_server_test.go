package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/reconciler"
	"github.com/bosun-gitops/bosun/reconciler/plan"
)

// treePlanner is a director that plans trees itself: it answers demo unchanged, and
// keeps what it was sent.
type treePlanner struct {
	mu    sync.Mutex
	files map[string]string
	req   api.PlanRequest
}

func (p *treePlanner) Plan(ctx context.Context, tree fs.FS, req api.PlanRequest) (any, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files, p.req = map[string]string{}, req
	err := fs.WalkDir(tree, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(tree, path)
		p.files[path] = string(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	if strings.Contains(p.files["deployments/demo/manifest.yml"], "instances: x") {
		return nil, fmt.Errorf("%w: deployments/demo/manifest.yml: instances: expected an integer\ndeployments/demo/manifest.yml: second problem", api.ErrPlanInput)
	}
	return &reconciler.Preview{Deployments: []reconciler.PreviewDeployment{{Name: "demo", Plan: plan.Plan{Deployment: "demo"}}}}, nil
}

func TestPlanOnDirector(t *testing.T) {
	tp := &treePlanner{}
	env := newCLIEnvWith(t, api.Options{Planner: tp, Observed: &planObserved{}}, nil)
	dir := filepath.Join(t.TempDir(), "repo")
	if o, e, code := runCLI(t, "init", dir); code != 0 {
		t.Fatalf("init: %d\n%s%s", code, o, e)
	}
	// A link inside the tree is sent as the file it points to; .git is not sent.
	if err := os.Symlink("manifest.yml", filepath.Join(dir, "deployments/demo/linked.yml")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".git/config"), []byte("[core]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BOSUN_TOKEN", cliReadToken)

	o, e, code := runCLI(t, "plan", "--director", dir)
	if code != 0 {
		t.Fatalf("plan --director: %d\n%s%s", code, o, e)
	}
	for _, want := range []string{"Rendered and planned by the director at " + env.url, "Deployment demo: no changes", "Policy: allowed"} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q:\n%s", want, o)
		}
	}
	if strings.Contains(o, "throwaway") || e != "" {
		t.Errorf("a server-side plan speaks of throwaway values, or of falling back:\n%s%s", o, e)
	}
	tp.mu.Lock()
	files, req := tp.files, tp.req
	tp.mu.Unlock()
	if files["deployments/demo/linked.yml"] != files["deployments/demo/manifest.yml"] || files["deployments/demo/manifest.yml"] == "" {
		t.Errorf("the link was not sent as its file")
	}
	if _, ok := files[".git/config"]; ok {
		t.Error(".git was sent")
	}
	var local []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.Contains(p, ".git") {
			rel, _ := filepath.Rel(dir, p)
			local = append(local, filepath.ToSlash(rel))
		}
		return err
	})
	var sent []string
	for p := range files {
		sent = append(sent, p)
	}
	slices.Sort(local)
	slices.Sort(sent)
	if diff := cmp.Diff(local, sent); diff != "" {
		t.Errorf("files sent (-tree +sent):\n%s", diff)
	}
	if req.Author == "" || req.Base != "" {
		t.Errorf("request = %+v", req)
	}

	// --json: the director's Preview, marked server-side, naming the director.
	o, e, code = runCLI(t, "plan", "--director", "--json", dir)
	if code != 0 {
		t.Fatalf("plan --director --json: %d\n%s%s", code, o, e)
	}
	var pv reconciler.Preview
	if err := json.Unmarshal([]byte(o), &pv); err != nil {
		t.Fatalf("%v:\n%s", err, o)
	}
	if !pv.ServerSide || pv.Director != env.url || len(pv.Deployments) != 1 {
		t.Errorf("preview = %+v", pv)
	}

	// The director's render problems are the command's error, one per line.
	m := filepath.Join(dir, "deployments/demo/manifest.yml")
	b, _ := os.ReadFile(m)
	if err := os.WriteFile(m, []byte(strings.Replace(string(b), "instances: 2", "instances: x", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, e, code := runCLI(t, "plan", "--director", dir); code != 1 || !strings.Contains(e, "the director cannot plan the repository:\n  deployments/demo/manifest.yml: instances") || !strings.Contains(e, "\n  deployments/demo/manifest.yml: second problem") {
		t.Errorf("render problems: %d\n%s", code, e)
	}
	if err := os.WriteFile(m, b, 0o644); err != nil {
		t.Fatal(err)
	}

	// A link out of the repository is refused before anything is sent.
	outside := filepath.Join(t.TempDir(), "secret.yml")
	if err := os.WriteFile(outside, []byte("x: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "deployments/demo/out.yml")); err != nil {
		t.Fatal(err)
	}
	if _, e, code := runCLI(t, "plan", "--director", dir); code != 1 || !strings.Contains(e, "links out of the repository") {
		t.Errorf("link out: %d %s", code, e)
	}
	if err := os.Remove(filepath.Join(dir, "deployments/demo/out.yml")); err != nil {
		t.Fatal(err)
	}
	// A token the director refuses is one line.
	t.Setenv("BOSUN_TOKEN", "bosun_revoked")
	if _, e, code := runCLI(t, "plan", "--director", dir); code != 1 || !strings.Contains(e, "token not accepted") || strings.Count(strings.TrimSpace(e), "\n") > 0 {
		t.Errorf("refused token: %d %q", code, e)
	}
}

// A director without POST /plan: planned here, as before, saying so.
func TestPlanFallsBackToClientSide(t *testing.T) {
	newCLIEnvWith(t, api.Options{Observed: &planObserved{}}, nil)
	dir := filepath.Join(t.TempDir(), "repo")
	if o, e, code := runCLI(t, "init", dir); code != 0 {
		t.Fatalf("init: %d\n%s%s", code, o, e)
	}
	t.Setenv("BOSUN_TOKEN", cliReadToken)
	o, e, code := runCLI(t, "plan", "--director", dir)
	if code != 0 {
		t.Fatalf("plan --director: %d\n%s%s", code, o, e)
	}
	if !strings.Contains(e, "does not plan trees itself") || !strings.Contains(o, "Planned against the state of the director") || strings.Contains(o, "Rendered and planned by the director") {
		t.Errorf("fallback:\n%s\n%s", o, e)
	}
}

// The glue hands the caller's mistakes to the API as such (422), and other failures not.
func TestAPIPlannerErrors(t *testing.T) {
	got := planError(fmt.Errorf("%w: deployments/x: bad", reconciler.ErrPlanInput))
	if !errors.Is(got, api.ErrPlanInput) || got.Error() != api.ErrPlanInput.Error()+": deployments/x: bad" {
		t.Errorf("input error = %v", got)
	}
	if got := planError(errors.New("database went away")); errors.Is(got, api.ErrPlanInput) {
		t.Errorf("director's failure = %v, taken for the caller's", got)
	}
}
