package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/bosun-gitops/bosun/manifest"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/release"
	"github.com/bosun-gitops/bosun/state"
)

// linkProvider is one job that provides a link in a deployment.
type linkProvider struct {
	group, job, name, typ string
	props                 map[string]any
	// shared is `provides: {NAME: {shared: true}}`: other deployments may consume it.
	shared bool
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
				name, shared := def.Name, false
				// A manifest may rename a provided link: provides: {web: {as: frontend}}.
				if pm, ok := j.Provides[def.Name].(map[string]any); ok {
					if as, ok := pm["as"].(string); ok && as != "" {
						name = as
					}
					shared, _ = pm["shared"].(bool)
				}
				if j.Provides[def.Name] == "nil" {
					continue
				}
				props, err := rj.ProvidedLinkProperties(def.Name, jobProperties(d.Manifest, ig, j))
				if err != nil {
					return nil, fmt.Errorf("%s: %w", j.Pos, err)
				}
				out = append(out, linkProvider{group: ig.Name, job: j.Name, name: name, typ: def.Type, props: props, shared: shared})
			}
		}
	}
	return out, nil
}

// consumer is what a manifest says of one consumed link: `consumes: {NAME: {from,
// deployment, network, ip_addresses}}`. ip_addresses is accepted and changes nothing:
// Bosun's link addresses are always IPs.
type consumer struct {
	from, deployment, network string
	blocked                   bool // consumes: {NAME: nil}
}

func consumerOf(consumes map[string]any, name string) consumer {
	var c consumer
	switch v := consumes[name].(type) {
	case string:
		c.blocked = v == "nil"
	case map[string]any:
		c.from, _ = v["from"].(string)
		c.deployment, _ = v["deployment"].(string)
		c.network, _ = v["network"].(string)
	}
	return c
}

