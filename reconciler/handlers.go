package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/reconciler/status"
	"github.com/bosun-gitops/bosun/state"
)

// Handler runs one task and returns its result line; the same signature as
// state/postgres/worker.Handler, so cmd/bosun registers Handlers() as they are.
type Handler = func(ctx context.Context, task state.Task, emit func(state.TaskEvent) error) (string, error)

// Handlers are the task handlers the reconciler owns, by task type.
func (r *Reconciler) Handlers() map[string]Handler {
	return map[string]Handler{
		state.TaskDeploy:           r.handleDeploy,
		state.TaskDeleteDeployment: r.handleDelete,
		state.TaskResurrect:        r.handleResurrect,
		state.TaskAction:           r.handleAction,
	}
}

// renderedAt renders revision sha (from cache, or the mirror, deepened if need be: a task
// taken over by a director with a new mirror names a revision that mirror may lack).
func (r *Reconciler) renderedAt(ctx context.Context, sha string) (*Rendered, error) {
	rev, err := r.cfg.Source.FetchRevision(ctx, sha)
	if err != nil {
		return nil, fmt.Errorf("revision %s: %w", short(sha), err)
	}
	return r.rendered(ctx, rev)
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

func taskID(t state.Task) string { return strconv.FormatInt(t.ID, 10) }

func outcomeInstances(res converge.Result) []status.Instance {
	out := make([]status.Instance, 0, len(res.Instances))
	for _, in := range res.Instances {
		out = append(out, status.Instance{Name: in.Name, ID: in.ID, AZ: in.AZ, State: in.State, VMCID: in.VMCID, IPs: in.IPs})
	}
	return out
}

func changesOf(res converge.Result) status.Changes {
	return status.Changes{Created: res.Created, Updated: res.Updated, Recreated: res.Recreated, Deleted: res.Deleted}
}

// converge runs a task built from a plan, records what converged instances now run, and
// returns the outcome to commit. foreign are the links from other deployments the plan was
// computed with (its LinkHash): the templates render those same links.
func (r *Reconciler) converge(ctx context.Context, task state.Task, rd *Rendered, d *Deployment, p plan.Plan, ipsInUse map[string][]string, foreign map[string][]state.SharedLink, emit func(state.TaskEvent) error, o status.Outcome) (status.Outcome, error) {
	ct := converge.Task{Deployment: task.Deployment, Plan: p}
	if d != nil {
		var err error
		ct, err = BuildTask(ctx, rd, d, p, r.cfg.Blobs, ipsInUse, foreign)
		if err != nil {
			o.Result, o.FinishedAt = status.Failed, r.cfg.Now()
			o.Error = &status.Failure{Message: err.Error()}
			return o, err
		}
	}
	ct.ID = task.ID
	res, err := r.cfg.Converger.Run(ctx, ct, emit)
	o.FinishedAt = r.cfg.Now()
	o.Instances, o.Changes = outcomeInstances(res), changesOf(res)
	if res.Failure != nil || err != nil {
		// What the failed rollout did finish is recorded all the same: the next plan
		// must not redo it, nor miss an address an instance moved to.
		if rerr := r.recordApplied(context.WithoutCancel(ctx), task.Deployment, p, true); rerr != nil {
			r.log.Warn("recording the instances a failed rollout converged", "deployment", task.Deployment, "err", rerr)
		}
	}
	switch {
	case res.Failure != nil:
		o.Result = status.Failed
		o.Error = &status.Failure{Message: res.Failure.Error, Instance: res.Failure.Instance, Process: res.Failure.Process, LogTail: res.Failure.LogTail}
		if err == nil {
			err = fmt.Errorf("%s failed: %s", res.Failure.Instance, res.Failure.Error)
		}
		return o, err
	case err != nil:
		o.Result = status.Failed
		o.Error = &status.Failure{Message: err.Error()}
		return o, err
	}
	// A resurrection plans every instance but touches only the named ones: the others'
	// planned fingerprints are not what they run, so only what converge did counts.
	return o, r.recordApplied(ctx, task.Deployment, p, task.Type == state.TaskResurrect)
}

// recordApplied remembers what each converged instance of plan p runs and forgets the
// deleted ones. After a failed rollout (partial) only the instances converge recorded
// as converged to p, and the deletions it made, count.
func (r *Reconciler) recordApplied(ctx context.Context, deployment string, p plan.Plan, partial bool) error {
	var done map[string]plan.Fingerprint
	var exists map[string]bool
	if partial {
		applied, err := r.cfg.Store.AppliedByInstance(ctx, deployment)
		if err != nil {
			return err
		}
		done = map[string]plan.Fingerprint{}
		for id, a := range applied {
			var fp plan.Fingerprint
			if json.Unmarshal(a.Fingerprint, &fp) == nil {
				done[id] = fp
			}
		}
		insts, err := r.cfg.Store.Instances(ctx, deployment)
		if err != nil {
			return err
		}
		exists = map[string]bool{}
		for _, in := range insts {
			exists[in.ID] = true
		}
	}
	var put []state.AppliedInstance
	var forget []string
	for _, g := range p.Groups {
		for _, in := range g.Instances {
			if in.Action == plan.Delete {
				if !partial || !exists[in.ID] {
					forget = append(forget, in.ID)
				}
				continue
			}
			if fp, ok := done[in.ID]; partial && (!ok || fp != in.Applied) {
				continue
			}
			ips := map[string]string{}
			for _, a := range in.IPs {
				if a.IP != "" {
					ips[a.Network] = a.IP
				}
			}
			data, _ := json.Marshal(appliedData{Fingerprint: in.Applied, IPs: ips})
			put = append(put, state.AppliedInstance{InstanceID: in.ID, Deployment: deployment, Data: data})
		}
	}
	if len(put) == 0 && len(forget) == 0 {
		return nil
	}
	return r.cfg.Store.PutAppliedInstances(ctx, put, forget)
}

func (r *Reconciler) finish(ctx context.Context, o status.Outcome, err error) (string, error) {
	if o.FinishedAt.IsZero() {
		o.FinishedAt = r.cfg.Now()
	}
	r.writeStatus(ctx, o)
	title, _, _ := strings.Cut(status.Message(o), "\n")
	if err != nil {
		return title, err
	}
	return title, nil
}

func (r *Reconciler) handleDeploy(ctx context.Context, task state.Task, emit func(state.TaskEvent) error) (string, error) {
	var params DeployParams
	if err := json.Unmarshal(task.Params, &params); err != nil || params.Revision == "" {
		return "", fmt.Errorf("deploy task %d: params do not name a revision", task.ID)
	}
	o := status.Outcome{Deployment: task.Deployment, SourceCommit: params.Revision, Task: taskID(task), StartedAt: r.cfg.Now()}
	if len(params.Warnings) > 0 {
		o.Policy = &status.Policy{Warn: params.Warnings}
	}
	// A newer accepted revision already queued its own task for this deployment: converge
	// once, to the newest, rather than roll out every commit of a burst.
	renders, err := r.cfg.Store.DeploymentRenders(ctx)
	if err != nil {
		return "", err
	}
	for _, dr := range renders {
		if dr.Deployment == task.Deployment && dr.Revision != params.Revision && dr.Digest != params.Digest {
			return fmt.Sprintf("%s: %s superseded by %s", task.Deployment, short(params.Revision), short(dr.Revision)), nil
		}
	}
	rd, err := r.renderedAt(ctx, params.Revision)
	if err != nil {
		o.Result, o.FinishedAt, o.Error = status.Failed, r.cfg.Now(), &status.Failure{Message: err.Error()}
		return r.finish(ctx, o, err)
	}
	d := rd.Deployments[task.Deployment]
	if d == nil {
		err := fmt.Errorf("deployment %s is not in revision %s", task.Deployment, short(params.Revision))
		o.Result, o.FinishedAt, o.Error = status.Failed, r.cfg.Now(), &status.Failure{Message: err.Error()}
		return r.finish(ctx, o, err)
	}
	// Links resolve before anything is planned, reserved or recorded: a consumer deployed
	// before its provider shared the link it names fails having changed nothing.
	provs, foreign, err := r.checkLinks(ctx, rd, d)
	if err != nil {
		o.Result, o.FinishedAt, o.Error = status.Failed, r.cfg.Now(), &status.Failure{Message: err.Error()}
		return r.finish(ctx, o, err)
	}
	obs, err := r.observed(ctx, d, d.Name)
	if err != nil {
		return "", err
	}
	p, obs, err := r.planReserved(ctx, d.Name, withForeignLinks(d, rd, foreign), obs, plan.Options{NewID: r.cfg.NewID})
	if err != nil {
		o.Result, o.FinishedAt, o.Error = status.Failed, r.cfg.Now(), &status.Failure{Message: "plan: " + err.Error()}
		return r.finish(ctx, o, err)
	}
	shared, err := sharedLinks(provs, p, d)
	if err != nil {
		o.Result, o.FinishedAt, o.Error = status.Failed, r.cfg.Now(), &status.Failure{Message: err.Error()}
		return r.finish(ctx, o, err)
	}
	if p.Empty() {
		// Rendered inputs moved but nothing an instance runs did (say, an update block):
		// nothing to converge, nothing to commit. The links it shares are recorded all
		// the same: a deployment converged before Bosun kept them gets them recorded.
		if err := r.cfg.Store.PutSharedLinks(ctx, d.Name, shared); err != nil {
			return "", err
		}
		// An empty plan means every instance runs these links already (they are in its
		// fingerprint): a consumer deployed before Bosun kept copies gets its copy here.
		if err := r.cfg.Store.PutConsumedLinks(ctx, d.Name, foreign); err != nil {
			return "", err
		}
		// What the plan adopted without a change (links fingerprints recorded before Bosun
		// kept them) is recorded, so a later change of the links is seen.
		if err := r.recordApplied(ctx, d.Name, p, false); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: nothing to change at %s", d.Name, short(params.Revision)), nil
	}
	if err := r.cfg.Store.PutDeployment(ctx, state.Deployment{Name: d.Name, Revision: params.Revision, Manifest: d.Source}); err != nil {
		return "", err
	}
	o, err = r.converge(ctx, task, rd, d, p, obs.IPsInUse, foreign, emit, o)
	if err == nil {
		// Only a deploy that converged shares its links: as BOSH's director, consumers in
		// other deployments see what the provider last successfully deployed.
		err = r.cfg.Store.PutSharedLinks(ctx, d.Name, shared)
	}
	if err == nil {
		// And keeps what it consumed, whole as loaded: a resurrection resolves the same
		// manifest against the same links, so renders what this deploy rendered.
		err = r.cfg.Store.PutConsumedLinks(ctx, d.Name, foreign)
	}
	if o.Result == "" {
		o.Result = status.Succeeded
	}
	return r.finish(ctx, o, err)
}

// checkLinks resolves every link d's jobs consume, those from other deployments among
// what they last shared, and returns d's own providers.
func (r *Reconciler) checkLinks(ctx context.Context, rd *Rendered, d *Deployment) ([]linkProvider, map[string][]state.SharedLink, error) {
	provs, err := providers(rd, d)
	if err != nil {
		return nil, nil, err
	}
	foreign, err := foreignLinks(ctx, r.cfg.Store, rd, d)
	if err != nil {
		return nil, nil, err
	}
	for _, ig := range d.Manifest.InstanceGroups {
		for _, j := range jobsOf(d.Manifest, ig, rd) {
			_, rj := releaseJob(d, j)
			if rj == nil {
				continue // BuildTask says so, with the job's position
			}
			if _, err := resolveLinks(provs, plan.Plan{}, d, j.Consumes, rj, foreign); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", j.Pos, err)
			}
		}
	}
	return provs, foreign, nil
}

