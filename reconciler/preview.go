package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/bosun-gitops/bosun/policy"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/reconciler/source"
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
	// ServerSide: the director rendered the tree (POST /plan), with the variables it
	// keeps, so generated passwords and certificates are its own and not throwaway ones.
	ServerSide bool `json:"server_side,omitempty"`
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

	// What a director sets when it plans a tree itself (Reconciler.PlanTree):
	//
	// Vars are its stored variables, read only: the values it deployed with, and
	// throwaway ones, never stored, for variables it does not have. Nil: every variable
	// gets a throwaway value.
	Vars *ReadOnlyVariables
	// Releases resolves releases (nil: a fresh resolver that fetches what it needs).
	Releases *Releases
	// Previous is the base revision already rendered (the last accepted one): the
	// policies' "previous". Base is not rendered when it is set.
	Previous *Rendered
	// Policies judge instead of Base's (the director's gate: the last accepted
	// revision's policies, or those of its trusted policy source).
	Policies *policy.Engine
	// TrustedPolicies: the director judges with a separate policy source, so head's
	// policies are not even loaded (as the reconciler judges a commit).
	TrustedPolicies bool
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
	vars := o.Vars
	if vars == nil {
		vars = ReadOnly(nil)
	}
	rr := &Renderer{Vars: vars, Releases: o.Releases} // one vars store: base and head see the same generated values
	b := o.Previous
	if base != nil && b == nil {
		var err error
		if b, err = rr.Render(ctx, "base", base); err != nil {
			return nil, fmt.Errorf("the base revision does not render: %w", err)
		}
	}
	h, err := rr.Render(ctx, "head", head)
	if err != nil {
		return nil, err
	}
	out := &Preview{Director: o.DirectorName, ServerSide: o.Vars != nil}
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
	if b != nil {
		prev = b.Snapshot
	}
	judge := o.Policies
	if judge == nil && base != nil {
		if judge, err = policy.Load(ctx, base, PoliciesDir, policy.WithRevision("base")); err != nil {
			return nil, fmt.Errorf("the base revision's policies do not load: %w", err)
		}
	}
	gate := policy.NewGate(judge, PoliciesDir)
	proposed := head
	if o.TrustedPolicies {
		proposed = nil
	}
	secrets := h.Secrets
	if b != nil {
		secrets = append(slices.Clone(secrets), b.Secrets...)
	}
	v, err := gate.Judge(ctx, policy.Input{Commit: commit, Previous: prev, Proposed: h.Snapshot, Secrets: secrets}, proposed)
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
func previewDirector(ctx context.Context, dir Director, h *Rendered, vars *ReadOnlyVariables, out *Preview) error {
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
		throwaway := vars.Throwaway(ctx, name)
		switch {
		case len(throwaway) == 0:
		case !out.ServerSide && known && jobsChange(p):
			// Job hashes cover interpolated properties: a variable the director generated
			// (a password, a certificate) has a throwaway value here, which the director
			// never shows, so its jobs always look changed.
			pd.Notes = append(pd.Notes, fmt.Sprintf("it uses variables the director generates and keeps secret (%s): they got throwaway values here, so a \"jobs\" change may be only that", strings.Join(throwaway, ", ")))
		case out.ServerSide && pd.Changed:
			pd.Notes = append(pd.Notes, fmt.Sprintf("it uses variables the director does not have yet (%s): it generates them when it deploys this change; the plan used throwaway values, stored nowhere", strings.Join(throwaway, ", ")))
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

// TreePlanOptions say what a plan of an uploaded tree (POST /plan) is shown against.
type TreePlanOptions struct {
	// Base, when set, is a commit of the tracked branch (full sha) whose render is the
	// policies' "previous"; empty: the last accepted revision, as for a commit on top of it.
	Base   string
	Commit policy.Commit
	// Visible says which deployments the caller may read; the others are listed as not
	// planned. Nil: every one.
	Visible func(deployment string) bool
	// DirectorName names the director in the preview.
	DirectorName string
}

// ErrPlanInput wraps what a tree plan fails of the caller's making: a tree that does not
// render, a base that is not on the branch.
var ErrPlanInput = errors.New("cannot plan")

// PlanTree renders head as the reconciler renders a revision, with the director's own
// variables read-only (its deployed passwords and certificates; throwaway values,
// stored nowhere, for ones it lacks), plans each deployment from the director's observed
// state, and judges head with the gate's policies as it would judge a commit on top of
// the last accepted revision. Nothing is written. Values of stored variables never
// appear in the preview, nor in an error.
func (r *Reconciler) PlanTree(ctx context.Context, head fs.FS, o TreePlanOptions) (*Preview, error) {
	vars := ReadOnly(r.cfg.Renderer.Vars)
	rel := r.cfg.Renderer.Releases.Offline()
	var secrets []string
	for _, name := range deploymentDirs(head) {
		s, err := vars.Stored(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("read the variables of %s: %w", name, err)
		}
		secrets = append(secrets, s...)
	}
	prev := r.shown.Load()
	if o.Base != "" {
		rev, err := r.cfg.Source.FetchRevision(ctx, o.Base)
		if errors.Is(err, source.ErrNotInHistory) {
			return nil, fmt.Errorf("%w: base %s: %w", ErrPlanInput, o.Base, err)
		}
		if err != nil {
			return nil, fmt.Errorf("base %s: %w", o.Base, err)
		}
		r.cacheMu.Lock()
		rd, ok := r.cache[rev.SHA]
		r.cacheMu.Unlock()
		if !ok {
			// Not through r.rendered: that renderer stores the variables it generates.
			if rd, err = (&Renderer{Vars: vars, Releases: rel}).Render(ctx, rev.SHA, rev.FS()); err != nil {
				return nil, fmt.Errorf("%w: the base revision %s does not render: %s", ErrPlanInput, rev.Short(), redact(err.Error(), secrets))
			}
		}
		prev = rd
	}
	if prev != nil {
		secrets = append(secrets, prev.Secrets...)
	}
	renders, err := r.cfg.Store.DeploymentRenders(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the director's deployments: %w", err)
	}
	dir := reconcilerDirector{r: r, visible: o.Visible, have: map[string]bool{}}
	for _, d := range renders {
		dir.have[d.Deployment] = true
	}
	pv, err := PreviewAgainst(ctx, head, PreviewOptions{Commit: o.Commit, Director: dir, DirectorName: o.DirectorName,
		Vars: vars, Releases: rel, Previous: prev, Policies: r.cfg.Gate.Engine(), TrustedPolicies: r.cfg.PolicySource != nil})
	if err != nil {
		var re *RenderError
		if errors.As(err, &re) {
			problems := make([]string, len(re.Problems))
			for i, p := range re.Problems {
				problems[i] = redact(p, secrets)
			}
			return nil, fmt.Errorf("%w: %w", ErrPlanInput, &RenderError{Problems: problems})
		}
		return nil, errors.New(redact(err.Error(), secrets))
	}
	// Plans carry hashes and addresses, and policy messages are redacted by the gate;
	// this is the last guard, over everything the answer says.
	return redactPreview(pv, secrets)
}

// reconcilerDirector is the director itself, for a preview it plans: the reconciler's
// observed state, and the deployments it has rendered.
type reconcilerDirector struct {
	r       *Reconciler
	visible func(string) bool
	have    map[string]bool
}

func (d reconcilerDirector) Deployments(ctx context.Context) ([]string, error) {
	var out []string
	for name := range d.have {
		if d.visible == nil || d.visible(name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (d reconcilerDirector) Observed(ctx context.Context, name string) (plan.Observed, bool, error) {
	if d.visible != nil && !d.visible(name) {
		return plan.Observed{}, false, ErrNotVisible
	}
	o, err := d.r.Observed(ctx, name)
	return o, d.have[name], err
}

// minSecret is the shortest value redacted: shorter ones (a port in vars.yml) would
// blank out unrelated text; generated values are far longer.
const minSecret = 6

// redact replaces every secret in s.
func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= minSecret {
			s = strings.ReplaceAll(s, sec, "(redacted)")
		}
	}
	return s
}

// redactPreview redacts secrets anywhere in pv's JSON (as JSON escapes them: a
// certificate's newlines are \n there).
func redactPreview(pv *Preview, secrets []string) (*Preview, error) {
	b, err := json.Marshal(pv)
	if err != nil {
		return nil, fmt.Errorf("encode the plan: %w", err)
	}
	s := string(b)
	for _, sec := range secrets {
		if len(sec) < minSecret {
			continue
		}
		q, err := json.Marshal(sec)
		if err != nil {
			return nil, fmt.Errorf("encode the plan: %w", err)
		}
		s = strings.ReplaceAll(s, string(q[1:len(q)-1]), "(redacted)")
	}
	if s == string(b) {
		return pv, nil
	}
	var out Preview
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("decode the redacted plan: %w", err)
	}
	return &out, nil
}
