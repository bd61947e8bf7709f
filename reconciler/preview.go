package reconciler

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/bosun-gitops/bosun/policy"
	"github.com/bosun-gitops/bosun/reconciler/plan"
)

// Preview is what a revision would do, computed without a director (`bosun plan`): each
// deployment's plan from the base revision (or from nothing) to the head, the deployments
// it would delete, and the policy verdict.
type Preview struct {
	Deployments []PreviewDeployment `json:"deployments"`
	Deleted     []string            `json:"deleted,omitempty"`
	Kept        []string            `json:"kept,omitempty"` // removed but protected, or an empty repository
	Verdict     policy.Decision     `json:"verdict"`
	// PolicyError is set when the policies could not judge (the change is then rejected).
	PolicyError string `json:"policy_error,omitempty"`
}

// PreviewDeployment is one deployment's part of a Preview.
type PreviewDeployment struct {
	Name    string    `json:"name"`
	Changed bool      `json:"changed"`
	Plan    plan.Plan `json:"plan"`
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
	rr := &Renderer{} // one vars store: base and head see the same generated values
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
	out := &Preview{}
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
		for _, name := range b.Names() {
			if _, ok := h.Deployments[name]; ok {
				continue
			}
			if len(h.Deployments) == 0 || h.Config.Protected(name) {
				out.Kept = append(out.Kept, name)
			} else {
				out.Deleted = append(out.Deleted, name)
			}
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

// ErrRejected is returned by callers that turn a denying Preview into an exit status.
var ErrRejected = errors.New("the policies reject this change")
