package status

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/reconciler/source"
)

var (
	t0 = time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	// sourceSHA is any commit sha; the status branch only names it.
	sourceSHA = "4f2a9c1e0b8d7c6a5f4e3d2c1b0a9f8e7d6c5b4a"
)

func demoOutcome() Outcome {
	return Outcome{
		Deployment: "demo", SourceCommit: sourceSHA, Result: Succeeded, Task: "42",
		Policy:    &Policy{Warn: []string{"web: max_in_flight above 50%"}},
		StartedAt: t0, FinishedAt: t0.Add(14 * time.Second),
		Changes: Changes{Updated: 2, Created: 1},
		Instances: []Instance{
			{Name: "web/0", ID: "3d9a", AZ: "z1", State: "running", VMCID: "vm-1", IPs: []string{"10.0.0.10"}},
			{Name: "web/1", ID: "77c1", AZ: "z2", State: "running", VMCID: "vm-2", IPs: []string{"10.0.1.10"}},
		},
	}
}

func TestRender(t *testing.T) {
	got, err := Render(demoOutcome())
	if err != nil {
		t.Fatal(err)
	}
	want := `deployment: demo
source_commit: 4f2a9c1e0b8d7c6a5f4e3d2c1b0a9f8e7d6c5b4a
result: succeeded
task: "42"
policy:
  warn:
    - 'web: max_in_flight above 50%'
started_at: 2026-11-22T02:00:00Z
finished_at: 2026-11-22T02:00:14Z
instances:
  - name: web/0
    id: 3d9a
    az: z1
    state: running
    vm_cid: vm-1
    ips:
      - 10.0.0.10
  - name: web/1
    id: 77c1
    az: z2
    state: running
    vm_cid: vm-2
    ips:
      - 10.0.1.10
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("Render (-want +got):\n%s", diff)
	}
	for _, bad := range []Outcome{{}, {Deployment: "../x", Result: Failed}, {Deployment: "a/b", Result: Failed}, {Deployment: "demo"}} {
		if _, err := Render(bad); err == nil {
			t.Errorf("Render(%+v) succeeded", bad)
		}
	}
}

func TestMessage(t *testing.T) {
	failed := Outcome{Deployment: "demo", SourceCommit: sourceSHA, Result: Failed, Task: "43", StartedAt: t0, FinishedAt: t0.Add(61 * time.Second),
		Error: &Failure{Message: "web/0 (3d9a): process greeter exited 1", Instance: "web/0", Process: "greeter", LogTail: "panic: no greeting"}}
	rejected := Outcome{Deployment: "demo", SourceCommit: sourceSHA, Result: Rejected, Policy: &Policy{Deny: []string{"no public IPs", "pin stemcells"}}}
	for _, tc := range []struct {
		name string
		o    Outcome
		want string
	}{
		{"succeeded", demoOutcome(), "demo: deployed 4f2a9c1 (2 updated, 1 created) in 14s\n\nwarn: web: max_in_flight above 50%\n\nBosun-Source: " + sourceSHA + "\nBosun-Result: succeeded\nBosun-Task: 42\n"},
		{"failed", failed, "demo: failed to deploy 4f2a9c1 in 1m1s: web/0 (greeter)\n\nweb/0 (3d9a): process greeter exited 1\n\nBosun-Source: " + sourceSHA + "\nBosun-Result: failed\nBosun-Task: 43\n"},
		{"rejected", rejected, "demo: rejected 4f2a9c1 by policy (2 denied)\n\ndeny: no public IPs\ndeny: pin stemcells\n\nBosun-Source: " + sourceSHA + "\nBosun-Result: rejected\n"},
		{"resurrected", Outcome{Deployment: "demo", Result: Resurrected, Summary: "resurrected web/2\nsecond line dropped", Task: "9"}, "demo: resurrected web/2\n\nBosun-Result: resurrected\nBosun-Task: 9\n"},
		{"no changes, sub-second", Outcome{Deployment: "d", SourceCommit: "abc", Result: Succeeded, StartedAt: t0, FinishedAt: t0.Add(1500 * time.Microsecond)}, "d: deployed abc (no changes) in 2ms\n\nBosun-Source: abc\nBosun-Result: succeeded\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Message(tc.o)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Message (-want +got):\n%s", diff)
			}
			trailers := source.ParseTrailers(got)
			if len(trailers) < 1 || trailers[0].Key != "Bosun-Source" && trailers[0].Key != "Bosun-Result" {
				t.Errorf("trailers of %q = %v", got, trailers)
			}
		})
	}
}

// newRemote returns a bare repository with a main branch, as the manifest repository.
func newRemote(t *testing.T) (dir, mainSHA string) { return newRemoteB(t) }

func sourceRemote(url string) source.Remote { return source.Remote{URL: url} }

func newRemoteB(t testing.TB) (dir, mainSHA string) {
	t.Helper()
	work := t.TempDir()
	repo, err := git.PlainInitWithOptions(work, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.Main}})
	if err != nil {
		t.Fatal(err)
	}
	mainSHA = commitFile(t, repo, work, "bosun.yml", "{}\n")
	dir = t.TempDir()
	if _, err := git.PlainClone(dir, true, &git.CloneOptions{URL: work}); err != nil {
		t.Fatal(err)
	}
	return dir, mainSHA
}

func commitFile(t testing.TB, repo *git.Repository, dir, name, content string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add(name); err != nil {
		t.Fatal(err)
	}
	h, err := wt.Commit("manifests", &git.CommitOptions{Author: &object.Signature{Name: "A", Email: "a@x", When: t0}})
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func openWriter(t *testing.T, url string, mutate ...func(*Config)) *Writer {
	t.Helper()
	cfg := Config{Remote: source.Remote{URL: url}, CacheDir: t.TempDir(), Now: func() time.Time { return t0 }}
	for _, m := range mutate {
		m(&cfg)
	}
	w, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// branchCommits returns the status branch's commits in dir, newest first.
func branchCommits(t *testing.T, dir, branch string) []*object.Commit {
	t.Helper()
	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName(branch), true)
	if err != nil {
		t.Fatalf("branch %s: %v", branch, err)
	}
	iter, err := repo.Log(&git.LogOptions{From: ref.Hash()})
	if err != nil {
		t.Fatal(err)
	}
	var out []*object.Commit
	iter.ForEach(func(c *object.Commit) error { out = append(out, c); return nil })
	return out
}

func fileAt(t *testing.T, c *object.Commit, path string) string {
	t.Helper()
	f, err := c.File(path)
	if err != nil {
		t.Fatalf("%s at %s: %v", path, c.Hash, err)
	}
	r, err := f.Reader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

func TestWriteCommitsAndPushes(t *testing.T) {
	ctx := context.Background()
	remote, mainSHA := newRemote(t)
	w := openWriter(t, "file://"+remote)

	sha, err := w.Write(ctx, demoOutcome())
	if err != nil {
		t.Fatal(err)
	}
	commits := branchCommits(t, remote, "bosun/status")
	if len(commits) != 1 || commits[0].Hash.String() != sha {
		t.Fatalf("status branch = %v, want the one commit %s", commits, sha)
	}
	c := commits[0]
	if len(c.ParentHashes) != 0 {
		t.Error("the first status commit has parents: the branch must be an orphan")
	}
	if c.Author.Name != "Bosun" || c.Author.Email != "bosun@localhost" || c.Committer.Name != "Bosun" {
		t.Errorf("author %v committer %v", c.Author, c.Committer)
	}
	want, _ := Render(demoOutcome())
	if got := fileAt(t, c, "deployments/demo.yml"); got != string(want) {
		t.Errorf("deployments/demo.yml = %q", got)
	}
	wantTrailers := []source.Trailer{{Key: "Bosun-Source", Value: sourceSHA}, {Key: "Bosun-Result", Value: "succeeded"}, {Key: "Bosun-Task", Value: "42"}}
	if diff := cmp.Diff(wantTrailers, source.ParseTrailers(c.Message)); diff != "" {
		t.Errorf("trailers (-want +got):\n%s", diff)
	}

	// The same outcome again changes nothing.
	if sha, err := w.Write(ctx, demoOutcome()); err != nil || sha != "" {
		t.Fatalf("rewrite of an unchanged outcome = %q, %v", sha, err)
	}
	if n := len(branchCommits(t, remote, "bosun/status")); n != 1 {
		t.Fatalf("%d commits after an unchanged write", n)
	}

	// Another deployment's outcome keeps the first file.
	other := demoOutcome()
	other.Deployment, other.Result = "db", Failed
	if _, err := w.Write(ctx, other); err != nil {
		t.Fatal(err)
	}
	commits = branchCommits(t, remote, "bosun/status")
	if len(commits) != 2 || commits[0].ParentHashes[0] != commits[1].Hash {
		t.Fatalf("status history = %v", commits)
	}
	fileAt(t, commits[0], "deployments/demo.yml")
	fileAt(t, commits[0], "deployments/db.yml")

	// The tracked branch is untouched.
	if got := branchCommits(t, remote, "main"); len(got) != 1 || got[0].Hash.String() != mainSHA {
		t.Fatalf("main moved: %v", got)
	}
}

func TestWriteToLocalPathDoesNotTriggerSource(t *testing.T) {
	ctx := context.Background()
	work := t.TempDir()
	repo, err := git.PlainInitWithOptions(work, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.Main}})
	if err != nil {
		t.Fatal(err)
	}
	commitFile(t, repo, work, "bosun.yml", "{}\n")
	src, err := source.Open(source.Config{Remote: source.Remote{URL: work}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, _, err := src.Check(ctx); err != nil {
		t.Fatal(err)
	}

	w := openWriter(t, work, func(c *Config) { c.Branch = "ops/status"; c.Name, c.Email = "Fleet", "fleet@example.com" })
	if _, err := w.Write(ctx, demoOutcome()); err != nil {
		t.Fatal(err)
	}
	commits := branchCommits(t, work, "ops/status")
	if len(commits) != 1 || commits[0].Author.Email != "fleet@example.com" {
		t.Fatalf("ops/status = %v", commits)
	}
	if _, changed, err := src.Check(ctx); err != nil || changed {
		t.Fatalf("a status commit changed the tracked branch: changed=%v err=%v", changed, err)
	}
}

func TestConcurrentWritersBothLand(t *testing.T) {
	ctx := context.Background()
	remote, _ := newRemote(t)
	const perWriter = 5
	writers := []*Writer{
		openWriter(t, "file://"+remote, func(c *Config) { c.Attempts = 30 }),
		openWriter(t, "file://"+remote, func(c *Config) { c.Attempts = 30 }),
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*perWriter)
	for i, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perWriter {
				o := demoOutcome()
				o.Deployment = fmt.Sprintf("d%d-%d", i, j)
				if _, err := w.Write(ctx, o); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	commits := branchCommits(t, remote, "bosun/status")
	if len(commits) != 2*perWriter {
		t.Fatalf("%d status commits, want %d", len(commits), 2*perWriter)
	}
	for i := range writers {
		for j := range perWriter {
			fileAt(t, commits[0], fmt.Sprintf("deployments/d%d-%d.yml", i, j))
		}
	}
}

func TestFailingPushKeepsOutcomeAndRedacts(t *testing.T) {
	ctx := context.Background()
	remote, _ := newRemote(t)
	hook := filepath.Join(remote, "hooks", "pre-receive")
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho refusing pushes >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := openWriter(t, "file://"+remote, func(c *Config) {
		c.Attempts = 2
		c.Redact = func(s string) string { return strings.ReplaceAll(s, "hunter2", "((redacted))") }
	})
	o := demoOutcome()
	o.Result = Failed
	o.Error = &Failure{Message: "web/0: greeter exited 1", Instance: "web/0", Process: "greeter", LogTail: "password=hunter2\npanic"}
	_, err := w.Write(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "gave up after 2 attempts") {
		t.Fatalf("Write error = %v", err)
	}
	if w.Pending() != 1 {
		t.Fatalf("pending = %d, want the outcome kept", w.Pending())
	}

	if err := os.Remove(hook); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	commits := branchCommits(t, remote, "bosun/status")
	if len(commits) != 1 || w.Pending() != 0 {
		t.Fatalf("after flush: %d commits, %d pending", len(commits), w.Pending())
	}
	got := fileAt(t, commits[0], "deployments/demo.yml")
	if strings.Contains(got, "hunter2") || !strings.Contains(got, "((redacted))") || !strings.Contains(got, "process: greeter") {
		t.Fatalf("status file:\n%s", got)
	}
}
