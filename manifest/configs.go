package manifest

import (
	"fmt"
	"net/netip"
	"strconv"
)

// CloudConfig is BOSH's cloud-config (bosh-spec §2.1); several named ones merge with
// MergeCloudConfigs.
type CloudConfig struct {
	AZs          []AZ
	Networks     []Network
	VMTypes      []Named
	VMExtensions []Named
	DiskTypes    []DiskType
	Compilation  *Compilation
	Raw          []*Node
}

// AZ is an availability zone.
type AZ struct {
	Name            string
	CPI             string
	CloudProperties map[string]any
	Pos             Pos
	Path            string
}

// Named is a vm_type or vm_extension.
type Named struct {
	Name            string
	CloudProperties map[string]any
	Pos             Pos
	Path            string
}

// DiskType is a disk_types entry.
type DiskType struct {
	Name            string
	DiskSize        int
	CloudProperties map[string]any
	Pos             Pos
	Path            string
}

// Network is a manual, dynamic or vip network.
type Network struct {
	Name            string
	Type            string // manual, dynamic or vip
	Subnets         []Subnet
	DNS             []string
	CloudProperties map[string]any
	Pos             Pos
	Path            string
}

// Subnet is a network's subnet. Range and Gateway are unset on dynamic and vip networks.
type Subnet struct {
	Range           netip.Prefix
	Gateway         netip.Addr
	DNS             []string
	Reserved        []IPRange
	Static          []IPRange
	AZs             []string
	CloudProperties map[string]any
	Pos             Pos
	Path            string
}

// Compilation is the compilation block.
type Compilation struct {
	Workers             int
	Network             string
	AZ                  string
	VMType              string
	VMResources         *VMResources
	VMExtensions        []string
	ReuseCompilationVMs bool
	OrphanWorkers       bool
	Env                 map[string]any
	CloudProperties     map[string]any
	Pos                 Pos
}

// LoadCloudConfig reads one rendered cloud-config.
func LoadCloudConfig(doc *Node) (*CloudConfig, error) {
	d := &dec{}
	cc := &CloudConfig{Raw: []*Node{doc}}
	if !d.fields(doc, "") {
		d.fail(doc, "", "a cloud-config must be a map")
		return nil, d.errs
	}
	for i, it := range d.list(doc, "", "azs", false) {
		p := itemPath("azs", i, it)
		if d.fields(it, p) {
			cc.AZs = append(cc.AZs, AZ{Name: d.str(it, p, "name", true), CPI: d.str(it, p, "cpi", false), CloudProperties: d.hash(it, p, "cloud_properties"), Pos: it.Pos, Path: p})
		}
	}
	for _, key := range []string{"vm_types", "vm_extensions"} {
		for i, it := range d.list(doc, "", key, false) {
			p := itemPath(key, i, it)
			if !d.fields(it, p) {
				continue
			}
			n := Named{Name: d.str(it, p, "name", true), CloudProperties: d.hash(it, p, "cloud_properties"), Pos: it.Pos, Path: p}
			if key == "vm_types" {
				cc.VMTypes = append(cc.VMTypes, n)
			} else {
				cc.VMExtensions = append(cc.VMExtensions, n)
			}
		}
	}
	for i, it := range d.list(doc, "", "disk_types", false) {
		p := itemPath("disk_types", i, it)
		if !d.fields(it, p) {
			continue
		}
		dt := DiskType{Name: d.str(it, p, "name", true), CloudProperties: d.hash(it, p, "cloud_properties"), Pos: it.Pos, Path: p}
		if n, ok := d.integer(it, p, "disk_size", true); ok {
			if n <= 0 {
				d.fail(it.Get("disk_size"), p+"/disk_size", "must be a positive number of MB")
			}
			dt.DiskSize = n
		}
		cc.DiskTypes = append(cc.DiskTypes, dt)
	}
	for i, it := range d.list(doc, "", "networks", false) {
		cc.Networks = append(cc.Networks, d.network(it, itemPath("networks", i, it)))
	}
	if c := doc.Get("compilation"); d.fields(c, "compilation") {
		p := "compilation"
		comp := &Compilation{Network: d.str(c, p, "network", true), AZ: d.str(c, p, "az", false), VMType: d.str(c, p, "vm_type", false),
			VMExtensions: d.strings(c, p, "vm_extensions"), Env: d.hash(c, p, "env"), CloudProperties: d.hash(c, p, "cloud_properties"), Pos: c.Pos}
		if n, ok := d.integer(c, p, "workers", true); ok {
			if n < 1 {
				d.fail(c.Get("workers"), p+"/workers", "must be at least 1")
			}
			comp.Workers = n
		}
		if b := d.boolean(c, p, "reuse_compilation_vms"); b != nil {
			comp.ReuseCompilationVMs = *b
		}
		if b := d.boolean(c, p, "orphan_workers"); b != nil {
			comp.OrphanWorkers = *b
		}
		if r := c.Get("vm_resources"); d.fields(r, p+"/vm_resources") {
			cpu, _ := d.integer(r, p+"/vm_resources", "cpu", true)
			ram, _ := d.integer(r, p+"/vm_resources", "ram", true)
			disk, _ := d.integer(r, p+"/vm_resources", "ephemeral_disk_size", true)
			comp.VMResources = &VMResources{cpu, ram, disk}
		}
		cc.Compilation = comp
	}
	return cc, d.errs.Err()
}

