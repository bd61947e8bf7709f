package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/bosun-gitops/bosun/policy"
	"github.com/bosun-gitops/bosun/reconciler"
)

func init() {
	register(&command{name: "plan", summary: "render a manifest repository and print what converging it would do, with the policy verdict (no director needed)", run: runPlan})
}

func runPlan(ctx context.Context, c *cli, args []string) error {
	fset := newFlagSet(c, "plan", "[REPO]")
	base := fset.String("base", "", "plan from this revision of REPO (a branch, tag or sha: what is deployed now) instead of from nothing; its policies judge")
	asJSON := fset.Bool("json", false, "print the plans and verdict as JSON")
	rest, err := parseFlags(fset, args)
	if err != nil {
		return err
	}
	dir := "."
	switch len(rest) {
	case 0:
	case 1:
		dir = rest[0]
	default:
		return usageError("want at most one repository directory, got %d arguments", len(rest))
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return usageError("%s is not a directory", dir)
	}
	var baseFS fs.FS
	commit := policy.Commit{SHA: "working-tree", Author: policy.Person{Name: envOr("GIT_AUTHOR_NAME", "bosun plan"), Time: time.Now().UTC().Format(time.RFC3339)}}
	if *base != "" {
		tmp, err := os.MkdirTemp("", "bosun-plan-base-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if baseFS, err = extractRevision(dir, *base, tmp); err != nil {
			return err
		}
		if msg, ok := headMessage(dir); ok {
			commit.Message = msg
		}
	}
	pv, err := reconciler.PreviewRevisions(ctx, baseFS, os.DirFS(dir), commit)
	if err != nil {
		var re *reconciler.RenderError
		if errors.As(err, &re) {
			return fmt.Errorf("the repository does not render:\n  %s", strings.Join(re.Problems, "\n  "))
		}
		return err
	}
	if *asJSON {
		if err := printJSON(c.stdout, pv); err != nil {
			return err
		}
	} else if err := writePreview(c.stdout, pv); err != nil {
		return err
	}
	if !pv.Verdict.Allowed() {
		return reconciler.ErrRejected
	}
	return nil
}

func writePreview(w io.Writer, pv *reconciler.Preview) error {
	for _, d := range pv.Deployments {
		if !d.Changed {
			fmt.Fprintf(w, "Deployment %s: no changes\n\n", d.Name)
			continue
		}
		if err := d.Plan.WriteText(w); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	for _, n := range pv.Deleted {
		fmt.Fprintf(w, "Deployment %s: deleted (its directory is gone): every VM, disk and IP goes\n\n", n)
	}
	for _, n := range pv.Kept {
		fmt.Fprintf(w, "Deployment %s: its directory is gone, but it is kept (protected, or the repository is empty)\n\n", n)
	}
	v := pv.Verdict
	verdict := "allowed"
	if !v.Allowed() {
		verdict = "REJECTED"
	}
	fmt.Fprintf(w, "Policy: %s (%d denied, %d warnings, %d waived)\n", verdict, len(v.Denies), len(v.Warnings), len(v.Exceptions))
	for _, m := range v.Denies {
		fmt.Fprintf(w, "  deny: %s\n", m)
	}
	for _, m := range v.Warnings {
		fmt.Fprintf(w, "  warn: %s\n", m)
	}
	for _, m := range v.Exceptions {
		fmt.Fprintf(w, "  waived: %s\n", m)
	}
	return nil
}

// headMessage is the message of dir's HEAD commit, whose trailers policies may read.
func headMessage(dir string) (string, bool) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return "", false
	}
	h, err := repo.Head()
	if err != nil {
		return "", false
	}
	c, err := repo.CommitObject(h.Hash())
	if err != nil {
		return "", false
	}
	return c.Message, true
}

// extractRevision writes the tree of rev in the git repository at dir into out.
func extractRevision(dir, rev, out string) (fs.FS, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, fmt.Errorf("--base %s: %s is not a git repository: %w", rev, dir, err)
	}
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, fmt.Errorf("--base %s: %w", rev, err)
	}
	c, err := repo.CommitObject(*h)
	if err != nil {
		return nil, fmt.Errorf("--base %s: %w", rev, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("--base %s: %w", rev, err)
	}
	err = tree.Files().ForEach(func(f *object.File) error {
		dst := filepath.Join(out, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		s, err := f.Contents()
		if err != nil {
			return err
		}
		return os.WriteFile(dst, []byte(s), 0o644)
	})
	if err != nil {
		return nil, fmt.Errorf("--base %s: read its tree: %w", rev, err)
	}
	return os.DirFS(out), nil
}
