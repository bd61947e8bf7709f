package manifest

import (
	"fmt"
	"net/netip"
	"slices"
)

// Validate checks a deployment against the merged cloud-config and runtime-config it will
// be deployed with (rc may be nil), the way BOSH's director does before it plans: every
// name an instance group uses must exist, static IPs must be in their subnet's static pool
// and not reserved, and so on. It reports every problem together, each with its file,
// line, column and key path.
func Validate(dep *Deployment, cc *CloudConfig, rc *RuntimeConfig) error {
	if cc == nil {
		cc = &CloudConfig{}
	}
	v := &validator{dep: dep}
	v.errs = append(v.errs, ValidateCloudConfig(cc, nil)...)
	v.deployment(cc)
	if rc != nil {
		v.runtime(rc)
	}
	return v.errs.Err()
}

type validator struct {
	dep  *Deployment
	errs Errors
}

// at returns the position of the node at a key path of the deployment, or fallback.
func (v *validator) at(path string, fallback Pos) Pos {
	if v.dep.Raw == nil {
		return fallback
	}
	p, err := ParsePointer("/" + path)
	if err != nil {
		return fallback
	}
	if n, err := Find(v.dep.Raw, p); err == nil && n != nil {
		return n.Pos
	}
	return fallback
}

func (v *validator) fail(pos Pos, path, format string, a ...any) {
	v.errs = append(v.errs, &Error{Pos: v.at(path, pos), Path: path, Msg: fmt.Sprintf(format, a...)})
}

func dupes[T any](items []T, name func(T) (string, Pos, string), kind string) Errors {
	var errs Errors
	seen := map[string]Pos{}
	for _, it := range items {
		n, pos, path := name(it)
		if n == "" {
			continue
		}
		if first, dup := seen[n]; dup {
			errs = append(errs, &Error{Pos: pos, Path: path, Msg: fmt.Sprintf("%s %q is defined twice (first at %s)", kind, n, first)})
			continue
		}
		seen[n] = pos
	}
	return errs
}

// ValidateCloudConfig checks a merged cloud-config on its own: unique names, subnets and
// compilation naming AZs, networks and VM types that exist, AZs naming configured CPIs
// when a cpi-config is given.
func ValidateCloudConfig(cc *CloudConfig, cpis *CPIConfig) Errors {
	var errs Errors
	errs = append(errs, dupes(cc.AZs, func(a AZ) (string, Pos, string) { return a.Name, a.Pos, a.Path }, "AZ")...)
	errs = append(errs, dupes(cc.Networks, func(n Network) (string, Pos, string) { return n.Name, n.Pos, n.Path }, "network")...)
	errs = append(errs, dupes(cc.VMTypes, func(n Named) (string, Pos, string) { return n.Name, n.Pos, n.Path }, "vm_type")...)
	errs = append(errs, dupes(cc.VMExtensions, func(n Named) (string, Pos, string) { return n.Name, n.Pos, n.Path }, "vm_extension")...)
	errs = append(errs, dupes(cc.DiskTypes, func(n DiskType) (string, Pos, string) { return n.Name, n.Pos, n.Path }, "disk_type")...)
	azs := map[string]bool{}
	for _, a := range cc.AZs {
		azs[a.Name] = true
		if cpis != nil && len(cpis.CPIs) > 0 {
			if a.CPI == "" {
				errs = append(errs, &Error{Pos: a.Pos, Path: a.Path, Msg: "with a cpi-config every AZ must name its cpi"})
			} else if !slices.ContainsFunc(cpis.CPIs, func(c CPI) bool { return c.Name == a.CPI }) {
				errs = append(errs, &Error{Pos: a.Pos, Path: a.Path + "/cpi", Msg: fmt.Sprintf("CPI %q is not in the cpi-config", a.CPI)})
			}
		}
	}
	for _, n := range cc.Networks {
		for _, s := range n.Subnets {
			for _, az := range s.AZs {
				if !azs[az] {
					errs = append(errs, &Error{Pos: s.Pos, Path: s.Path, Msg: fmt.Sprintf("AZ %q is not defined in the cloud-config", az)})
				}
			}
		}
	}
	if c := cc.Compilation; c != nil {
		if c.Network != "" && !slices.ContainsFunc(cc.Networks, func(n Network) bool { return n.Name == c.Network }) {
			errs = append(errs, &Error{Pos: c.Pos, Path: "compilation/network", Msg: fmt.Sprintf("network %q is not defined in the cloud-config", c.Network)})
		}
		if c.AZ != "" && !azs[c.AZ] {
			errs = append(errs, &Error{Pos: c.Pos, Path: "compilation/az", Msg: fmt.Sprintf("AZ %q is not defined in the cloud-config", c.AZ)})
		}
		if c.VMType != "" && !slices.ContainsFunc(cc.VMTypes, func(n Named) bool { return n.Name == c.VMType }) {
			errs = append(errs, &Error{Pos: c.Pos, Path: "compilation/vm_type", Msg: fmt.Sprintf("vm_type %q is not defined in the cloud-config", c.VMType)})
		}
	}
	return errs
}

