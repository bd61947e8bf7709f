package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	repotemplate "github.com/bosun-gitops/bosun/repo-template"
)

func init() {
	register(&command{name: "init", summary: "create a manifest repository from the example (demo deployment, its release, cloud-config, policies) and commit it", run: runInit})
}

func runInit(ctx context.Context, c *cli, args []string) error {
	fset := newFlagSet(c, "init", "DIR")
	branch := fset.String("branch", "main", "the branch to commit to (the one the director tracks)")
	rest, err := parseFlags(fset, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError("want one directory: `bosun init DIR`")
	}
	sha, err := initRepo(rest[0], *branch)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Initialized a manifest repository in %s (%s, commit %s).\nRun the director on it: bosun director --dev --repo %s\n", rest[0], *branch, sha[:7], rest[0])
	return nil
}

// initRepo copies the template into dir (which must be empty or missing), makes it a git
// repository and commits everything.
func initRepo(dir, branch string) (string, error) {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return "", fmt.Errorf("%s is not empty; bosun init wants a new or empty directory", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("init %s: %w", dir, err)
	}
	tmpl := repotemplate.FS()
	err := fs.WalkDir(tmpl, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := fs.ReadFile(tmpl, p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if filepath.Base(p) == "packaging" {
			mode = 0o755
		}
		return os.WriteFile(dst, b, mode)
	})
	if err != nil {
		return "", fmt.Errorf("init %s: copy the template: %w", dir, err)
	}
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName(branch)}})
	if err != nil {
		return "", fmt.Errorf("init %s: %w", dir, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", fmt.Errorf("init %s: %w", dir, err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return "", fmt.Errorf("init %s: %w", dir, err)
	}
	sig := &object.Signature{Name: envOr("GIT_AUTHOR_NAME", "Bosun"), Email: envOr("GIT_AUTHOR_EMAIL", "bosun@localhost"), When: time.Now()}
	h, err := wt.Commit("Bosun: the example manifest repository\n\nA demo deployment of two instances answering HTTP on port 8080, its release\nas a source directory, a cloud-config for the local CPI and example policies.\n", &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		return "", fmt.Errorf("init %s: commit: %w", dir, err)
	}
	return h.String(), nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
