package converge

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/state"
)

// Act performs an operator's action (state.ActionStop, ActionStart, ActionRestart,
// ActionRecreate; Hard with stop deletes the VM and keeps the disk) on the named
// instances of deployment, one after another in the order given, from what converge
// recorded when it last applied them. Like Run, a failing instance stops the action and
// is reported in Result.Failure with a nil error; an unknown instance id or action is an
// error, before anything is touched. The director's task id, given with WithTask, goes on
// events and write-ahead intents (so Recover knows whether the action still runs).
func (e *Executor) Act(ctx context.Context, deployment string, instanceIDs []string, p state.ActionParams, emit func(state.TaskEvent) error) (Result, error) {
	stage := map[string]string{
		state.ActionStop: "Stopping instance", state.ActionStart: "Starting instance",
		state.ActionRestart: "Restarting instance", state.ActionRecreate: "Recreating instance",
	}[p.Action]
	if stage == "" {
		return Result{}, fmt.Errorf("converge %s: unknown instance action %q (want stop, start, restart or recreate)", deployment, p.Action)
	}
	if err := e.recover(ctx, deployment); err != nil {
		return Result{}, err
	}
	r, err := e.newRun(ctx, Task{ID: TaskFrom(ctx), Deployment: deployment}, emit)
	if err != nil {
		return Result{}, fmt.Errorf("converge %s: %w", deployment, err)
	}
	for _, id := range instanceIDs {
		cur, ok := r.instanceRow(id)
		if !ok {
			return Result{}, fmt.Errorf("converge %s: %s: no such instance", deployment, id)
		}
		if r.records[id] == nil && p.Action != state.ActionStop {
			return Result{}, fmt.Errorf("converge %s: instance %s was never converged; deploy it first", deployment, instanceName(cur))
		}
	}
	for n, id := range instanceIDs {
		cur, _ := r.instanceRow(id)
		ev := state.TaskEvent{Stage: stage, Tags: []string{cur.Group}, Task: fmt.Sprintf("%s/%s (%d)", cur.Group, cur.ID, cur.Index), Index: n + 1, Total: len(instanceIDs), State: "started"}
		if err := r.event(ev); err != nil {
			return r.finish(ctx, err)
		}
		f, err := r.act(ctx, cur, p)
		if err != nil {
			ev.State, ev.Error = "failed", err.Error()
			r.event(ev) //nolint:errcheck // the action ends with err
			return r.finish(ctx, err)
		}
		if f != nil {
			if f.Instance == "" {
				f.Instance = instanceName(cur)
			}
			r.fail(f)
			r.setState(id, "failing")
			ev.State, ev.Error = "failed", f.Error
			return r.finish(ctx, r.event(ev))
		}
		r.count(func(res *Result) {
			if p.Action == state.ActionRecreate {
				res.Recreated++
			} else {
				res.Updated++
			}
		})
		ev.State, ev.Progress = "finished", 100
		if err := r.event(ev); err != nil {
			return r.finish(ctx, err)
		}
	}
	return r.finish(ctx, nil)
}

func (r *run) act(ctx context.Context, cur state.Instance, p state.ActionParams) (*Failure, error) {
	ctx = cpi.WithInstance(ctx, instanceName(cur))
	in := &inst{r: r, cur: cur}
	rec := r.records[cur.ID]
	if rec != nil {
		in.blobHash = rec.BlobstoreHash
	}
	hasVM, f, err := in.vmExists(ctx)
	if f != nil || err != nil {
		return f, err
	}
	switch p.Action {
	case state.ActionStop:
		if hasVM {
			if f, err := in.drainStop(ctx, "shutdown", nil); f != nil || err != nil {
				return f, err
			}
		}
		in.cur.State = state.InstanceStopped
		if p.Hard {
			if f, err := in.detachDisk(ctx, in.cur.DiskCID, false); f != nil || err != nil {
				return f, err
			}
			if f, err := in.deleteVM(ctx); f != nil || err != nil {
				return f, err
			}
			in.cur.State = state.InstanceDetached
		}
		r.setState(cur.ID, in.cur.State)
		return nil, in.save(ctx)
	case state.ActionRestart:
		if hasVM {
			if f, err := in.drainStop(ctx, "shutdown", nil); f != nil || err != nil {
				return f, err
			}
		}
	case state.ActionRecreate:
		if hasVM {
			in.shutdown(ctx, "shutdown", nil)
			if f, err := in.detachDisk(ctx, in.cur.DiskCID, true); f != nil || err != nil {
				return f, err
			}
			if f, err := in.deleteVM(ctx); f != nil || err != nil {
				return f, err
			}
			hasVM = false
		}
	}
	spec := rec.Spec
	if !hasVM {
		nets, f, err := in.createVM(ctx, rec.VM, rec.Stemcell, rec.StemcellAPIVersion)
		if f != nil || err != nil {
			return f, err
		}
		spec.Networks = networksFor(nets)
		if in.cur.DiskCID != "" {
			if f, err := in.attachDisk(ctx, in.cur.DiskCID); f != nil || err != nil {
				return f, err
			}
		}
	}
	start := p.Action != state.ActionRecreate || cur.State != state.InstanceStopped
	if start {
		in.cur.State = state.InstanceStarted
	}
	if f, err := in.applyStart(ctx, spec, rec.Watch, start); f != nil || err != nil {
		return f, err
	}
	rec.Spec, rec.BlobstoreHash = spec, in.blobHash
	b, _ := json.Marshal(rec)
	return nil, r.e.cfg.Store.SetApplied(ctx, state.Applied{InstanceID: cur.ID, Record: b})
}

type taskKey struct{}

// WithTask names the director task an Act runs as.
func WithTask(ctx context.Context, id int64) context.Context {
	return context.WithValue(ctx, taskKey{}, id)
}

// TaskFrom returns the task id given with WithTask, or 0.
func TaskFrom(ctx context.Context) int64 {
	id, _ := ctx.Value(taskKey{}).(int64)
	return id
}