func (v *validator) deployment(cc *CloudConfig) {
	d := v.dep
	v.errs = append(v.errs, dupes(d.Releases, func(r Release) (string, Pos, string) { return r.Name, r.Pos, r.Path }, "release")...)
	v.errs = append(v.errs, dupes(d.Stemcells, func(s Stemcell) (string, Pos, string) { return s.Alias, s.Pos, s.Path }, "stemcell alias")...)
	v.errs = append(v.errs, dupes(d.InstanceGroups, func(ig InstanceGroup) (string, Pos, string) { return ig.Name, ig.Pos, ig.Path }, "instance group")...)
	releases := map[string]bool{}
	for _, r := range d.Releases {
		releases[r.Name] = true
	}
	aliases := map[string]bool{}
	for _, s := range d.Stemcells {
		aliases[s.Alias] = true
	}
	azs := map[string]bool{}
	for _, a := range cc.AZs {
		azs[a.Name] = true
	}
	has := func(items []Named, name string) bool {
		return slices.ContainsFunc(items, func(n Named) bool { return n.Name == name })
	}
	networks := map[string]*Network{}
	for i := range cc.Networks {
		networks[cc.Networks[i].Name] = &cc.Networks[i]
	}
	usedIPs := map[netip.Addr]string{}
	for _, ig := range d.InstanceGroups {
		p := ig.Path
		if len(cc.AZs) > 0 && len(ig.AZs) == 0 {
			v.fail(ig.Pos, p, "azs is required when the cloud-config defines AZs")
		}
		for i, az := range ig.AZs {
			if !azs[az] {
				v.fail(ig.Pos, fmt.Sprintf("%s/azs/%d", p, i), "AZ %q is not defined in the cloud-config", az)
			}
		}
		if ig.VMType != "" && !has(cc.VMTypes, ig.VMType) {
			v.fail(ig.Pos, p+"/vm_type", "vm_type %q is not defined in the cloud-config", ig.VMType)
		}
		for i, e := range ig.VMExtensions {
			if !has(cc.VMExtensions, e) {
				v.fail(ig.Pos, fmt.Sprintf("%s/vm_extensions/%d", p, i), "vm_extension %q is not defined in the cloud-config", e)
			}
		}
		if ig.Stemcell != "" && !aliases[ig.Stemcell] {
			v.fail(ig.Pos, p+"/stemcell", "stemcell alias %q is not in stemcells", ig.Stemcell)
		}
		diskType := func(name, path string) {
			if !slices.ContainsFunc(cc.DiskTypes, func(dt DiskType) bool { return dt.Name == name }) {
				v.fail(ig.Pos, path, "disk_type %q is not defined in the cloud-config", name)
			}
		}
		if ig.PersistentDiskType != "" {
			diskType(ig.PersistentDiskType, p+"/persistent_disk_type")
		}
		for _, pd := range ig.PersistentDisks {
			diskType(pd.Type, p+"/persistent_disks/name="+pd.Name+"/type")
		}
		for _, j := range ig.Jobs {
			if j.Release != "" && !releases[j.Release] {
				v.fail(j.Pos, j.Path+"/release", "release %q is not in releases", j.Release)
			}
		}
		for i, m := range ig.MigratedFrom {
			if m.AZ != "" && !slices.Contains(ig.AZs, m.AZ) {
				v.fail(ig.Pos, fmt.Sprintf("%s/migrated_from/%d/az", p, i), "AZ %q is not one of this instance group's azs", m.AZ)
			}
		}
		v.networks(ig, networks, usedIPs)
	}
	for _, a := range d.Addons {
		for _, j := range a.Jobs {
			if j.Release != "" && !releases[j.Release] {
				v.fail(j.Pos, j.Path+"/release", "release %q is not in releases", j.Release)
			}
		}
	}
}