func (r *Reconciler) handleDelete(ctx context.Context, task state.Task, emit func(state.TaskEvent) error) (string, error) {
	var params DeployParams
	_ = json.Unmarshal(task.Params, &params)
	o := status.Outcome{Deployment: task.Deployment, SourceCommit: params.Revision, Task: taskID(task), StartedAt: r.cfg.Now()}
	obs, err := r.observed(ctx, nil, task.Deployment)
	if err != nil {
		return "", err
	}
	p, err := plan.Compute(plan.Desired{Name: task.Deployment, Deleted: true}, obs, plan.Options{NewID: r.cfg.NewID})
	if err != nil {
		o.Result, o.FinishedAt, o.Error = status.Failed, r.cfg.Now(), &status.Failure{Message: "plan: " + err.Error()}
		return r.finish(ctx, o, err)
	}
	if !p.Empty() {
		o, err = r.converge(ctx, task, nil, nil, p, nil, nil, emit, o)
	}
	if err == nil {
		if err = r.cfg.Store.ForgetDeployment(ctx, task.Deployment); err == nil {
			err = r.cfg.Store.DeleteDeployment(ctx, task.Deployment)
		}
	}
	if err != nil {
		o.Result = status.Failed
		if o.Error == nil {
			o.Error = &status.Failure{Message: err.Error()}
		}
	} else {
		o.Result, o.Instances = status.Deleted, []status.Instance{}
	}
	return r.finish(ctx, o, err)
}

