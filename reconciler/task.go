package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/manifest"
	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/release"
	"github.com/bosun-gitops/bosun/state"
)

func rawJSON(m map[string]any) json.RawMessage {
	if len(m) == 0 {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	return b
}

func findNetwork(cc *manifest.CloudConfig, name string) *manifest.Network {
	if cc == nil {
		return nil
	}
	for i := range cc.Networks {
		if cc.Networks[i].Name == name {
			return &cc.Networks[i]
		}
	}
	return nil
}

// subnetFor finds the subnet of n holding ip, or, with no ip, the first in az.
func subnetFor(n *manifest.Network, ip, az string) *manifest.Subnet {
	addr, _ := netip.ParseAddr(ip)
	for i := range n.Subnets {
		s := &n.Subnets[i]
		if addr.IsValid() && s.Range.IsValid() && s.Range.Contains(addr) {
			return s
		}
	}
	for i := range n.Subnets {
		s := &n.Subnets[i]
		if az == "" || len(s.AZs) == 0 || slices.Contains(s.AZs, az) {
			return s
		}
	}
	return nil
}

func netmask(p netip.Prefix) string {
	if !p.Addr().Is4() {
		return ""
	}
	m := uint32(0xffffffff) << (32 - p.Bits())
	return fmt.Sprintf("%d.%d.%d.%d", m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
}

// cpiNetwork is one network of a VM as create_vm takes it.
func cpiNetwork(n *manifest.Network, s *manifest.Subnet, ip string, def []string) cpi.Network {
	out := cpi.Network{Type: n.Type, Default: def, CloudProperties: rawJSON(n.CloudProperties)}
	if s != nil {
		if n.Type == "manual" {
			out.IP = ip
		}
		if s.Range.IsValid() {
			out.Netmask = netmask(s.Range)
		}
		if s.Gateway.IsValid() {
			out.Gateway = s.Gateway.String()
		}
		out.DNS = s.DNS
		if len(s.CloudProperties) > 0 {
			out.CloudProperties = rawJSON(s.CloudProperties)
		}
	}
	if out.DNS == nil {
		out.DNS = n.DNS
	}
	if n.Type == "vip" {
		out.IP = ip
	}
	return out
}

func azCloudProperties(cc *manifest.CloudConfig, az string) map[string]any {
	if cc == nil {
		return nil
	}
	for _, a := range cc.AZs {
		if a.Name == az {
			return a.CloudProperties
		}
	}
	return nil
}

// BuildTask turns a plan of rendered deployment d into what converge executes: every
// instance it creates, recreates or updates with its VM, jobs and rendered templates
// (stored in blobs), the packages to compile and the stemcell. It is deterministic for a
// given plan and foreign links, so a task retried after a restart builds the same thing.
// foreign holds, by deployment, the shared links of the other deployments d's jobs
// consume from (foreignLinks loads them as shared now, for a deploy; consumedLinks the
// copy the last deploy kept, for a resurrection).
func BuildTask(ctx context.Context, rv *Rendered, d *Deployment, p plan.Plan, blobs blobstore.Store, ipsInUse map[string][]string, foreign map[string][]state.SharedLink) (converge.Task, error) {
	t := converge.Task{Deployment: d.Name, Plan: p, Instances: map[string]converge.Instance{}}
	cc := rv.CloudConfig
	groups := map[string]manifest.InstanceGroup{}
	for _, ig := range d.Manifest.InstanceGroups {
		groups[ig.Name] = ig
	}
	// Releases' blobs, once per release.
	relBlobs := map[string]*release.Blobs{}
	blobsOf := func(r *Release) (*release.Blobs, error) {
		if b, ok := relBlobs[r.Name]; ok {
			return b, nil
		}
		b, err := r.Release.PutBlobs(ctx, blobs)
		if err != nil {
			return nil, err
		}
		relBlobs[r.Name] = b
		return b, nil
	}
	renderer := release.NewRenderer()
	provs, err := providers(rv, d)
	if err != nil {
		return t, err
	}
	pkgNeeded := map[string][]string{} // release → package names
	var stemcell *Stemcell
	for _, gp := range p.Groups {
		ig, ok := groups[gp.Name]
		if !ok {
			continue // a removed group: only deletions
		}
		jobs := jobsOf(d.Manifest, ig, rv)
		if sc, ok := d.Stemcells[ig.Stemcell]; ok {
			if stemcell != nil && (stemcell.OS != sc.OS || stemcell.Version != sc.Version) {
				return t, fmt.Errorf("instance groups of %s use different stemcells (%s/%s and %s/%s); one deployment uses one stemcell", d.Name, stemcell.OS, stemcell.Version, sc.OS, sc.Version)
			}
			stemcell = &sc
		}
		vmProps := vmCloudProperties(cc, ig)
		for _, in := range gp.Instances {
			if in.Action == plan.Delete || in.Action == plan.Keep && in.Disk == plan.DiskKeep {
				continue
			}
			ci := converge.Instance{ID: in.ID, Group: in.Group, Index: in.Index, AZ: in.AZ, Bootstrap: in.Bootstrap, Fingerprint: in.Applied}
			props := maps.Clone(vmProps)
			if props == nil {
				props = map[string]any{}
			}
			for k, v := range azCloudProperties(cc, in.AZ) {
				if _, set := props[k]; !set {
					props[k] = v
				}
			}
			ci.VM.CloudProperties = rawJSON(props)
			ci.VM.Env = rawJSON(ig.Env)
			ci.VM.Networks = cpi.Networks{}
			specNets := map[string]any{}
			var address string
			for i, gn := range ig.Networks {
				n := findNetwork(cc, gn.Name)
				if n == nil {
					return t, fmt.Errorf("instance %s: network %q is not in the cloud-config", in.Name(), gn.Name)
				}
				ip := ""
				for _, a := range in.IPs {
					if a.Network == gn.Name {
						ip = a.IP
					}
				}
				def := gn.Default
				if len(ig.Networks) == 1 && def == nil {
					def = []string{"dns", "gateway"}
				}
				cn := cpiNetwork(n, subnetFor(n, ip, in.AZ), ip, def)
				ci.VM.Networks[gn.Name] = cn
				specNets[gn.Name] = map[string]any{"ip": cn.IP, "netmask": cn.Netmask, "gateway": cn.Gateway, "default": cn.Default, "dns": cn.DNS, "type": cn.Type}
				if address == "" && (slices.Contains(def, "gateway") || i == len(ig.Networks)-1) {
					address = cn.IP
				}
			}
			disk := diskOf(cc, ig)
			ci.PersistentDisk = converge.Disk{SizeMiB: disk.Size}
			if disk.Type != "" {
				for _, dt := range cc.DiskTypes {
					if dt.Name == disk.Type {
						ci.PersistentDisk.CloudProperties = rawJSON(dt.CloudProperties)
					}
				}
			}
			var inputs []release.JobInput
			for _, j := range jobs {
				r, rj := releaseJob(d, j)
				if rj == nil {
					return t, fmt.Errorf("%s: job %q is not in release %q", j.Pos, j.Name, j.Release)
				}
				b, err := blobsOf(r)
				if err != nil {
					return t, err
				}
				ci.Jobs = append(ci.Jobs, converge.Job{Name: j.Name, Release: r.Name, Version: rj.Fingerprint, Blob: b.Jobs[j.Name], Packages: rj.Spec.Packages})
				pkgNeeded[r.Name] = append(pkgNeeded[r.Name], rj.Spec.Packages...)
				links, err := resolveLinks(provs, p, d, j.Consumes, rj, foreign)
				if err != nil {
					return t, fmt.Errorf("%s: %w", j.Pos, err)
				}
				inputs = append(inputs, release.JobInput{Release: r.Name, ReleaseVersion: r.Version, Job: rj, Properties: jobProperties(d.Manifest, ig, j), Links: links})
			}
			ri, err := renderer.Render(release.InstanceSpec{
				Deployment: d.Name, Name: in.Group, Index: in.Index, ID: in.ID, AZ: in.AZ,
				Address: address, IP: address, Bootstrap: in.Bootstrap, Networks: specNets, PersistentDisk: disk.Size,
			}, inputs)
			if err != nil {
				return t, fmt.Errorf("render templates of %s: %w", in.Name(), err)
			}
			digest, err := blobs.Put(ctx, bytes.NewReader(ri.Archive))
			if err != nil {
				return t, fmt.Errorf("store rendered templates of %s: %w", in.Name(), err)
			}
			ci.RenderedTemplates, ci.ConfigurationHash, ci.TemplateHashes = digest, ri.ConfigurationHash, ri.TemplateHashes
			t.Instances[in.ID] = ci
		}
	}
	// Packages to compile, each after its dependencies.
	for _, name := range slices.Sorted(maps.Keys(pkgNeeded)) {
		r := d.Releases[name]
		b, err := blobsOf(r)
		if err != nil {
			return t, err
		}
		names := slices.Compact(slices.Sorted(slices.Values(pkgNeeded[name])))
		order, err := r.Release.CompileOrder(names...)
		if err != nil {
			return t, fmt.Errorf("release %s: %w", name, err)
		}
		for _, pk := range order {
			t.Packages = append(t.Packages, converge.Package{Name: pk.Name, Release: name, Version: pk.Fingerprint, Source: b.Packages[pk.Name], Dependencies: pk.Dependencies})
		}
	}
	if stemcell == nil {
		for _, sc := range d.Stemcells {
			stemcell = &sc
			break
		}
	}
	if stemcell != nil {
		t.Stemcell = converge.Stemcell{Name: stemcell.Name, OS: stemcell.OS, Version: stemcell.Version, APIVersion: stemcell.APIVersion,
			ImagePath: stemcell.ImagePath, CloudProperties: rawJSON(stemcell.CloudProperties)}
	}
	if len(t.Packages) > 0 && cc != nil && cc.Compilation != nil {
		comp, err := compilation(cc, p, ipsInUse)
		if err != nil {
			return t, err
		}
		t.Compilation = comp
	}
	return t, nil
}

// compilation says where compilation VMs go, choosing their manual-network addresses from
// the top of the subnet, clear of reserved, static and used addresses.
func compilation(cc *manifest.CloudConfig, p plan.Plan, ipsInUse map[string][]string) (converge.Compilation, error) {
	c := cc.Compilation
	out := converge.Compilation{Workers: max(c.Workers, 1), AZ: c.AZ, Env: rawJSON(c.Env), Reuse: c.ReuseCompilationVMs}
	props := map[string]any{}
	if vt := findNamed(cc.VMTypes, c.VMType); vt != nil {
		maps.Copy(props, vt.CloudProperties)
	}
	maps.Copy(props, c.CloudProperties)
	for k, v := range azCloudProperties(cc, c.AZ) {
		if _, set := props[k]; !set {
			props[k] = v
		}
	}
	out.CloudProperties = rawJSON(props)
	n := findNetwork(cc, c.Network)
	if n == nil {
		return out, fmt.Errorf("cloud-config compilation: network %q is not defined", c.Network)
	}
	s := subnetFor(n, "", c.AZ)
	if n.Type != "manual" || s == nil || !s.Range.IsValid() {
		for range out.Workers {
			out.Networks = append(out.Networks, cpi.Networks{n.Name: cpiNetwork(n, s, "", []string{"dns", "gateway"})})
		}
		return out, nil
	}
	used := map[netip.Addr]bool{}
	for _, ip := range ipsInUse[n.Name] {
		if a, err := netip.ParseAddr(ip); err == nil {
			used[a] = true
		}
	}
	for _, g := range p.Groups {
		for _, in := range g.Instances {
			for _, a := range in.IPs {
				if ip, err := netip.ParseAddr(a.IP); err == nil {
					used[ip] = true
				}
			}
		}
	}
	taken := func(a netip.Addr) bool {
		if used[a] || a == s.Gateway {
			return true
		}
		for _, r := range append(slices.Clone(s.Reserved), s.Static...) {
			if r.Contains(a) {
				return true
			}
		}
		return false
	}
	// The broadcast address is not usable; start below it.
	a := lastAddr(s.Range).Prev()
	for len(out.Networks) < out.Workers && a.IsValid() && s.Range.Contains(a) && a != s.Range.Addr() {
		if !taken(a) {
			out.Networks = append(out.Networks, cpi.Networks{n.Name: cpiNetwork(n, s, a.String(), []string{"dns", "gateway"})})
		}
		a = a.Prev()
	}
	if len(out.Networks) < out.Workers {
		return out, fmt.Errorf("cloud-config compilation: subnet %s has no %d free addresses for compilation workers", s.Range, out.Workers)
	}
	return out, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