func (d *dec) network(it *Node, p string) Network {
	nw := Network{Pos: it.Pos, Path: p}
	if !d.fields(it, p) {
		return nw
	}
	nw.Name = d.str(it, p, "name", true)
	nw.Type = d.str(it, p, "type", false)
	if nw.Type == "" {
		nw.Type = "manual"
	}
	if nw.Type != "manual" && nw.Type != "dynamic" && nw.Type != "vip" {
		d.fail(it.Get("type"), p+"/type", "must be manual, dynamic or vip, not %q", nw.Type)
		return nw
	}
	nw.DNS = d.strings(it, p, "dns")
	nw.CloudProperties = d.hash(it, p, "cloud_properties")
	subnets := d.list(it, p, "subnets", nw.Type == "manual")
	if nw.Type == "dynamic" && len(subnets) > 0 && (it.Get("dns") != nil || it.Get("cloud_properties") != nil) {
		d.fail(it, p, "a dynamic network has either subnets or top-level dns and cloud_properties, not both")
	}
	for i, s := range subnets {
		sp := p + "/subnets/" + strconv.Itoa(i)
		if !d.fields(s, sp) {
			continue
		}
		sub := Subnet{DNS: d.strings(s, sp, "dns"), CloudProperties: d.hash(s, sp, "cloud_properties"), Pos: s.Pos, Path: sp}
		if s.Get("az") != nil && s.Get("azs") != nil {
			d.fail(s, sp, "use az or azs, not both")
		}
		if az := d.str(s, sp, "az", false); az != "" {
			sub.AZs = []string{az}
		}
		if azs := s.Get("azs"); azs != nil {
			sub.AZs = d.strings(s, sp, "azs")
			if len(sub.AZs) == 0 && azs.Kind == SeqNode {
				d.fail(azs, sp+"/azs", "must not be empty")
			}
		}
		sub.Static = d.ipRanges(s, sp, "static")
		if nw.Type == "manual" {
			rs := d.str(s, sp, "range", true)
			if rs != "" {
				pr, err := netip.ParsePrefix(rs)
				if err != nil || pr.Bits() >= pr.Addr().BitLen() {
					d.fail(s.Get("range"), sp+"/range", "%q is not a CIDR range of at least two addresses", rs)
				} else {
					sub.Range = pr.Masked()
				}
			}
			if gw := d.str(s, sp, "gateway", true); gw != "" {
				a, err := netip.ParseAddr(gw)
				switch {
				case err != nil:
					d.fail(s.Get("gateway"), sp+"/gateway", "%q is not an IP address", gw)
				case sub.Range.IsValid() && !sub.Range.Contains(a):
					d.fail(s.Get("gateway"), sp+"/gateway", "gateway %s is outside range %s", a, sub.Range)
				case sub.Range.IsValid() && (a == sub.Range.Addr() || a == lastAddr(sub.Range)):
					d.fail(s.Get("gateway"), sp+"/gateway", "gateway %s is the network or broadcast address of %s", a, sub.Range)
				default:
					sub.Gateway = a
				}
			}
			sub.Reserved = d.ipRanges(s, sp, "reserved")
			if sub.Range.IsValid() {
				for _, key := range []string{"reserved", "static"} {
					rs := sub.Reserved
					if key == "static" {
						rs = sub.Static
					}
					for k, r := range rs {
						if !sub.Range.Contains(r.First) || !sub.Range.Contains(r.Last) {
							d.fail(s.Get(key), fmt.Sprintf("%s/%s/%d", sp, key, k), "%s-%s is outside range %s", r.First, r.Last, sub.Range)
						}
					}
				}
				for k, r := range sub.Static {
					for _, res := range sub.Reserved {
						if res.Contains(r.First) || res.Contains(r.Last) || r.Contains(res.First) {
							d.fail(s.Get("static"), fmt.Sprintf("%s/static/%d", sp, k), "static %s-%s overlaps reserved %s-%s", r.First, r.Last, res.First, res.Last)
						}
					}
				}
			}
		}
		nw.Subnets = append(nw.Subnets, sub)
	}
	if nw.Type == "manual" {
		for i := range nw.Subnets {
			for j := 0; j < i; j++ {
				a, b := nw.Subnets[i].Range, nw.Subnets[j].Range
				if a.IsValid() && b.IsValid() && a.Overlaps(b) {
					d.fail(subnets[i], nw.Subnets[i].Path+"/range", "range %s overlaps subnet %d (%s) of the same network", a, j, b)
				}
			}
		}
	}
	return nw
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().AsSlice()
	hostBits := p.Addr().BitLen() - p.Bits()
	for i := len(a) - 1; i >= 0 && hostBits > 0; i-- {
		n := min(hostBits, 8)
		a[i] |= byte(1<<n - 1)
		hostBits -= n
	}
	out, _ := netip.AddrFromSlice(a)
	if p.Addr().Is4() {
		return out.Unmap()
	}
	return out
}

