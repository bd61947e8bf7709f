package reconciler

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/bosun-gitops/bosun/policy"
	"github.com/bosun-gitops/bosun/reconciler/plan"
)

// Preview is what a revision would do (`bosun plan`): each deployment's plan from the base
// revision, from nothing, or from a director's observed state, to the head; the
// deployments it would delete; and the policy verdict.
type Preview struct {
	Deployments []PreviewDeployment `json:"deployments"`
	Deleted     []string            `json:"deleted,omitempty"`
	Kept        []string            `json:"kept,omitempty"` // removed but protected, or an empty repository
	Verdict     policy.Decision     `json:"verdict"`
	// Director names the director whose observed state the deployments were planned
	// from (bosun plan --director); empty when planned offline.
	Director string `json:"director,omitempty"`
	// PolicyError is set when the policies could not judge (the change is then rejected).
	PolicyError string `json:"policy_error,omitempty"`
}

// PreviewDeployment is one deployment's part of a Preview.
type PreviewDeployment struct {
	Name    string    `json:"name"`
	Changed bool      `json:"changed"`
	Plan    plan.Plan `json:"plan"`
	// New: planned against a director that does not have the deployment.
	New bool `json:"new,omitempty"`
	// Deleted: the plan deletes the deployment (its directory is gone).
	Deleted bool `json:"deleted,omitempty"`
	// Unplanned, when set, says why the deployment could not be planned.
	Unplanned string `json:"unplanned,omitempty"`
	// Notes qualify the plan (what it could not know).
	Notes []string `json:"notes,omitempty"`
}

// seqIDs returns an id maker giving stable, readable ids for previews.
func seqIDs(prefix string) func() string {
	n := 0
	return func() string {
		n++
		return fmt.Sprintf("%s-%d", prefix, n)
	}
}

// observedAfter is the state a plan leaves: every instance it keeps, as converged.
func observedAfter(p plan.Plan) plan.Observed {
	var o plan.Observed
	for _, g := range p.Groups {
		for _, in := range g.Instances {
			if in.Action == plan.Delete {
				continue
			}
			ips := map[string]string{}
			for _, a := range in.IPs {
				if a.IP != "" {
					ips[a.Network] = a.IP
				}
			}
			o.Instances = append(o.Instances, plan.Instance{ID: in.ID, Group: in.Group, Index: in.Index, AZ: in.AZ, Bootstrap: in.Bootstrap,
				VMCID: "vm-" + in.ID, State: "started", IPs: ips, Applied: in.Applied})
		}
	}
	return o
}

// PreviewRevisions renders base (nil: nothing deployed yet) and head, judges head with
// base's policies (or its own when there is no base), and plans every deployment from
// base to head. A render error of head is returned as a *RenderError.
func PreviewRevisions(ctx context.Context, base, head fs.FS, commit policy.Commit) (*Preview, error) {
	return PreviewAgainst(ctx, head, PreviewOptions{Base: base, Commit: commit})
}

// PreviewOptions say what a preview plans from and how it is judged.
type PreviewOptions struct {
	// Base is what is deployed now (nil: nothing). Its policies judge and its render is
	// the policies' "previous"; without a Director each deployment plans from it.
	Base   fs.FS
	Commit policy.Commit
	// Director, when set, is a running director whose observed state every deployment
	// plans from, instead of from Base's desired state: real instance ids, indexes, AZs,
	// addresses and applied fingerprints. Its deployments that head lacks are deleted.
	Director Director
	// DirectorName names the director in the preview (its URL or alias).
	DirectorName string
}

// Director is what a preview reads of a running director (through its API; cmd/bosun
// implements it).
type Director interface {
	// Deployments lists the deployments the director has that the caller may read.
	Deployments(ctx context.Context) ([]string, error)
	// Observed is a deployment's state as the director's planner sees it; known is false
	// for a deployment the director does not have, whose observed state then holds only
	// the addresses other deployments use. ErrNotVisible: the caller may not read it.
	Observed(ctx context.Context, deployment string) (obs plan.Observed, known bool, err error)
}

// ErrNotVisible is a Director's answer for a deployment the caller's token may not read.
var ErrNotVisible = errors.New("the token may not read this deployment")

