package main

import (
	"context"
	"reflect"
	"time"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/cpi"
	hm "github.com/bosun-gitops/bosun/health"
	"github.com/bosun-gitops/bosun/reconciler"
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
	if d.api.Sources == nil {
		d.api.Sources = repoSource{d: d}
	}
	if d.monitor != nil {
		d.addRole(&rulesSync{d: d})
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

// rulesSync hands the health monitor the resurrection rules of the last accepted
// bosun.yml whenever they change (the reconciler knows nothing of the monitor).
type rulesSync struct {
	d    *director
	last any
}

func (*rulesSync) Name() string { return "resurrection-rules" }

func (s *rulesSync) Run(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if err := s.sync(); err != nil {
			s.d.log.Warn("resurrection rules of bosun.yml not applied; the previous rules stay", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *rulesSync) sync() error {
	cfg := s.d.reconciler.RepoConfig()
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
	now := []any{def, by}
	if reflect.DeepEqual(now, s.last) {
		return nil
	}
	if err := s.d.setResurrectionSections(def, by); err != nil {
		return err
	}
	s.last = now
	return nil
}

// cckScan shows the health monitor's cloud check through the API.
type cckScan struct{ s *hm.Scanner }

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