// MergeCloudConfigs consolidates several current cloud-configs as BOSH does: arrays are
// concatenated in order and compilation may be set in at most one of them. Duplicate
// names across configs are reported by Validate.
func MergeCloudConfigs(ccs ...*CloudConfig) (*CloudConfig, error) {
	out := &CloudConfig{}
	var errs Errors
	for _, cc := range ccs {
		out.AZs = append(out.AZs, cc.AZs...)
		out.Networks = append(out.Networks, cc.Networks...)
		out.VMTypes = append(out.VMTypes, cc.VMTypes...)
		out.VMExtensions = append(out.VMExtensions, cc.VMExtensions...)
		out.DiskTypes = append(out.DiskTypes, cc.DiskTypes...)
		out.Raw = append(out.Raw, cc.Raw...)
		if cc.Compilation != nil {
			if out.Compilation != nil {
				errs = append(errs, &Error{Pos: cc.Compilation.Pos, Path: "compilation", Msg: "compilation is already set by cloud-config " + out.Compilation.Pos.File + "; only one cloud-config may set it"})
				continue
			}
			out.Compilation = cc.Compilation
		}
	}
	return out, errs.Err()
}

// RuntimeConfig is BOSH's runtime-config (bosh-spec §3).
type RuntimeConfig struct {
	Releases  []Release
	Addons    []Addon
	Variables []Variable
	Tags      map[string]any
	TagsPos   Pos
	Raw       []*Node
}