// currentRender returns the revision deployment name was last converged to, rendered.
func (r *Reconciler) currentRender(ctx context.Context, name string) (*Rendered, *Deployment, string, error) {
	renders, err := r.cfg.Store.DeploymentRenders(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	for _, dr := range renders {
		if dr.Deployment != name {
			continue
		}
		rd, err := r.renderedAt(ctx, dr.Revision)
		if err != nil {
			return nil, nil, dr.Revision, err
		}
		d := rd.Deployments[name]
		if d == nil {
			return nil, nil, dr.Revision, fmt.Errorf("deployment %s is not in revision %s", name, short(dr.Revision))
		}
		return rd, d, dr.Revision, nil
	}
	return nil, nil, "", fmt.Errorf("deployment %s: %w", name, state.ErrNotFound)
}

// ReasonVMMissing is the ResurrectParams.Reason the drift check gives: the VMs are gone
// from the cloud rather than silent.
const ReasonVMMissing = "vm missing"

func (r *Reconciler) handleResurrect(ctx context.Context, task state.Task, emit func(state.TaskEvent) error) (string, error) {
	var params state.ResurrectParams
	if err := json.Unmarshal(task.Params, &params); err != nil || len(params.Instances) == 0 {
		return "", fmt.Errorf("resurrect task %d: params name no instances", task.ID)
	}
	o := status.Outcome{Deployment: task.Deployment, Task: taskID(task), StartedAt: r.cfg.Now()}
	rd, d, sha, err := r.currentRender(ctx, task.Deployment)
	o.SourceCommit = sha
	if err != nil {
		o.Result, o.FinishedAt, o.Error = status.Failed, r.cfg.Now(), &status.Failure{Message: err.Error()}
		return r.finish(ctx, o, err)
	}
	obs, err := r.observed(ctx, d, d.Name)
	if err != nil {
		return "", err
	}
	var names []string
	oldVM := map[string]string{} // group/index → the VM it had
	for i, in := range obs.Instances {
		if slices.Contains(params.Instances, in.ID) {
			if strings.HasPrefix(params.Reason, ReasonVMMissing) {
				obs.Instances[i].VMMissing = true
			} else {
				obs.Instances[i].Unresponsive = true
			}
			name := fmt.Sprintf("%s/%d", in.Group, in.Index)
			names = append(names, name)
			oldVM[name] = in.VMCID
		}
	}
	if len(names) == 0 {
		return fmt.Sprintf("%s: no instance to resurrect (already gone)", d.Name), nil
	}
	// A resurrection is not a deploy: it renders the links the deployment's last deploy
	// did (the plan's LinkHash from the same ones, so no link change is flagged), not
	// what providers shared since, and it still renders when a provider is gone.
	foreign, err := consumedLinks(ctx, r.cfg.Store, rd, d)
	if err != nil {
		return "", err
	}
	p, obs, err := r.planReserved(ctx, d.Name, withForeignLinks(d, rd, foreign), obs, plan.Options{NewID: r.cfg.NewID, Fix: true})
	if err != nil {
		o.Result, o.FinishedAt, o.Error = status.Failed, r.cfg.Now(), &status.Failure{Message: "plan: " + err.Error()}
		return r.finish(ctx, o, err)
	}
	// Only the named instances are touched: a resurrection is not a deploy.
	p = onlyInstances(p, params.Instances)
	o, err = r.converge(ctx, task, rd, d, p, obs.IPsInUse, foreign, emit, o)
	if err == nil {
		o.Result = status.Resurrected
		o.Summary = fmt.Sprintf("resurrected %s (%s)", strings.Join(names, ", "), firstNonEmpty(params.Reason, "unresponsive"))
		// Auditors match VMs to instances: say which VM each resurrected instance left for which.
		var moves []string
		for _, in := range o.Instances {
			if old, ok := oldVM[in.Name]; ok {
				moves = append(moves, fmt.Sprintf("%s: VM %s → %s", in.Name, firstNonEmpty(old, "none"), firstNonEmpty(in.VMCID, "none")))
			}
		}
		if len(moves) > 0 {
			o.Summary += "; " + strings.Join(moves, ", ")
		}
	}
	return r.finish(ctx, o, err)
}

// onlyInstances keeps the changes of the named instances; every other instance is kept as
// it is.
func onlyInstances(p plan.Plan, ids []string) plan.Plan {
	out := p
	out.Groups = nil
	for _, g := range p.Groups {
		ng := g
		ng.Instances = nil
		for _, in := range g.Instances {
			if !slices.Contains(ids, in.ID) {
				if in.Action == plan.Create || in.Action == plan.Delete {
					continue // neither exists nor goes: not this task's business
				}
				in.Action, in.Disk, in.Reasons = plan.Keep, plan.DiskKeep, nil
			}
			ng.Instances = append(ng.Instances, in)
		}
		ng.Batches = nil
		for _, b := range g.Batches {
			nb := b
			nb.Instances = slices.DeleteFunc(slices.Clone(b.Instances), func(id string) bool { return !slices.Contains(ids, id) })
			if len(nb.Instances) > 0 {
				ng.Batches = append(ng.Batches, nb)
			}
		}
		out.Groups = append(out.Groups, ng)
	}
	return out
}

// ResolveInstances names the instances an action targets: a whole deployment, one group,
// or one instance by index or id.
func ResolveInstances(insts []state.Instance, p state.ActionParams) ([]string, []string, error) {
	var ids, names []string
	for _, in := range insts {
		if p.Group != "" && in.Group != p.Group {
			continue
		}
		if p.Instance != "" && p.Instance != in.ID && p.Instance != strconv.Itoa(in.Index) {
			continue
		}
		ids = append(ids, in.ID)
		names = append(names, fmt.Sprintf("%s/%d", in.Group, in.Index))
	}
	if len(ids) == 0 {
		target := "any instance"
		if p.Group != "" {
			target = p.Group
			if p.Instance != "" {
				target += "/" + p.Instance
			}
		}
		return nil, nil, fmt.Errorf("%s: %w", target, state.ErrNotFound)
	}
	return ids, names, nil
}

func (r *Reconciler) handleAction(ctx context.Context, task state.Task, emit func(state.TaskEvent) error) (string, error) {
	var p state.ActionParams
	if err := json.Unmarshal(task.Params, &p); err != nil {
		return "", fmt.Errorf("action task %d: params: %w", task.ID, err)
	}
	switch p.Action {
	case state.ActionRecreate, state.ActionRestart, state.ActionStop, state.ActionStart:
	default:
		return "", fmt.Errorf("action task %d: unknown action %q", task.ID, p.Action)
	}
	o := status.Outcome{Deployment: task.Deployment, Task: taskID(task), StartedAt: r.cfg.Now()}
	renders, err := r.cfg.Store.DeploymentRenders(ctx)
	if err != nil {
		return "", err
	}
	for _, dr := range renders {
		if dr.Deployment == task.Deployment {
			o.SourceCommit = dr.Revision
		}
	}
	insts, err := r.cfg.Store.Instances(ctx, task.Deployment)
	if err != nil {
		return "", err
	}
	ids, names, err := ResolveInstances(insts, p)
	if err != nil {
		return "", fmt.Errorf("%s of %s: %w", p.Action, task.Deployment, err)
	}
	verb := p.Action
	if p.Hard {
		verb += " --hard"
	}
	res, err := r.cfg.Converger.Act(converge.WithTask(ctx, task.ID), task.Deployment, ids, p, emit)
	o.FinishedAt = r.cfg.Now()
	o.Instances, o.Changes = outcomeInstances(res), changesOf(res)
	why := "requested by " + firstNonEmpty(task.User, "an operator")
	if p.Reason != "" {
		why = p.Reason
	}
	switch {
	case res.Failure != nil:
		o.Result = status.Failed
		o.Error = &status.Failure{Message: res.Failure.Error, Instance: res.Failure.Instance, Process: res.Failure.Process, LogTail: res.Failure.LogTail}
		if err == nil {
			err = errors.New(res.Failure.Error)
		}
		o.Summary = fmt.Sprintf("%s %s failed (%s)", verb, strings.Join(names, ", "), why)
	case err != nil:
		o.Result, o.Error = status.Failed, &status.Failure{Message: err.Error()}
		o.Summary = fmt.Sprintf("%s %s failed (%s)", verb, strings.Join(names, ", "), why)
	default:
		o.Result = status.Succeeded
		o.Summary = fmt.Sprintf("%s %s (%s)", verb, strings.Join(names, ", "), why)
	}
	return r.finish(ctx, o, err)
}
