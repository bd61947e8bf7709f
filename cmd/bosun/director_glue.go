package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/cpi"
	hm "github.com/bosun-gitops/bosun/health"
	"github.com/bosun-gitops/bosun/policy"
	"github.com/bosun-gitops/bosun/reconciler"
	"github.com/bosun-gitops/bosun/reconciler/plan"
)

// The glue between roles that must not import each other: the API's "reconcile now" and
// sources, and the health monitor's resurrection rules from bosun.yml.

func glueRoles(d *director) error {
	if d.reconciler == nil {
		return nil
	}
	if d.api.Reconciler == nil {
		d.api.Reconciler = apiReconciler{d.reconciler}
	}
	if d.api.Observed == nil {
		d.api.Observed = apiObserved{d.reconciler}
	}
	if d.api.Planner == nil {
		d.api.Planner = apiPlanner{d.reconciler}
	}
	if d.api.Sources == nil {
		d.api.Sources = repoSource{d: d}
	}
	if d.api.Checker == nil {
		// One CPI per director: every VM and disk, whatever CPI name its row carries, is
		// asked of it.
		d.api.Checker = cckScan{d.cloudChecker(func(string) (cpi.CPI, error) { return d.directorCPI() })}
	}
	return nil
}

// apiReconciler is the API's POST /reconcile.
type apiReconciler struct{ r *reconciler.Reconciler }

func (a apiReconciler) ReconcileNow(ctx context.Context) error {
	_, err := a.r.ReconcileNow(ctx)
	return err
}

// apiObserved is the API's GET /deployments/{name}/observed: the reconciler's own view.
type apiObserved struct{ r *reconciler.Reconciler }

func (a apiObserved) Observed(ctx context.Context, deployment string) (api.ObservedState, error) {
	o, err := a.r.Observed(ctx, deployment)
	if err != nil {
		return api.ObservedState{}, err
	}
	return observedToAPI(o), nil
}

// apiPlanner is the API's POST /plan: the reconciler plans an uploaded tree itself.
type apiPlanner struct{ r *reconciler.Reconciler }

func (a apiPlanner) Plan(ctx context.Context, tree fs.FS, req api.PlanRequest) (any, error) {
	author := req.Author
	if author == "" {
		author = "bosun plan"
	}
	commit := policy.Commit{SHA: "working-tree", Author: policy.Person{Name: author, Time: time.Now().UTC().Format(time.RFC3339)}, Message: req.Message}
	pv, err := a.r.PlanTree(ctx, tree, reconciler.TreePlanOptions{Base: req.Base, Commit: commit, Visible: req.Visible})
	if err != nil {
		return nil, planError(err)
	}
	return pv, nil
}

// planError marks the caller's mistakes (a tree that does not render) as the API's, which
// answers them 422 with the message; other failures are the director's.
func planError(err error) error {
	if errors.Is(err, reconciler.ErrPlanInput) {
		return fmt.Errorf("%w: %s", api.ErrPlanInput, strings.TrimPrefix(err.Error(), reconciler.ErrPlanInput.Error()+": "))
	}
	return err
}

// observedToAPI and observedFromAPI carry the planner's Observed over the API, which
// mirrors it field for field (api may not import the planner).
func observedToAPI(o plan.Observed) api.ObservedState {
	out := api.ObservedState{IPsInUse: o.IPsInUse, Instances: make([]api.ObservedInstance, len(o.Instances))}
	for i, in := range o.Instances {
		f := in.Applied
		out.Instances[i] = api.ObservedInstance{ID: in.ID, Group: in.Group, Index: in.Index, AZ: in.AZ, Bootstrap: in.Bootstrap,
			VMCID: in.VMCID, State: in.State, IPs: in.IPs, VMMissing: in.VMMissing, Unresponsive: in.Unresponsive,
			Applied: api.Fingerprint{Stemcell: f.Stemcell, VM: f.VM, Env: f.Env, Networks: f.Networks, Jobs: f.Jobs,
				Disk: api.FingerprintDisk{Size: f.Disk.Size, Type: f.Disk.Type}}}
	}
	return out
}

