package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/bosun-gitops/bosun/manifest"
	"github.com/bosun-gitops/bosun/reconciler/plan"
)

// hashJSON is a short stable hash of v's JSON (map keys are sorted by encoding/json).
func hashJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		b = fmt.Appendf(nil, "%#v", v)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

func hashOrEmpty(m map[string]any) string {
	if len(m) == 0 {
		return ""
	}
	return hashJSON(m)
}

func rangeStrings(rs []manifest.IPRange) []string {
	var out []string
	for _, r := range rs {
		if r.First == r.Last {
			out = append(out, r.First.String())
		} else {
			out = append(out, r.First.String()+"-"+r.Last.String())
		}
	}
	return out
}

// planCloud is the part of the cloud-config the planner reads.
func planCloud(cc *manifest.CloudConfig) plan.Cloud {
	var c plan.Cloud
	if cc == nil {
		return c
	}
	for _, az := range cc.AZs {
		c.AZs = append(c.AZs, plan.AZ{Name: az.Name, CloudPropertiesHash: hashOrEmpty(az.CloudProperties)})
	}
	for _, n := range cc.Networks {
		pn := plan.Network{Name: n.Name, Type: plan.NetworkType(n.Type)}
		for _, s := range n.Subnets {
			ps := plan.Subnet{AZs: s.AZs, Reserved: rangeStrings(s.Reserved), Static: rangeStrings(s.Static), CloudPropertiesHash: hashOrEmpty(s.CloudProperties)}
			if s.Range.IsValid() {
				ps.Range = s.Range.String()
			}
			if s.Gateway.IsValid() {
				ps.Gateway = s.Gateway.String()
			}
			pn.Subnets = append(pn.Subnets, ps)
		}
		c.Networks = append(c.Networks, pn)
	}
	return c
}

func findNamed(ns []manifest.Named, name string) *manifest.Named {
	for i := range ns {
		if ns[i].Name == name {
			return &ns[i]
		}
	}
	return nil
}

// vmCloudProperties merges a group's vm_type and vm_extensions cloud properties (later
// keys win, shallowly, as BOSH merges them).
func vmCloudProperties(cc *manifest.CloudConfig, ig manifest.InstanceGroup) map[string]any {
	out := map[string]any{}
	if cc == nil {
		return out
	}
	if vt := findNamed(cc.VMTypes, ig.VMType); vt != nil {
		maps.Copy(out, vt.CloudProperties)
	}
	if ig.VMResources != nil {
		out["vm_resources"] = map[string]any{"cpu": ig.VMResources.CPU, "ram": ig.VMResources.RAM, "ephemeral_disk_size": ig.VMResources.EphemeralDiskSize}
	}
	for _, e := range ig.VMExtensions {
		if ext := findNamed(cc.VMExtensions, e); ext != nil {
			maps.Copy(out, ext.CloudProperties)
		}
	}
	return out
}

func diskOf(cc *manifest.CloudConfig, ig manifest.InstanceGroup) plan.Disk {
	if ig.PersistentDiskType != "" && cc != nil {
		for _, dt := range cc.DiskTypes {
			if dt.Name == ig.PersistentDiskType {
				return plan.Disk{Size: dt.DiskSize, Type: dt.Name}
			}
		}
	}
	return plan.Disk{Size: ig.PersistentDisk}
}

func updateBlock(u manifest.Update) plan.UpdateBlock {
	b := plan.UpdateBlock{Serial: u.IsSerial(), VMStrategy: u.VMStrategy, InitialDeployAZUpdateStrategy: u.InitialDeployAZUpdateStrategy}
	if u.Canaries != nil {
		b.Canaries = u.Canaries.String()
	}
	if u.MaxInFlight != nil {
		b.MaxInFlight = u.MaxInFlight.String()
	}
	if u.CanaryWatchTime != nil {
		b.CanaryWatchTime = fmt.Sprintf("%d-%d", u.CanaryWatchTime.Min, u.CanaryWatchTime.Max)
	}
	if u.UpdateWatchTime != nil {
		b.UpdateWatchTime = fmt.Sprintf("%d-%d", u.UpdateWatchTime.Min, u.UpdateWatchTime.Max)
	}
	return b
}

