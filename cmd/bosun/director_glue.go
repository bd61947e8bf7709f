package main

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/bosun-gitops/bosun/api"
	hm "github.com/bosun-gitops/bosun/health"
	"github.com/bosun-gitops/bosun/reconciler"
	"gopkg.in/yaml.v3"
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

// rulesSync hands the health monitor each deployment's resurrection rules from the last
// accepted bosun.yml, whenever they change.
type rulesSync struct {
	d    *director
	last map[string]hm.Rules
}

func (*rulesSync) Name() string { return "resurrection-rules" }

func (s *rulesSync) Run(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if err := s.sync(ctx); err != nil {
			s.d.log.Warn("resurrection rules of bosun.yml not applied; the previous rules stay", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *rulesSync) sync(ctx context.Context) error {
	cfg := s.d.reconciler.RepoConfig()
	deps, err := s.d.store.Deployments(ctx)
	if err != nil {
		return err
	}
	rules := make(map[string]hm.Rules, len(deps))
	for _, dep := range deps {
		res := cfg.EffectiveResurrection(dep.Name)
		raw := res.Raw
		if raw == nil {
			raw = map[string]any{}
			if res.Enabled != nil {
				raw["enabled"] = *res.Enabled
			}
		}
		b, err := yaml.Marshal(raw)
		if err != nil {
			return err
		}
		r, err := hm.ParseRules(fmt.Sprintf("bosun.yml deployments/%s/resurrection", dep.Name), b)
		if err != nil {
			return err
		}
		rules[dep.Name] = r
	}
	if reflect.DeepEqual(rules, s.last) {
		return nil
	}
	if err := s.d.setResurrectionRules(rules); err != nil {
		return err
	}
	s.last = rules
	return nil
}