// foreignDeployments lists the other deployments d's jobs consume links from, sorted.
func foreignDeployments(rv *Rendered, d *Deployment) []string {
	seen := map[string]bool{}
	for _, ig := range d.Manifest.InstanceGroups {
		for _, j := range jobsOf(d.Manifest, ig, rv) {
			for name := range j.Consumes {
				if c := consumerOf(j.Consumes, name); c.deployment != "" && c.deployment != d.Name {
					seen[c.deployment] = true
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// foreignLinks loads the shared links of every other deployment d consumes from, by
// deployment: what the consumer's templates render, as those deployments last recorded it.
func foreignLinks(ctx context.Context, st Store, rv *Rendered, d *Deployment) (map[string][]state.SharedLink, error) {
	out := map[string][]state.SharedLink{}
	for _, dep := range foreignDeployments(rv, d) {
		links, err := st.SharedLinks(ctx, dep)
		if err != nil {
			return nil, err
		}
		out[dep] = links
	}
	return out, nil
}

// consumedLinks loads what d's jobs consume from other deployments for a render that is
// not a deploy (a resurrection, a repair): per provider, the copy d's last successful
// deploy recorded, so that the instance renders what its siblings run, and renders at all
// once the provider is deleted, as BOSH keeps a consumer's links with the consumer. A
// provider with no copy falls back to what it shares now: a consumer last deployed before
// Bosun kept copies, one whose render names a provider its last successful deploy did not
// consume from, or one that provider then shared nothing with (copies record no empty set).
func consumedLinks(ctx context.Context, st Store, rv *Rendered, d *Deployment) (map[string][]state.SharedLink, error) {
	kept, err := st.ConsumedLinks(ctx, d.Name)
	if err != nil {
		return nil, err
	}
	out := map[string][]state.SharedLink{}
	for _, dep := range foreignDeployments(rv, d) {
		if links, ok := kept[dep]; ok {
			out[dep] = links
			continue
		}
		links, err := st.SharedLinks(ctx, dep)
		if err != nil {
			return nil, err
		}
		out[dep] = links
	}
	return out, nil
}

// sharedLink is the Data of a state.SharedLink: the link as its provider deployment built
// it, with every instance's address on each network so that a consumer may name one.
type sharedLink struct {
	InstanceGroup  string           `json:"instance_group"`
	DefaultNetwork string           `json:"default_network,omitempty"`
	Properties     map[string]any   `json:"properties"`
	Instances      []sharedInstance `json:"instances"`
}

type sharedInstance struct {
	release.LinkInstance
	Addresses map[string]string `json:"addresses,omitempty"` // network → IP
}

// instanceAddresses are an instance's IPs by network, and its link address: the first
// network's IP (BOSH's default address without DNS), or the named network's.
func instanceAddresses(in plan.InstancePlan, network string) (map[string]string, string, string) {
	ips := map[string]string{}
	addr, addrNet := "", ""
	for _, a := range in.IPs {
		// A dynamic network's address is not known before the VM boots: the network is
		// listed, without one.
		ips[a.Network] = a.IP
		if a.IP == "" {
			continue
		}
		if addr == "" && network == "" || network != "" && a.Network == network {
			addr, addrNet = a.IP, a.Network
		}
	}
	return ips, addr, addrNet
}

// linkOf builds the link provider pv offers in plan p of deployment dep: its instances
// (those the plan keeps), ordered by index, with their addresses on network (the default
// one when empty).
func linkOf(pv linkProvider, p plan.Plan, dep, network string) (sharedLink, error) {
	sl := sharedLink{InstanceGroup: pv.group, Properties: pv.props}
	for _, g := range p.Groups {
		if g.Name != pv.group {
			continue
		}
		for _, in := range g.Instances {
			if in.Action == plan.Delete {
				continue
			}
			ips, addr, addrNet := instanceAddresses(in, network)
			if network != "" && len(in.IPs) > 0 && !slices.ContainsFunc(in.IPs, func(a plan.Address) bool { return a.Network == network }) {
				return sl, fmt.Errorf("instance group %s of deployment %s is not on network %q", pv.group, dep, network)
			}
			if sl.DefaultNetwork == "" {
				sl.DefaultNetwork = addrNet
			}
			sl.Instances = append(sl.Instances, sharedInstance{
				LinkInstance: release.LinkInstance{Name: in.Group, ID: in.ID, Index: in.Index, AZ: in.AZ, Address: addr, Bootstrap: in.Bootstrap},
				Addresses:    ips,
			})
		}
	}
	slices.SortFunc(sl.Instances, func(a, b sharedInstance) int { return a.Index - b.Index })
	return sl, nil
}

// releaseLink is sl as a template sees it, consumed under name from deployment dep, with
// the instances' addresses on network (each one's link address when empty).
func (sl sharedLink) releaseLink(name, typ, dep, network string) (release.Link, error) {
	l := release.Link{Name: name, Type: typ, Deployment: dep, InstanceGroup: sl.InstanceGroup, DefaultNetwork: sl.DefaultNetwork, Properties: sl.Properties}
	if network != "" {
		l.DefaultNetwork = network
	}
	for _, in := range sl.Instances {
		li := in.LinkInstance
		if network != "" {
			ip, ok := in.Addresses[network]
			if !ok && len(in.Addresses) > 0 {
				return l, fmt.Errorf("link %s of deployment %s: instance group %s is not on network %q (networks: %s)",
					name, dep, sl.InstanceGroup, network, strings.Join(slices.Sorted(maps.Keys(in.Addresses)), ", "))
			}
			li.Address = ip
		}
		l.Instances = append(l.Instances, li)
	}
	slices.SortFunc(l.Instances, func(a, b release.LinkInstance) int { return a.Index - b.Index })
	if len(l.Instances) > 0 {
		l.Address = l.Instances[0].Address
	}
	return l, nil
}

// sharedLinks are the links deployment d shares with other deployments once plan p has
// converged, sorted by name. Two shared links of one name would leave consumers guessing,
// so they are an error, found before anything converges.
func sharedLinks(provs []linkProvider, p plan.Plan, d *Deployment) ([]state.SharedLink, error) {
	var out []state.SharedLink
	for _, pv := range provs {
		if !pv.shared {
			continue
		}
		if i := slices.IndexFunc(out, func(l state.SharedLink) bool { return l.Name == pv.name }); i >= 0 {
			return nil, fmt.Errorf("deployment %s shares two links named %q (types %s and %s); give one another name with provides: {LINK: {as: NAME, shared: true}}",
				d.Name, pv.name, out[i].Type, pv.typ)
		}
		sl, err := linkOf(pv, p, d.Name, "")
		if err != nil {
			return nil, err
		}
		data, err := json.Marshal(sl)
		if err != nil {
			return nil, fmt.Errorf("shared link %s of %s: %w", pv.name, d.Name, err)
		}
		out = append(out, state.SharedLink{Deployment: d.Name, Name: pv.name, Type: pv.typ, Data: data})
	}
	slices.SortFunc(out, func(a, b state.SharedLink) int { return compareStr(a.Name, b.Name) })
	return out, nil
}

// noSharedLinkError is a consumer naming another deployment that shares no such link:
// an optional link stays unresolved, a required one is an error.
type noSharedLinkError struct{ msg string }

func (e *noSharedLinkError) Error() string { return e.msg }

// resolveForeign resolves a link consumed from another deployment among the links that
// deployment shares: by `from` (the provider's name or `as` alias) and the consumer's
// type, or without `from` the one shared link of that type.
func resolveForeign(shared []state.SharedLink, def release.LinkDef, c consumer) (release.Link, error) {
	var match []state.SharedLink
	for _, l := range shared {
		if c.from != "" && l.Name != c.from {
			continue
		}
		if l.Type != def.Type {
			if c.from != "" {
				return release.Link{}, fmt.Errorf("consumes link %q from deployment %s: its shared link %q is of type %s, not %s",
					def.Name, c.deployment, c.from, l.Type, def.Type)
			}
			continue
		}
		match = append(match, l)
	}
	switch {
	case len(match) == 0:
		name := c.from
		if name == "" {
			name = def.Name
		}
		what := fmt.Sprintf("shared link %q of type %s", c.from, def.Type)
		if c.from == "" {
			what = "shared link of type " + def.Type
		}
		return release.Link{}, &noSharedLinkError{fmt.Sprintf("consumes link %q: deployment %s provides no %s; deploy it first with provides: {%s: {shared: true}}",
			def.Name, c.deployment, what, name)}
	case len(match) > 1:
		var names []string
		for _, l := range match {
			names = append(names, l.Name)
		}
		return release.Link{}, fmt.Errorf("consumes link %q: deployment %s shares several links of type %s (%s); name one with consumes: {%s: {from: NAME, deployment: %s}}",
			def.Name, c.deployment, def.Type, strings.Join(names, ", "), def.Name, c.deployment)
	}
	var sl sharedLink
	dec := json.NewDecoder(bytes.NewReader(match[0].Data))
	dec.UseNumber()
	if err := dec.Decode(&sl); err != nil {
		return release.Link{}, fmt.Errorf("shared link %s of deployment %s: %w", match[0].Name, c.deployment, err)
	}
	// Properties read back as the manifest gave them: whole numbers as ints.
	sl.Properties, _ = numbers(sl.Properties).(map[string]any)
	return sl.releaseLink(match[0].Name, match[0].Type, c.deployment, c.network)
}

// numbers turns the json.Numbers of v into ints when whole, float64s otherwise.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return int(i)
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	}
	return v
}

// resolveLinks resolves the links a job consumes, as BOSH does. Within its deployment
// (implicit linking): an explicit `consumes: {db: {from: name}}` names the provider,
// otherwise the one provider of the link's type. From another deployment (`consumes: {db:
// {from: alias, deployment: other}}`): among the links other shared at its last successful
// deploy, foreign[other]. Optional links with no provider stay unresolved; ambiguous or
// missing required ones are an error.
func resolveLinks(provs []linkProvider, p plan.Plan, d *Deployment, consumes map[string]any, rj *release.Job, foreign map[string][]state.SharedLink) (map[string]release.Link, error) {
	out := map[string]release.Link{}
	for _, def := range rj.Spec.Consumes {
		c := consumerOf(consumes, def.Name)
		if c.blocked {
			continue
		}
		if c.deployment != "" && c.deployment != d.Name {
			l, err := resolveForeign(foreign[c.deployment], def, c)
			var none *noSharedLinkError
			if errors.As(err, &none) && def.Optional {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("job %s %w", rj.Spec.Name, err)
			}
			out[def.Name] = l
			continue
		}
		var match []linkProvider
		for _, pv := range provs {
			if pv.typ != def.Type {
				continue
			}
			if c.from != "" && pv.name != c.from {
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
		if len(match) > 1 && c.from == "" {
			return nil, fmt.Errorf("job %s consumes link %q (type %s), which several jobs provide; name one with consumes: {%s: {from: NAME}}", rj.Spec.Name, def.Name, def.Type, def.Name)
		}
		pv := match[0]
		sl, err := linkOf(pv, p, d.Name, c.network)
		if err != nil {
			return nil, fmt.Errorf("job %s consumes link %q: %w", rj.Spec.Name, def.Name, err)
		}
		l, err := sl.releaseLink(pv.name, pv.typ, d.Name, "")
		if err != nil {
			return nil, err
		}
		out[def.Name] = l
	}
	return out, nil
}

// groupLinks says what the links ig's jobs consume within d depend on, for the planner:
// the groups providing them (whose instances the planner fingerprints) and a hash of the
// rest (names, types, networks, the properties providers share). Links from other
// deployments are only named here; withForeignLinks adds what they carry.
func groupLinks(provs []linkProvider, d *Deployment, ig manifest.InstanceGroup, rv *Rendered) ([]string, string) {
	var groups []string
	var parts []any
	eachConsumed(d, ig, rv, func(j manifest.Job, def release.LinkDef, c consumer) {
		if c.deployment != "" && c.deployment != d.Name {
			parts = append(parts, []string{j.Name, def.Name, "from deployment", c.deployment, c.from, c.network})
			return
		}
		for _, pv := range provs {
			if pv.typ == def.Type && (c.from == "" || pv.name == c.from) {
				groups = append(groups, pv.group)
				parts = append(parts, []any{j.Name, def.Name, pv.group, pv.name, pv.typ, c.network, pv.props})
				return
			}
		}
	})
	if len(parts) == 0 {
		return nil, ""
	}
	slices.Sort(groups)
	return slices.Compact(groups), hashJSON(parts)
}

// eachConsumed calls f for every link ig's jobs consume that the manifest does not block.
func eachConsumed(d *Deployment, ig manifest.InstanceGroup, rv *Rendered, f func(manifest.Job, release.LinkDef, consumer)) {
	for _, j := range jobsOf(d.Manifest, ig, rv) {
		_, rj := releaseJob(d, j)
		if rj == nil {
			continue
		}
		for _, def := range rj.Spec.Consumes {
			if c := consumerOf(j.Consumes, def.Name); !c.blocked {
				f(j, def, c)
			}
		}
	}
}

// withForeignLinks returns d's desired state with what the links its jobs consume from
// other deployments carry (foreign: as those deployments share them now for a deploy, as
// the last deploy kept them for a resurrection; BuildTask renders the same) folded into
// the consuming groups' LinkHash: a provider elsewhere that moved updates the consumers at
// their next deploy, as BOSH's re-deploy does.
func withForeignLinks(d *Deployment, rv *Rendered, foreign map[string][]state.SharedLink) plan.Desired {
	des := d.Desired
	des.Groups = slices.Clone(des.Groups)
	for i, ig := range d.Manifest.InstanceGroups {
		if i >= len(des.Groups) || des.Groups[i].Name != ig.Name {
			continue
		}
		var parts []any
		eachConsumed(d, ig, rv, func(j manifest.Job, def release.LinkDef, c consumer) {
			if c.deployment == "" || c.deployment == d.Name {
				return
			}
			if l, err := resolveForeign(foreign[c.deployment], def, c); err == nil {
				parts = append(parts, []any{j.Name, def.Name, l})
			}
		})
		if len(parts) > 0 {
			des.Groups[i].LinkHash = hashJSON([]any{des.Groups[i].LinkHash, parts})
		}
	}
	return des
}