// jobHash covers what the agent would run for a job: the release job, every package it
// needs (by fingerprint) and the properties it sees.
func jobHash(d *Deployment, ig manifest.InstanceGroup, j manifest.Job) (string, string) {
	r, rj := releaseJob(d, j)
	if rj == nil {
		return "", hashJSON(jobProperties(d.Manifest, ig, j))
	}
	var pkgs []string
	if order, err := r.Release.CompileOrder(rj.Spec.Packages...); err == nil {
		for _, p := range order {
			pkgs = append(pkgs, p.Name+"/"+p.Fingerprint)
		}
	}
	return r.Version, hashJSON(map[string]any{
		"job": rj.Fingerprint, "packages": pkgs, "properties": jobProperties(d.Manifest, ig, j),
		"consumes": j.Consumes, "provides": j.Provides,
	})
}

// desired fills d.Desired and d.Digest.
func desired(d *Deployment, rv *Rendered) error {
	cc := rv.CloudConfig
	des := plan.Desired{Name: d.Name, Cloud: planCloud(cc)}
	// A provider that cannot say what it shares fails the task's link check with its
	// position; here it only leaves the links out of the fingerprints.
	provs, _ := providers(rv, d)
	for _, ig := range d.Manifest.InstanceGroups {
		g := plan.Group{
			Name: ig.Name, Instances: ig.Instances, AZs: ig.AZs, VMType: ig.VMType,
			CloudPropertiesHash: hashOrEmpty(vmCloudProperties(cc, ig)),
			VMExtensions:        ig.VMExtensions, Disk: diskOf(cc, ig), EnvHash: hashOrEmpty(ig.Env),
			Update: updateBlock(ig.Update), Lifecycle: plan.Lifecycle(ig.Lifecycle),
		}
		if sc, ok := d.Stemcells[ig.Stemcell]; ok {
			g.Stemcell = plan.Stemcell{OS: sc.OS, Version: sc.Version}
		}
		for _, n := range ig.Networks {
			gn := plan.GroupNetwork{Name: n.Name, Default: n.Default}
			for _, ip := range n.StaticIPs {
				gn.StaticIPs = append(gn.StaticIPs, ip.Addr.String())
			}
			g.Networks = append(g.Networks, gn)
		}
		for _, j := range jobsOf(d.Manifest, ig, rv) {
			version, hash := jobHash(d, ig, j)
			g.Jobs = append(g.Jobs, plan.Job{Name: j.Name, Release: j.Release, Version: version, Hash: hash})
		}
		for _, m := range ig.MigratedFrom {
			g.MigratedFrom = append(g.MigratedFrom, plan.Migration{Name: m.Name, AZ: m.AZ})
		}
		g.Links, g.LinkHash = groupLinks(provs, d, ig, rv)
		des.Groups = append(des.Groups, g)
	}
	d.Desired = des
	// The digest: the planner's input plus what converge gets beyond it (compilation,
	// network details, stemcell source, the manifest as rendered).
	rendered, err := manifest.Marshal(d.Interpolated)
	if err != nil {
		return fmt.Errorf("%s: %w", d.File, err)
	}
	var comp any
	var nets any
	if cc != nil {
		comp, nets = cc.Compilation, cc.Networks
	}
	scs := slices.Collect(maps.Values(d.Stemcells))
	slices.SortFunc(scs, func(a, b Stemcell) int { return compareStr(a.OS+a.Version, b.OS+b.Version) })
	d.Digest = hashJSON(map[string]any{"desired": des, "manifest": string(rendered), "compilation": comp, "networks": nets, "stemcells": scs})
	return nil
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
