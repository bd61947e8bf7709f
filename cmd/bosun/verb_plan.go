package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
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
	var pv *reconciler.Preview
	opts := reconciler.PreviewOptions{Base: baseFS, Commit: commit}
	if *againstDirector {
		cl, err := rf.client()
		if err != nil {
			return err
		}
		opts.Director, opts.DirectorName = directorState{cl}, cl.URL()
		if pv, err = serverPlan(ctx, c, cl, dir, *base, commit); err != nil {
			return err
		}
	}
	if pv == nil {
		if pv, err = reconciler.PreviewAgainst(ctx, os.DirFS(dir), opts); err != nil {
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
	}
	if *asJSON {
		if err := printJSON(c.stdout, pv); err != nil {
			return err
		}
	} else {
		if err := writePreview(c.stdout, pv); err != nil {
			return err
		}
		if *againstDirector && !pv.ServerSide && *base == "" && len(pv.Deleted) > 0 {
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

// serverPlan has the director plan dir itself (POST /plan), when it can: it renders with
// the variables it keeps, so generated passwords and certificates are its own. nil (and
// no error): it cannot, say why on stderr, and the caller plans here.
func serverPlan(ctx context.Context, c *cli, cl *api.Client, dir, base string, commit policy.Commit) (*reconciler.Preview, error) {
	in, err := cl.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("plan against the director at %s: %w", cl.URL(), remoteError(err))
	}
	if !in.Features["plan"] {
		if in.User == "" {
			return nil, nil // the token is not accepted: the plan here says so
		}
		fmt.Fprintf(c.stderr, "The director at %s does not plan trees itself (it is older); planning here, with throwaway values for the variables it generates.\n", cl.URL())
		return nil, nil
	}
	tgz, err := packTree(dir, api.MaxPlanUpload)
	if errors.Is(err, errTreeTooBig) {
		fmt.Fprintf(c.stderr, "The working tree is over the director's %d MiB limit for a plan; planning here, with throwaway values for the variables it generates.\n", api.MaxPlanUpload>>20)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	o := api.PlanOptions{Author: commit.Author.Name, Message: commit.Message}
	if base != "" {
		if o.Base, err = resolveSHA(dir, base); err != nil {
			return nil, err
		}
	}
	raw, err := cl.Plan(ctx, tgz, o)
	var ae *api.Error
	if errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity {
		return nil, fmt.Errorf("the director cannot plan the repository:\n  %s", strings.ReplaceAll(ae.Message, "\n", "\n  "))
	}
	if err != nil {
		return nil, fmt.Errorf("plan on the director at %s: %w", cl.URL(), remoteError(err))
	}
	var pv reconciler.Preview
	if err := json.Unmarshal(raw, &pv); err != nil {
		return nil, fmt.Errorf("plan on the director at %s: unreadable answer: %w", cl.URL(), err)
	}
	pv.Director, pv.ServerSide = cl.URL(), true
	return &pv, nil
}

var errTreeTooBig = errors.New("the tree is too big")

// packTree writes dir as a gzipped tar for POST /plan, without .git. Links are followed
// when they stay inside dir (the director takes no links); one that leads out of it is
// an error, as the director would not see what it points to.
func packTree(dir string, limit int) ([]byte, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755})
		}
		src := p
		if d.Type()&fs.ModeSymlink != 0 {
			if src, err = filepath.EvalSymlinks(p); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if r, err := filepath.Rel(root, src); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
				return fmt.Errorf("%s links out of the repository (to %s); the director would not see it", name, src)
			}
			if fi, err := os.Stat(src); err != nil || !fi.Mode().IsRegular() {
				return fmt.Errorf("%s is a link to a directory or a special file; the director's plan takes files", name)
			}
		} else if !d.Type().IsRegular() {
			return nil // sockets and the like are no part of a manifest repository
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
		if buf.Len() > limit {
			return errTreeTooBig
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if errors.Is(err, errTreeTooBig) || err == nil && buf.Len() > limit {
		return nil, errTreeTooBig
	}
	if err != nil {
		return nil, fmt.Errorf("pack %s for the director: %w", dir, err)
	}
	return buf.Bytes(), nil
}

// resolveSHA is the full sha of rev in the git repository at dir.
func resolveSHA(dir, rev string) (string, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return "", fmt.Errorf("--base %s: %s is not a git repository: %w", rev, dir, err)
	}
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return "", fmt.Errorf("--base %s: %w", rev, err)
	}
	return h.String(), nil
}

func writePreview(w io.Writer, pv *reconciler.Preview) error {
	if pv.ServerSide {
		fmt.Fprintf(w, "Rendered and planned by the director at %s: with the variables it keeps, against what it has now, judged by the policies in force there.\n\n", pv.Director)
	} else if pv.Director != "" {
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
