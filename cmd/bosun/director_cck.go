package main

import (
	"context"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/cpi"
	hm "github.com/bosun-gitops/bosun/health"
)

// wireCloudCheck gives the API its `bosun cck` scan over the director's one CPI (every VM
// row names it, so the lookup ignores the name).
func wireCloudCheck(d *director, c cpi.CPI) {
	if d.api.Checker != nil {
		return
	}
	d.api.Checker = cckScan{d.cloudChecker(func(string) (cpi.CPI, error) { return c, nil })}
}

// cckScan adapts the health monitor's scanner to the API's problem type.
type cckScan struct{ s *hm.Scanner }

func (a cckScan) Scan(ctx context.Context, deployment string) ([]api.Problem, error) {
	ps, err := a.s.Scan(ctx, deployment)
	out := make([]api.Problem, 0, len(ps))
	for _, p := range ps {
		out = append(out, api.Problem{Type: p.Type, Instance: p.Instance, Description: p.Description, Resolutions: p.Resolutions})
	}
	return out, err
}
