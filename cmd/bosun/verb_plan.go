package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/policy"
	"github.com/bosun-gitops/bosun/reconciler"
	"github.com/bosun-gitops/bosun/reconciler/plan"
)

func init() {
	register(&command{name: "plan", summary: "render a manifest repository and print what converging it would do, with the policy verdict (offline, or against a director's state with --director)", run: runPlan})
}

func runPlan(ctx context.Context, c *cli, args []string) error {
	fset := newFlagSet(c, "plan", "[REPO]")
	base := fset.String("base", "", "plan from this revision of REPO (a branch, tag or sha: what is deployed now) instead of from nothing; its policies judge")
	againstDirector := fset.Bool("director", false, "plan against what the logged-in director has (real instance ids, addresses, what each runs) instead of from --base or nothing; -e chooses the director")
	rf := addRemoteFlags(fset, false) // -e, and --json: print the plans and verdict as JSON
	rest, err := parseFlags(fset, args)
	if err != nil {
		return err
	}
	asJSON := &rf.json
	envGiven := false
	fset.Visit(func(f *flag.Flag) { envGiven = envGiven || f.Name == "e" || f.Name == "environment" })
	if envGiven && !*againstDirector {
		return usageError("-e chooses the director of --director; give --director too")
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
	opts := reconciler.PreviewOptions{Base: baseFS, Commit: commit}
	if *againstDirector {
		cl, err := rf.client()
		if err != nil {
			return err
		}
		opts.Director, opts.DirectorName = directorState{cl}, cl.URL()
	}
	pv, err := reconciler.PreviewAgainst(ctx, os.DirFS(dir), opts)
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) {
			return fmt.Errorf("plan against the director at %s: %w", opts.DirectorName, remoteError(err))
		}
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
	} else {
		if err := writePreview(c.stdout, pv); err != nil {
			return err
		}
		if *againstDirector && *base == "" && len(pv.Deleted) > 0 {
			// The policies' "previous" comes from --base only: without it they see no
			// deletion, and a deletion policy cannot deny one.
			fmt.Fprintf(c.stdout, "Note: the policies judged without a previous revision, so they did not see the deletion of %s; give --base (the branch the director tracks) for that\n", strings.Join(pv.Deleted, ", "))
		}
	}
	if !pv.Verdict.Allowed() {
		return reconciler.ErrRejected
	}
	return nil
}

// directorState is a director's observed state, read through its API, for
// reconciler.PreviewAgainst.
type directorState struct{ cl *api.Client }

func (s directorState) Deployments(ctx context.Context) ([]string, error) {
	ds, err := s.cl.Deployments(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.Name
	}
	return names, nil
}

func (s directorState) Observed(ctx context.Context, deployment string) (plan.Observed, bool, error) {
	o, err := s.cl.Observed(ctx, deployment)
	var ae *api.Error
	if errors.As(err, &ae) && ae.Status == http.StatusForbidden {
		return plan.Observed{}, false, fmt.Errorf("%w: %s", reconciler.ErrNotVisible, ae.Message)
	}
	if err != nil {
		return plan.Observed{}, false, err
	}
	return observedFromAPI(o), o.Known, nil
}

func writePreview(w io.Writer, pv *reconciler.Preview) error {
	if pv.Director != "" {
		fmt.Fprintf(w, "Planned against the state of the director at %s (what it has now, not what the repository had).\n\n", pv.Director)
	}
	planned := map[string]bool{}
	for _, d := range pv.Deployments {
		planned[d.Name] = true
		header := ""
		switch {
		case d.Unplanned != "":
			fmt.Fprintf(w, "Deployment %s: not planned: %s\n\n", d.Name, d.Unplanned)
			continue
		case d.Deleted:
			header = fmt.Sprintf("Deployment %s: deleted (its directory is gone): every VM, disk and IP goes", d.Name)
		case !d.Changed:
			fmt.Fprintf(w, "Deployment %s: no changes\n\n", d.Name)
			continue
		case d.New:
			header = fmt.Sprintf("Deployment %s: new to the director", d.Name)
		}
		if err := writePlan(w, header, d.Plan); err != nil {
			return err
		}
		for _, n := range d.Notes {
			fmt.Fprintf(w, "Note: %s\n", n)
		}
		fmt.Fprintln(w)
	}
	for _, n := range pv.Deleted {
		if planned[n] {
			continue
		}
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

// writePlan writes p as text, its first line ("Deployment NAME") replaced by header when
// one is given.
func writePlan(w io.Writer, header string, p plan.Plan) error {
	if header == "" {
		return p.WriteText(w)
	}
	if p.Empty() {
		_, err := fmt.Fprintln(w, header)
		return err
	}
	var b strings.Builder
	if err := p.WriteText(&b); err != nil {
		return err
	}
	_, rest, _ := strings.Cut(b.String(), "\n")
	_, err := fmt.Fprintf(w, "%s\n%s", header, rest)
	return err
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