// LoadRuntimeConfig reads one rendered runtime-config.
func LoadRuntimeConfig(doc *Node) (*RuntimeConfig, error) {
	d := &dec{}
	rc := &RuntimeConfig{Raw: []*Node{doc}}
	if !d.fields(doc, "") {
		d.fail(doc, "", "a runtime-config must be a map")
		return nil, d.errs
	}
	releases := map[string]bool{}
	for i, it := range d.list(doc, "", "releases", false) {
		r := d.release(it, itemPath("releases", i, it))
		if r.Version == "latest" || len(r.Version) > 7 && r.Version[len(r.Version)-7:] == ".latest" {
			d.fail(it.Get("version"), r.Path+"/version", "a runtime-config must pin release versions, not %q", r.Version)
		}
		releases[r.Name] = true
		rc.Releases = append(rc.Releases, r)
	}
	for i, it := range d.list(doc, "", "addons", false) {
		a := d.addon(it, itemPath("addons", i, it))
		for _, j := range a.Jobs {
			if j.Release != "" && !releases[j.Release] {
				d.fail(it, j.Path+"/release", "release %q is not listed in this runtime-config's releases", j.Release)
			}
		}
		rc.Addons = append(rc.Addons, a)
	}
	rc.Variables = d.variables(doc)
	rc.Tags = d.hash(doc, "", "tags")
	if t := doc.Get("tags"); t != nil {
		rc.TagsPos = t.Pos
	}
	return rc, d.errs.Err()
}

// MergeRuntimeConfigs concatenates releases, addons and variables; tags may be set by
// only one runtime-config.
func MergeRuntimeConfigs(rcs ...*RuntimeConfig) (*RuntimeConfig, error) {
	out := &RuntimeConfig{}
	var errs Errors
	for _, rc := range rcs {
		out.Releases = append(out.Releases, rc.Releases...)
		out.Addons = append(out.Addons, rc.Addons...)
		out.Variables = append(out.Variables, rc.Variables...)
		out.Raw = append(out.Raw, rc.Raw...)
		if rc.Tags != nil {
			if out.Tags != nil {
				errs = append(errs, &Error{Pos: rc.TagsPos, Path: "tags", Msg: "tags are already set by runtime-config " + out.TagsPos.File + "; only one runtime-config may set them"})
				continue
			}
			out.Tags, out.TagsPos = rc.Tags, rc.TagsPos
		}
	}
	return out, errs.Err()
}

// CPIConfig is BOSH's cpi-config (bosh-spec §2.3).
type CPIConfig struct {
	CPIs []CPI
}

// CPI is one configured CPI.
type CPI struct {
	Name, Type, ExecPath string
	MigratedFrom         []string
	Properties           map[string]any
	Pos                  Pos
	Path                 string
}

// LoadCPIConfig reads one or more cpi-configs, concatenated, with names unique across them
// (including migrated_from names).
func LoadCPIConfig(docs ...*Node) (*CPIConfig, error) {
	d := &dec{}
	out := &CPIConfig{}
	seen := map[string]string{}
	for _, doc := range docs {
		if !d.fields(doc, "") {
			d.fail(doc, "", "a cpi-config must be a map")
			continue
		}
		for i, it := range d.list(doc, "", "cpis", true) {
			p := itemPath("cpis", i, it)
			if !d.fields(it, p) {
				continue
			}
			c := CPI{Name: d.str(it, p, "name", true), Type: d.str(it, p, "type", true), ExecPath: d.str(it, p, "exec_path", false),
				Properties: d.hash(it, p, "properties"), Pos: it.Pos, Path: p}
			for k, m := range d.list(it, p, "migrated_from", false) {
				if name := d.str(m, fmt.Sprintf("%s/migrated_from/%d", p, k), "name", true); name != "" {
					c.MigratedFrom = append(c.MigratedFrom, name)
				}
			}
			for _, n := range append([]string{c.Name}, c.MigratedFrom...) {
				if prev, dup := seen[n]; dup && n != "" {
					d.fail(it, p, "CPI name %q is already used by %s", n, prev)
				}
				seen[n] = p
			}
			out.CPIs = append(out.CPIs, c)
		}
	}
	return out, d.errs.Err()
}