func observedFromAPI(o api.ObservedState) plan.Observed {
	out := plan.Observed{IPsInUse: o.IPsInUse}
	for _, in := range o.Instances {
		f := in.Applied
		out.Instances = append(out.Instances, plan.Instance{ID: in.ID, Group: in.Group, Index: in.Index, AZ: in.AZ, Bootstrap: in.Bootstrap,
			VMCID: in.VMCID, State: in.State, IPs: in.IPs, VMMissing: in.VMMissing, Unresponsive: in.Unresponsive,
			Applied: plan.Fingerprint{Stemcell: f.Stemcell, VM: f.VM, Env: f.Env, Networks: f.Networks, Jobs: f.Jobs,
				Disk: plan.Disk{Size: f.Disk.Size, Type: f.Disk.Type}}})
	}
	return out
}

// repoSource answers GET /sources for the one repository this director tracks.
type repoSource struct{ d *director }

func (s repoSource) Sources(ctx context.Context) ([]api.Source, error) {
	src := api.Source{Name: "repo", Repository: redactURL(s.d.repo), Branch: s.d.rec.branch}
	if revs, err := s.d.store.Revisions(ctx, 1); err == nil && len(revs) > 0 {
		src.LastSeen = revs[0].SHA
	}
	if last, err := s.d.store.LastAccepted(ctx); err == nil {
		src.LastApplied = last.SHA
	}
	return []api.Source{src}, nil
}

// applyResurrection hands the health monitor the resurrection rules of an accepted
// bosun.yml (the reconciler knows nothing of the monitor). A bad section is logged and the
// rules in force stay.
func (d *director) applyResurrection(cfg reconciler.RepoConfig) {
	if d.monitor == nil {
		return
	}
	var def map[string]any
	if cfg.Resurrection != nil {
		def = cfg.Resurrection.Raw
	}
	by := map[string]map[string]any{}
	for name, dc := range cfg.Deployments {
		if dc.Resurrection != nil {
			by[name] = dc.Resurrection.Raw
		}
	}
	if err := d.setResurrectionSections(def, by); err != nil {
		d.log.Warn("resurrection rules of bosun.yml not applied; the previous rules stay", "err", err)
	}
}

// cckScan shows the health monitor's cloud check through the API.
type cckScan struct{ s cckScanner }

// cckScanner is the part of health.Scanner the API uses.
type cckScanner interface {
	Scan(ctx context.Context, deployment string) ([]hm.Problem, error)
	Resolve(ctx context.Context, problems []hm.Problem, choices map[string]string) ([]hm.Resolved, error)
}

func (c cckScan) Scan(ctx context.Context, deployment string) ([]api.Problem, error) {
	ps, err := c.s.Scan(ctx, deployment)
	if err != nil {
		return nil, err
	}
	out := make([]api.Problem, len(ps))
	for i, p := range ps {
		out[i] = api.Problem{ID: i + 1, Type: p.Type, Instance: p.Instance, Description: p.Description, Resolutions: p.Resolutions}
	}
	return out, nil
}

// Resolve scans again and resolves the problems of choices that the new scan still finds
// (matched by type and instance: the API numbers problems, the scanner names them).
func (c cckScan) Resolve(ctx context.Context, deployment string, choices []api.ProblemChoice) ([]api.Resolution, error) {
	ps, err := c.s.Scan(ctx, deployment)
	if err != nil {
		return nil, err
	}
	byKey := map[string]hm.Problem{}
	for _, p := range ps {
		byKey[p.Type+"\x00"+p.Instance] = p
	}
	out := make([]api.Resolution, len(choices))
	var todo []hm.Problem
	chosen := map[string]string{}
	at := map[string]int{} // scanner problem id → index in out
	for i, ch := range choices {
		out[i] = api.Resolution{Problem: ch.Problem, Resolution: ch.Resolution}
		p, ok := byKey[ch.Problem.Type+"\x00"+ch.Problem.Instance]
		if !ok {
			out[i].Error = "a new scan no longer finds this problem; nothing done"
			continue
		}
		if _, dup := at[p.ID]; dup {
			out[i].Error = "chosen twice; only the first choice applies"
			continue
		}
		at[p.ID] = i
		chosen[p.ID] = ch.Resolution
		todo = append(todo, p)
	}
	if len(todo) == 0 {
		return out, nil
	}
	res, err := c.s.Resolve(ctx, todo, chosen)
	if err != nil {
		return nil, err
	}
	for _, r := range res {
		i, ok := at[r.ProblemID]
		if !ok {
			continue
		}
		out[i].Resolution, out[i].TaskID, out[i].Error = r.Resolution, r.TaskID, r.Error
	}
	return out, nil
}
