package reconciler

import (
	"fmt"
	"slices"

	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/release"
)

// linkProvider is one job that provides a link in a deployment.
type linkProvider struct {
	group, job, name, typ string
	props                 map[string]any
}

// providers lists every link a deployment's jobs provide, with the properties they share.
func providers(rv *Rendered, d *Deployment) ([]linkProvider, error) {
	var out []linkProvider
	for _, ig := range d.Manifest.InstanceGroups {
		for _, j := range jobsOf(d.Manifest, ig, rv) {
			_, rj := releaseJob(d, j)
			if rj == nil {
				continue
			}
			for _, def := range rj.Spec.Provides {
				name := def.Name
				// A manifest may rename a provided link: provides: {web: {as: frontend}}.
				if pm, ok := j.Provides[def.Name].(map[string]any); ok {
					if as, ok := pm["as"].(string); ok && as != "" {
						name = as
					}
				}
				if j.Provides[def.Name] == "nil" {
					continue
				}
				props, err := rj.ProvidedLinkProperties(def.Name, jobProperties(d.Manifest, ig, j))
				if err != nil {
					return nil, fmt.Errorf("%s: %w", j.Pos, err)
				}
				out = append(out, linkProvider{group: ig.Name, job: j.Name, name: name, typ: def.Type, props: props})
			}
		}
	}
	return out, nil
}

// resolveLinks resolves the links a job consumes within its deployment, as BOSH's implicit
// linking does: an explicit `consumes: {db: {from: name}}` names the provider, otherwise
// the one provider of the link's type. Optional links with no provider stay unresolved;
// ambiguous or missing required ones are an error.
func resolveLinks(provs []linkProvider, p plan.Plan, d *Deployment, consumes map[string]any, rj *release.Job, ipOf func(plan.InstancePlan) string) (map[string]release.Link, error) {
	out := map[string]release.Link{}
	for _, def := range rj.Spec.Consumes {
		from := ""
		switch c := consumes[def.Name].(type) {
		case string:
			if c == "nil" {
				continue
			}
		case map[string]any:
			if f, ok := c["from"].(string); ok {
				from = f
			}
		}
		var match []linkProvider
		for _, pv := range provs {
			if pv.typ != def.Type {
				continue
			}
			if from != "" && pv.name != from {
				continue
			}
			match = append(match, pv)
		}
		if len(match) == 0 {
			if def.Optional {
				continue
			}
			return nil, fmt.Errorf("job %s consumes link %q (type %s), which no job of deployment %s provides", rj.Spec.Name, def.Name, def.Type, d.Name)
		}
		if len(match) > 1 && from == "" {
			return nil, fmt.Errorf("job %s consumes link %q (type %s), which several jobs provide; name one with consumes: {%s: {from: NAME}}", rj.Spec.Name, def.Name, def.Type, def.Name)
		}
		pv := match[0]
		l := release.Link{Name: pv.name, Type: pv.typ, Deployment: d.Name, InstanceGroup: pv.group, Properties: pv.props}
		for _, g := range p.Groups {
			if g.Name != pv.group {
				continue
			}
			for _, in := range g.Instances {
				if in.Action == plan.Delete {
					continue
				}
				addr := ipOf(in)
				l.Instances = append(l.Instances, release.LinkInstance{Name: in.Group, ID: in.ID, Index: in.Index, AZ: in.AZ, Address: addr, Bootstrap: in.Bootstrap})
			}
		}
		slices.SortFunc(l.Instances, func(a, b release.LinkInstance) int { return a.Index - b.Index })
		if len(l.Instances) > 0 {
			l.Address = l.Instances[0].Address
		}
		out[def.Name] = l
	}
	return out, nil
}
