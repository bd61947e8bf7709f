package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	git "github.com/go-git/go-git/v5"

	"github.com/bosun-gitops/bosun/reconciler"
)

func TestInitThenPlan(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	o, e, code := runCLI(t, "init", dir)
	if code != 0 || !strings.Contains(o, "Initialized a manifest repository in "+dir) {
		t.Fatalf("init: code %d\n%s%s", code, o, e)
	}
	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	head, err := repo.Head()
	if err != nil || head.Name().Short() != "main" {
		t.Fatalf("head = %v, %v; want main", head, err)
	}
	if wt, _ := repo.Worktree(); wt != nil {
		if st, _ := wt.Status(); !st.IsClean() {
			t.Errorf("init left changes uncommitted:\n%s", st)
		}
	}
	if _, e, code := runCLI(t, "init", dir); code != 1 || !strings.Contains(e, "is not empty") {
		t.Errorf("init over a repository: code %d, %s", code, e)
	}
	// The template's policies pass their tests as copied.
	if o, e, code := runCLI(t, "policy", "test", filepath.Join(dir, "policies")); code != 0 {
		t.Errorf("policy test: code %d\n%s%s", code, o, e)
	}

	o, e, code = runCLI(t, "plan", dir)
	if code != 0 || !strings.Contains(o, "+ web/0") || !strings.Contains(o, "+ web/1") || !strings.Contains(o, "Policy: allowed") {
		t.Fatalf("plan from nothing: code %d\n%s%s", code, o, e)
	}
	// A one-property change planned against the commit: two updates, canary first.
	m := filepath.Join(dir, "deployments/demo/manifest.yml")
	b, _ := os.ReadFile(m)
	if err := os.WriteFile(m, []byte(strings.Replace(string(b), "Hello from Bosun", "Bonjour", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	o, e, code = runCLI(t, "plan", "--base", "HEAD", "--json", dir)
	if code != 0 {
		t.Fatalf("plan --base: code %d\n%s%s", code, o, e)
	}
	var pv reconciler.Preview
	if err := json.Unmarshal([]byte(o), &pv); err != nil {
		t.Fatal(err)
	}
	if len(pv.Deployments) != 1 || !pv.Deployments[0].Changed {
		t.Fatalf("preview = %+v", pv)
	}
	for _, in := range pv.Deployments[0].Plan.Groups[0].Instances {
		if in.Action != "update" {
			t.Errorf("%s: %s; want update", in.Name(), in.Action)
		}
	}
	// Deleting the deployment without the trailer: the base's deletion policy denies it
	// (exit 1), and an empty repository keeps it anyway.
	if err := os.RemoveAll(filepath.Join(dir, "deployments")); err != nil {
		t.Fatal(err)
	}
	o, e, code = runCLI(t, "plan", "--base", "HEAD", dir)
	if code != 1 || !strings.Contains(o, "kept") {
		t.Errorf("plan of an empty repository: code %d\n%s%s", code, o, e)
	}
	// Broken YAML: the file and line.
	if err := os.MkdirAll(filepath.Join(dir, "deployments/demo"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m, []byte("name: demo\ninstance_groups: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, e, code := runCLI(t, "plan", dir); code != 1 || !strings.Contains(e, "deployments/demo/manifest.yml:2") {
		t.Errorf("plan of broken YAML: code %d, %s", code, e)
	}
}