// PreviewAgainst renders head (and o.Base), judges head as PreviewRevisions does, and
// plans every deployment from o.Director's observed state when set, else from o.Base's
// desired state (or from nothing). A render error of head is returned as a *RenderError.
func PreviewAgainst(ctx context.Context, head fs.FS, o PreviewOptions) (*Preview, error) {
	base, commit := o.Base, o.Commit
	vars := &MemoryVariables{}
	rr := &Renderer{Vars: vars} // one vars store: base and head see the same generated values
	var b *Rendered
	if base != nil {
		var err error
		if b, err = rr.Render(ctx, "base", base); err != nil {
			return nil, fmt.Errorf("the base revision does not render: %w", err)
		}
	}
	h, err := rr.Render(ctx, "head", head)
	if err != nil {
		return nil, err
	}
	out := &Preview{Director: o.DirectorName}
	if o.Director != nil {
		if err := previewDirector(ctx, o.Director, h, vars, out); err != nil {
			return nil, err
		}
	} else {
		for _, name := range h.Names() {
			d := h.Deployments[name]
			obs := plan.Observed{}
			changed := true
			if b != nil {
				if bd := b.Deployments[name]; bd != nil {
					bp, err := plan.Compute(bd.Desired, plan.Observed{}, plan.Options{NewID: seqIDs(name)})
					if err != nil {
						return nil, fmt.Errorf("plan %s at the base revision: %w", name, err)
					}
					obs = observedAfter(bp)
					changed = bd.Digest != d.Digest
				}
			}
			p, err := plan.Compute(d.Desired, obs, plan.Options{NewID: seqIDs(name + "-new")})
			if err != nil {
				return nil, fmt.Errorf("plan %s: %w", name, err)
			}
			out.Deployments = append(out.Deployments, PreviewDeployment{Name: name, Changed: changed && !p.Empty(), Plan: p})
		}
		if b != nil {
			out.Deleted, out.Kept = removed(h, b.Names())
		}
	}
	var prev policy.Snapshot
	var judge *policy.Engine
	if b != nil {
		prev = b.Snapshot
		if judge, err = policy.Load(ctx, base, PoliciesDir, policy.WithRevision("base")); err != nil {
			return nil, fmt.Errorf("the base revision's policies do not load: %w", err)
		}
	}
	gate := policy.NewGate(judge, PoliciesDir)
	secrets := h.Secrets
	if b != nil {
		secrets = append(slices.Clone(secrets), b.Secrets...)
	}
	v, err := gate.Judge(ctx, policy.Input{Commit: commit, Previous: prev, Proposed: h.Snapshot, Secrets: secrets}, head)
	out.Verdict = v.Decision
	if err != nil {
		out.PolicyError = err.Error()
		if len(out.Verdict.Denies) == 0 {
			out.Verdict.Denies = []policy.Message{{Rule: "bosun.policy", Msg: err.Error()}}
		}
	}
	return out, nil
}

// removed sorts the deployments of was that head lacks into deleted and kept (protected
// by head's bosun.yml, or head has no deployments at all), as the reconciler does.
func removed(h *Rendered, was []string) (deleted, kept []string) {
	for _, name := range was {
		if _, ok := h.Deployments[name]; ok {
			continue
		}
		if len(h.Deployments) == 0 || h.Config.Protected(name) {
			kept = append(kept, name)
		} else {
			deleted = append(deleted, name)
		}
	}
	return deleted, kept
}

// previewDirector plans h's deployments from dir's observed state, and the deletion of
// the director's deployments h lacks.
func previewDirector(ctx context.Context, dir Director, h *Rendered, vars *MemoryVariables, out *Preview) error {
	for _, name := range h.Names() {
		d := h.Deployments[name]
		obs, known, err := dir.Observed(ctx, name)
		if errors.Is(err, ErrNotVisible) {
			out.Deployments = append(out.Deployments, PreviewDeployment{Name: name, Unplanned: "the token may not read it on the director, so there is nothing to plan it against"})
			continue
		}
		if err != nil {
			return fmt.Errorf("plan %s: %w", name, err)
		}
		p, err := plan.Compute(d.Desired, obs, plan.Options{NewID: seqIDs(name + "-new")})
		if err != nil {
			return fmt.Errorf("plan %s against the director's state: %w", name, err)
		}
		pd := PreviewDeployment{Name: name, Changed: !p.Empty(), Plan: p, New: !known}
		if known && jobsChange(p) {
			// Job hashes cover interpolated properties: a variable the director generated
			// (a password, a certificate) has a throwaway value here, which the director
			// never shows, so its jobs always look changed.
			if gen, err := vars.Load(ctx, name); err == nil && len(gen.Pairs) > 0 {
				names := make([]string, len(gen.Pairs))
				for i, p := range gen.Pairs {
					names[i] = fmt.Sprint(p.Key.Value)
				}
				pd.Notes = append(pd.Notes, fmt.Sprintf("it uses variables the director generates and keeps secret (%s): they got throwaway values here, so a \"jobs\" change may be only that", strings.Join(names, ", ")))
			}
		}
		out.Deployments = append(out.Deployments, pd)
	}
	have, err := dir.Deployments(ctx)
	if err != nil {
		return fmt.Errorf("list the director's deployments: %w", err)
	}
	slices.Sort(have)
	out.Deleted, out.Kept = removed(h, have)
	for _, name := range out.Deleted {
		obs, _, err := dir.Observed(ctx, name)
		if err != nil {
			return fmt.Errorf("plan the deletion of %s: %w", name, err)
		}
		p, err := plan.Compute(plan.Desired{Name: name, Deleted: true}, obs, plan.Options{NewID: seqIDs(name + "-new")})
		if err != nil {
			return fmt.Errorf("plan the deletion of %s: %w", name, err)
		}
		// Changed even without instances: the director forgets the deployment.
		out.Deployments = append(out.Deployments, PreviewDeployment{Name: name, Changed: true, Deleted: true, Plan: p})
	}
	return nil
}

// jobsChange reports whether an instance of p changes for its jobs.
func jobsChange(p plan.Plan) bool {
	for _, g := range p.Groups {
		for _, in := range g.Instances {
			for _, r := range in.Reasons {
				if r.Kind == plan.ReasonJobs {
					return true
				}
			}
		}
	}
	return false
}

// ErrRejected is returned by callers that turn a denying Preview into an exit status.
var ErrRejected = errors.New("the policies reject this change")
