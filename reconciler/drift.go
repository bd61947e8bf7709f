package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/reconciler/status"
	"github.com/bosun-gitops/bosun/state"
)

func (r *Reconciler) driftLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.DriftInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := r.CheckDrift(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("drift check", "err", err)
		}
	}
}

// Drift is one deployment's instances whose VM the cloud no longer has.
type Drift struct {
	Deployment string
	Mode       string // repair or report
	Instances  []string
	Names      []string
	Task       int64 // the resurrect task enqueued to repair it
}

// CheckDrift compares every converged deployment's VMs with the cloud (has_vm) and, per
// deployment as bosun.yml says, enqueues their recreation (repair) or commits a drifted
// status (report). A drift already acted on is not acted on again until it changes.
func (r *Reconciler) CheckDrift(ctx context.Context) ([]Drift, error) {
	if r.cfg.Cloud == nil {
		return nil, nil
	}
	renders, err := r.cfg.Store.DeploymentRenders(ctx)
	if err != nil {
		return nil, err
	}
	var cfg RepoConfig
	r.mu.Lock()
	if r.prev != nil {
		cfg = r.prev.Config
	}
	r.mu.Unlock()
	var out []Drift
	for _, dr := range renders {
		insts, err := r.cfg.Store.Instances(ctx, dr.Deployment)
		if err != nil {
			return out, err
		}
		d := Drift{Deployment: dr.Deployment, Mode: cfg.DriftMode(dr.Deployment)}
		for _, in := range insts {
			if in.VMCID == "" || in.State == state.InstanceDetached {
				continue
			}
			ok, err := r.cfg.Cloud.HasVM(ctx, cpi.VMCID(in.VMCID))
			if err != nil {
				return out, fmt.Errorf("drift check of %s: has_vm %s: %w", dr.Deployment, in.VMCID, err)
			}
			if !ok {
				d.Instances = append(d.Instances, in.ID)
				d.Names = append(d.Names, fmt.Sprintf("%s/%d", in.Group, in.Index))
			}
		}
		key := strings.Join(d.Instances, ",")
		r.driftMu.Lock()
		seen := r.driftSeen[dr.Deployment] == key
		r.driftSeen[dr.Deployment] = key
		r.driftMu.Unlock()
		if len(d.Instances) == 0 || seen || r.suspended(ctx, cfg, dr.Deployment) {
			continue
		}
		slices.Sort(d.Names)
		if d.Mode == DriftReport {
			now := r.cfg.Now()
			r.writeStatus(ctx, status.Outcome{Deployment: dr.Deployment, SourceCommit: dr.Revision, Result: status.Drifted,
				StartedAt: now, FinishedAt: now,
				Summary: fmt.Sprintf("drift: %d VM(s) missing (%s); reported only, as bosun.yml says", len(d.Names), strings.Join(d.Names, ", ")),
				Error:   &status.Failure{Message: "the cloud no longer has the VMs of " + strings.Join(d.Names, ", ")}})
		} else {
			params, _ := json.Marshal(state.ResurrectParams{Instances: d.Instances, Reason: ReasonVMMissing})
			t, err := r.cfg.Store.Enqueue(ctx, state.Task{Type: state.TaskResurrect, Deployment: dr.Deployment, Params: params, User: "bosun",
				Description: fmt.Sprintf("repair drift of %s: recreate %s", dr.Deployment, strings.Join(d.Names, ", "))})
			if err != nil {
				return out, err
			}
			d.Task = t.ID
		}
		r.log.Warn("drift found", "deployment", dr.Deployment, "mode", d.Mode, "missing", d.Names, "task", d.Task)
		out = append(out, d)
	}
	return out, nil
}
