package source

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// workRepo is a non-bare repository tests commit to with go-git.
type workRepo struct {
	t    testing.TB
	dir  string
	repo *git.Repository
	n    int
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

// commit writes files (path → content; empty content deletes) and commits them.
func (r *workRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	wt, err := r.repo.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	for p, c := range files {
		full := filepath.Join(r.dir, p)
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
	h, err := wt.Commit(msg, &git.CommitOptions{AllowEmptyCommits: true,
		Author:    &object.Signature{Name: "Ada Author", Email: "ada@example.com", When: when},
		Committer: &object.Signature{Name: "Cy Committer", Email: "cy@example.com", When: when.Add(time.Second)}})
	if err != nil {
		r.t.Fatal(err)
	}
	return h.String()
}

// newBareRemote returns a bare repository that r pushes main to.
func (r *workRepo) newBareRemote() string {
	r.t.Helper()
	dir := r.t.TempDir()
	if _, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{Bare: true, InitOptions: git.InitOptions{DefaultBranch: plumbing.Main}}); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{"file://" + dir}}); err != nil {
		r.t.Fatal(err)
	}
	return dir
}

func (r *workRepo) push(force bool) {
	r.t.Helper()
	spec := config.RefSpec("refs/heads/main:refs/heads/main")
	if force {
		spec = "+" + spec
	}
	if err := r.repo.Push(&git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}}); err != nil && err != git.NoErrAlreadyUpToDate {
		r.t.Fatal(err)
	}
}

func openSource(t testing.TB, url, cache string) *Source {
	t.Helper()
	s, err := Open(Config{Remote: Remote{URL: url}, Branch: "main", CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