func (v *validator) networks(ig InstanceGroup, networks map[string]*Network, usedIPs map[netip.Addr]string) {
	defaults := map[string]int{}
	for _, n := range ig.Networks {
		for _, d := range n.Default {
			defaults[d]++
		}
		cn := networks[n.Name]
		if cn == nil {
			v.fail(n.Pos, n.Path+"/name", "network %q is not defined in the cloud-config", n.Name)
			continue
		}
		if len(n.StaticIPs) == 0 {
			continue
		}
		if cn.Type == "dynamic" {
			v.fail(n.Pos, n.Path+"/static_ips", "network %q is dynamic: it cannot have static IPs", n.Name)
			continue
		}
		if cn.Type == "vip" && len(cn.Subnets) > 0 {
			v.fail(n.Pos, n.Path+"/static_ips", "vip network %q assigns addresses from its subnets: remove static_ips", n.Name)
			continue
		}
		if len(n.StaticIPs) != ig.Instances {
			v.fail(n.Pos, n.Path+"/static_ips", "%d static IPs for %d instances: there must be one per instance", len(n.StaticIPs), ig.Instances)
		}
		for _, ip := range n.StaticIPs {
			if owner, dup := usedIPs[ip.Addr]; dup {
				v.errs = append(v.errs, &Error{Pos: ip.Pos, Path: ip.Path, Msg: fmt.Sprintf("%s is already assigned to %s", ip.Addr, owner)})
				continue
			}
			usedIPs[ip.Addr] = ip.Path
			if cn.Type != "manual" {
				continue
			}
			if msg := staticIPProblem(ip.Addr, cn, ig.AZs); msg != "" {
				v.errs = append(v.errs, &Error{Pos: ip.Pos, Path: ip.Path, Msg: msg})
			}
		}
	}
	if len(ig.Networks) > 1 {
		for _, d := range []string{"dns", "gateway"} {
			if defaults[d] != 1 {
				v.fail(ig.Pos, ig.Path+"/networks", "with several networks exactly one must list %q in default (found %d)", d, defaults[d])
			}
		}
	}
}

func staticIPProblem(a netip.Addr, n *Network, igAZs []string) string {
	for _, s := range n.Subnets {
		if !s.Range.IsValid() || !s.Range.Contains(a) {
			continue
		}
		for _, r := range s.Reserved {
			if r.Contains(a) {
				return fmt.Sprintf("%s is in a reserved range of network %q", a, n.Name)
			}
		}
		if !slices.ContainsFunc(s.Static, func(r IPRange) bool { return r.Contains(a) }) {
			return fmt.Sprintf("%s is not in the static ranges of network %q's subnet %s", a, n.Name, s.Range)
		}
		if len(igAZs) > 0 && len(s.AZs) > 0 && !slices.ContainsFunc(s.AZs, func(az string) bool { return slices.Contains(igAZs, az) }) {
			return fmt.Sprintf("%s is in subnet %s whose AZs %v are not this instance group's", a, s.Range, s.AZs)
		}
		return ""
	}
	return fmt.Sprintf("%s is outside every subnet of network %q", a, n.Name)
}

func (v *validator) runtime(rc *RuntimeConfig) {
	for _, r := range rc.Releases {
		for _, dr := range v.dep.Releases {
			if dr.Name == r.Name && dr.Version != r.Version {
				v.errs = append(v.errs, &Error{Pos: r.Pos, Path: r.Path + "/version",
					Msg: fmt.Sprintf("runtime-config wants release %s version %s but the deployment uses %s (%s)", r.Name, r.Version, dr.Version, dr.Pos)})
			}
		}
	}
}

// Applies reports whether an addon with these include/exclude filters applies to an
// instance group of deployment (bosh-spec §3).
func (a Addon) Applies(deployment string, ig InstanceGroup, stemcellOS string, teams []string) bool {
	inc := a.Include == nil || a.Include.matches(deployment, ig, stemcellOS, teams, true)
	exc := a.Exclude != nil && a.Exclude.matches(deployment, ig, stemcellOS, teams, false)
	return inc && !exc
}

func (f *Filter) matches(deployment string, ig InstanceGroup, stemcellOS string, teams []string, include bool) bool {
	any := func(list []string, have ...string) bool {
		return slices.ContainsFunc(list, func(s string) bool { return slices.Contains(have, s) })
	}
	nets := make([]string, len(ig.Networks))
	for i, n := range ig.Networks {
		nets[i] = n.Name
	}
	// Keys that narrow by placement: each present key must match.
	if f.Lifecycle != "" && f.Lifecycle != ig.Lifecycle ||
		len(f.AZs) > 0 && !any(f.AZs, ig.AZs...) ||
		len(f.Teams) > 0 && !any(f.Teams, teams...) ||
		len(f.StemcellOS) > 0 && !slices.Contains(f.StemcellOS, stemcellOS) ||
		len(f.Networks) > 0 && !any(f.Networks, nets...) {
		return false
	}
	hasPlacement := f.Lifecycle != "" || len(f.AZs)+len(f.Teams)+len(f.StemcellOS)+len(f.Networks) > 0
	if len(f.Deployments)+len(f.Jobs)+len(f.InstanceGroups) == 0 {
		return include || hasPlacement
	}
	if len(f.Deployments) > 0 && !slices.Contains(f.Deployments, deployment) {
		return false
	}
	if len(f.InstanceGroups) > 0 && !slices.Contains(f.InstanceGroups, ig.Name) {
		return false
	}
	if len(f.Jobs) > 0 && !slices.ContainsFunc(f.Jobs, func(fj FilterJob) bool {
		return slices.ContainsFunc(ig.Jobs, func(j Job) bool { return j.Name == fj.Name && j.Release == fj.Release })
	}) {
		return false
	}
	return true
}
