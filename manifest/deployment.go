package manifest

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Deployment is a BOSH deployment manifest v2 (bosh-spec §1), rendered (ops applied,
// variables interpolated). Raw keeps the document for properties and positions.
type Deployment struct {
	Name           string
	Releases       []Release
	Stemcells      []Stemcell
	Update         Update
	InstanceGroups []InstanceGroup
	Addons         []Addon
	Variables      []Variable
	Features       Features
	Tags           map[string]any
	Properties     map[string]any
	Raw            *Node
}

// Release is an entry of releases: in a deployment or runtime-config.
type Release struct {
	Name, Version, URL, SHA1 string
	Stemcell                 *ReleaseStemcell
	ExportedFrom             []ReleaseStemcell
	Pos                      Pos
	Path                     string
}

// ReleaseStemcell pins a compiled release to a stemcell.
type ReleaseStemcell struct{ OS, Version string }

// Stemcell is an entry of stemcells:.
type Stemcell struct {
	Alias, OS, Name, Version string
	Pos                      Pos
	Path                     string
}

// Amount is canaries or max_in_flight: a count or a percentage of the instances changing.
type Amount struct {
	Value   int
	Percent bool
}

func (a Amount) String() string {
	if a.Percent {
		return strconv.Itoa(a.Value) + "%"
	}
	return strconv.Itoa(a.Value)
}

func (a Amount) of(size int) int {
	if !a.Percent {
		return a.Value
	}
	return min(a.Value*size/100, size)
}

// Canaries is how many of size changing instances go first: floor(N%·size), capped at size.
func (a Amount) Canaries(size int) int { return min(a.of(size), size) }

// MaxInFlight is how many of size changing instances update at once; never below 1.
func (a Amount) MaxInFlight(size int) int { return max(a.of(size), 1) }

// WatchTime is canary_watch_time or update_watch_time in milliseconds.
type WatchTime struct{ Min, Max int }

// Update is an update block; nil fields were not set (IG blocks inherit them).
type Update struct {
	Canaries, MaxInFlight            *Amount
	CanaryWatchTime, UpdateWatchTime *WatchTime
	Serial                           *bool
	VMStrategy                       string
	InitialDeployAZUpdateStrategy    string
}

// Merge returns u with every unset field taken from parent, as IG-level update blocks do.
func (u Update) Merge(parent Update) Update {
	if u.Canaries == nil {
		u.Canaries = parent.Canaries
	}
	if u.MaxInFlight == nil {
		u.MaxInFlight = parent.MaxInFlight
	}
	if u.CanaryWatchTime == nil {
		u.CanaryWatchTime = parent.CanaryWatchTime
	}
	if u.UpdateWatchTime == nil {
		u.UpdateWatchTime = parent.UpdateWatchTime
	}
	if u.Serial == nil {
		u.Serial = parent.Serial
	}
	if u.VMStrategy == "" {
		u.VMStrategy = parent.VMStrategy
	}
	if u.InitialDeployAZUpdateStrategy == "" {
		u.InitialDeployAZUpdateStrategy = parent.InitialDeployAZUpdateStrategy
	}
	return u
}

// IsSerial is the serial flag with BOSH's default (true).
func (u Update) IsSerial() bool { return u.Serial == nil || *u.Serial }

// InstanceGroup is an entry of instance_groups:. Update is already merged with the
// deployment's update block.
type InstanceGroup struct {
	Name               string
	AZs                []string
	Instances          int
	Lifecycle          string // service or errand
	Jobs               []Job
	VMType             string
	VMResources        *VMResources
	VMExtensions       []string
	Stemcell           string
	PersistentDisk     int
	PersistentDiskType string
	PersistentDisks    []NamedDisk
	Networks           []InstanceGroupNetwork
	Update             Update
	MigratedFrom       []MigratedFrom
	Env                map[string]any
	Tags               map[string]any
	Properties         map[string]any
	Pos                Pos
	Path               string
}

// VMResources asks the CPI to pick a VM size.
type VMResources struct{ CPU, RAM, EphemeralDiskSize int }

// NamedDisk is an entry of persistent_disks:.
type NamedDisk struct{ Name, Type string }

// MigratedFrom names an instance group this one replaces.
type MigratedFrom struct{ Name, AZ string }

// Job is a job of an instance group or addon. Properties is nil when the manifest has no
// properties key (then instance group and global properties apply).
type Job struct {
	Name, Release string
	Properties    map[string]any
	Consumes      map[string]any
	Provides      map[string]any
	Pos           Pos
	Path          string
}

// InstanceGroupNetwork is an instance group's use of a cloud-config network.
type InstanceGroupNetwork struct {
	Name      string
	StaticIPs []AddrAt
	Default   []string
	NicGroup  string
	Pos       Pos
	Path      string
}

// AddrAt is an address with where it was written.
type AddrAt struct {
	Addr netip.Addr
	Pos  Pos
	Path string
}

// Features is the features: block; nil means unset.
type Features struct {
	UseDNSAddresses, UseShortDNSAddresses, UseLinkDNSNames  *bool
	RandomizeAZPlacement, ConvergeVariables, UseTmpfsConfig *bool
}

// Variable is an entry of variables:.
type Variable struct {
	Name, Type string
	Options    map[string]any
	UpdateMode string
	Pos        Pos
	Path       string
}

// Addon is an addon of a deployment or runtime-config.
type Addon struct {
	Name             string
	Jobs             []Job
	Include, Exclude *Filter
	Properties       map[string]any
	Pos              Pos
	Path             string
}

// Filter is an addon's include or exclude block.
type Filter struct {
	Deployments, InstanceGroups, Networks, Teams, AZs []string
	Jobs                                              []FilterJob
	StemcellOS                                        []string
	Lifecycle                                         string
	Pos                                               Pos
}

// FilterJob names a job by name and release.
type FilterJob struct{ Name, Release string }

// LoadDeployment reads a rendered deployment manifest, reporting every problem of shape
// (missing keys, wrong types, v1 keys) together. Cross-references are Validate's job.
func LoadDeployment(doc *Node) (*Deployment, error) {
	d := &dec{}
	dep := &Deployment{Raw: doc}
	if !d.fields(doc, "") {
		d.fail(doc, "", "a deployment manifest must be a map")
		return nil, d.errs
	}
	for _, k := range []string{"jobs", "resource_pools", "disk_pools", "networks", "compilation"} {
		if v := doc.Get(k); v != nil {
			d.fail(v, k, "this is a v1 manifest key; Bosun reads manifests v2 (instance_groups, with networks, vm_types and compilation in the cloud-config)")
		}
	}
	if v := doc.Get("release"); v != nil {
		d.fail(v, "release", "v1 key release: use releases:")
	}
	dep.Name = d.str(doc, "", "name", true)
	for i, it := range d.list(doc, "", "releases", true) {
		dep.Releases = append(dep.Releases, d.release(it, itemPath("releases", i, it)))
	}
	for i, it := range d.list(doc, "", "stemcells", true) {
		p := "stemcells/" + strconv.Itoa(i)
		if a, ok := it.Get("alias").scalarString(); ok {
			p = "stemcells/alias=" + a
		}
		if !d.fields(it, p) {
			continue
		}
		s := Stemcell{Alias: d.str(it, p, "alias", true), OS: d.str(it, p, "os", false), Name: d.str(it, p, "name", false),
			Version: d.str(it, p, "version", true), Pos: it.Pos, Path: p}
		if s.OS == "" && s.Name == "" {
			d.fail(it, p, "a stemcell needs os or name")
		}
		dep.Stemcells = append(dep.Stemcells, s)
	}
	if u := doc.Get("update"); u == nil {
		d.fail(doc, "", "update is required")
	} else {
		dep.Update = d.update(u, "update", true)
	}
	for i, it := range d.list(doc, "", "instance_groups", false) {
		dep.InstanceGroups = append(dep.InstanceGroups, d.instanceGroup(it, itemPath("instance_groups", i, it), dep.Update))
	}
	for i, it := range d.list(doc, "", "addons", false) {
		a := d.addon(it, itemPath("addons", i, it))
		if a.Include != nil && len(a.Include.Deployments) > 0 || a.Exclude != nil && len(a.Exclude.Deployments) > 0 {
			d.fail(it, a.Path, "deployment addons cannot filter on deployments")
		}
		dep.Addons = append(dep.Addons, a)
	}
	dep.Variables = d.variables(doc)
	if f := doc.Get("features"); d.fields(f, "features") {
		dep.Features = Features{
			UseDNSAddresses: d.boolean(f, "features", "use_dns_addresses"), UseShortDNSAddresses: d.boolean(f, "features", "use_short_dns_addresses"),
			UseLinkDNSNames: d.boolean(f, "features", "use_link_dns_names"), RandomizeAZPlacement: d.boolean(f, "features", "randomize_az_placement"),
			ConvergeVariables: d.boolean(f, "features", "converge_variables"), UseTmpfsConfig: d.boolean(f, "features", "use_tmpfs_config"),
		}
		if l := dep.Features.UseLinkDNSNames; l != nil && *l {
			for _, k := range []string{"use_dns_addresses", "use_short_dns_addresses"} {
				if b := d.boolean(f, "features", k); b != nil && !*b {
					d.fail(f.Get(k), "features/"+k, "cannot be false when use_link_dns_names is true")
				}
			}
		}
	}
	dep.Tags = d.hash(doc, "", "tags")
	dep.Properties = d.hash(doc, "", "properties")
	return dep, d.errs.Err()
}

func (d *dec) release(it *Node, p string) Release {
	r := Release{Pos: it.Pos, Path: p}
	if !d.fields(it, p) {
		return r
	}
	r.Name, r.Version = d.str(it, p, "name", true), d.str(it, p, "version", true)
	r.URL, r.SHA1 = d.str(it, p, "url", false), d.str(it, p, "sha1", false)
	if s := it.Get("stemcell"); d.fields(s, p+"/stemcell") {
		r.Stemcell = &ReleaseStemcell{OS: d.str(s, p+"/stemcell", "os", true), Version: d.str(s, p+"/stemcell", "version", true)}
	}
	for i, e := range d.list(it, p, "exported_from", false) {
		ep := p + "/exported_from/" + strconv.Itoa(i)
		if d.fields(e, ep) {
			r.ExportedFrom = append(r.ExportedFrom, ReleaseStemcell{OS: d.str(e, ep, "os", true), Version: d.str(e, ep, "version", true)})
		}
	}
	return r
}

func (d *dec) amount(n *Node, path, key string, required bool) *Amount {
	v := n.Get(key)
	if v == nil {
		if required {
			d.fail(n, path, "%s is required", key)
		}
		return nil
	}
	s := fmt.Sprint(v.Value)
	pct := strings.HasSuffix(s, "%")
	num, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
	if v.Kind != ScalarNode || err != nil || num < 0 {
		d.fail(v, join(path, key), "expected a non-negative integer or percentage such as 25%%, found %s", kindName(v))
		return nil
	}
	return &Amount{Value: num, Percent: pct}
}

func (d *dec) watchTime(n *Node, path, key string, required bool) *WatchTime {
	v := n.Get(key)
	if v == nil {
		if required {
			d.fail(n, path, "%s is required", key)
		}
		return nil
	}
	if i, ok := v.Value.(int); ok && i >= 0 {
		return &WatchTime{i, i}
	}
	s, _ := v.scalarString()
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || lo < 0 {
		d.fail(v, join(path, key), "expected milliseconds or a min-max range such as 1000-30000, found %s", kindName(v))
		return nil
	}
	if lo > hi {
		d.fail(v, join(path, key), "minimum %d is greater than maximum %d", lo, hi)
		return nil
	}
	return &WatchTime{lo, hi}
}

func (d *dec) update(u *Node, p string, required bool) Update {
	if !d.fields(u, p) {
		return Update{}
	}
	up := Update{
		Canaries: d.amount(u, p, "canaries", required), MaxInFlight: d.amount(u, p, "max_in_flight", required),
		CanaryWatchTime: d.watchTime(u, p, "canary_watch_time", required), UpdateWatchTime: d.watchTime(u, p, "update_watch_time", required),
		Serial: d.boolean(u, p, "serial"), VMStrategy: d.str(u, p, "vm_strategy", false),
		InitialDeployAZUpdateStrategy: d.str(u, p, "initial_deploy_az_update_strategy", false),
	}
	switch up.VMStrategy {
	case "", "delete-create", "create-swap-delete":
	default:
		d.fail(u.Get("vm_strategy"), p+"/vm_strategy", "must be delete-create or create-swap-delete, not %q", up.VMStrategy)
	}
	switch up.InitialDeployAZUpdateStrategy {
	case "", "serial", "parallel":
	default:
		d.fail(u.Get("initial_deploy_az_update_strategy"), p+"/initial_deploy_az_update_strategy", "must be serial or parallel, not %q", up.InitialDeployAZUpdateStrategy)
	}
	return up
}

func (d *dec) job(it *Node, p string) Job {
	j := Job{Pos: it.Pos, Path: p}
	if !d.fields(it, p) {
		return j
	}
	j.Name, j.Release = d.str(it, p, "name", true), d.str(it, p, "release", true)
	if it.Get("properties") != nil {
		j.Properties = d.hash(it, p, "properties")
		if j.Properties == nil {
			j.Properties = map[string]any{}
		}
	}
	j.Consumes, j.Provides = d.hash(it, p, "consumes"), d.hash(it, p, "provides")
	return j
}

func (d *dec) instanceGroup(it *Node, p string, parent Update) InstanceGroup {
	ig := InstanceGroup{Pos: it.Pos, Path: p}
	if !d.fields(it, p) {
		return ig
	}
	ig.Name = d.str(it, p, "name", true)
	ig.AZs = d.strings(it, p, "azs")
	if n, ok := d.integer(it, p, "instances", true); ok {
		if n < 0 {
			d.fail(it.Get("instances"), p+"/instances", "cannot be negative")
		}
		ig.Instances = n
	}
	ig.Lifecycle = d.str(it, p, "lifecycle", false)
	switch ig.Lifecycle {
	case "":
		ig.Lifecycle = "service"
	case "service", "errand":
	default:
		d.fail(it.Get("lifecycle"), p+"/lifecycle", "must be service or errand, not %q", ig.Lifecycle)
	}
	names := map[string]bool{}
	for i, j := range d.list(it, p, "jobs", true) {
		job := d.job(j, itemPath(p+"/jobs", i, j))
		if names[job.Name] && job.Name != "" {
			d.fail(j, job.Path, "job %q is listed twice in this instance group", job.Name)
		}
		names[job.Name] = true
		ig.Jobs = append(ig.Jobs, job)
	}
	ig.VMType = d.str(it, p, "vm_type", false)
	if r := it.Get("vm_resources"); d.fields(r, p+"/vm_resources") {
		rp := p + "/vm_resources"
		cpu, _ := d.integer(r, rp, "cpu", true)
		ram, _ := d.integer(r, rp, "ram", true)
		disk, _ := d.integer(r, rp, "ephemeral_disk_size", true)
		ig.VMResources = &VMResources{cpu, ram, disk}
	}
	if (ig.VMType == "") == (ig.VMResources == nil) {
		d.fail(it, p, "needs exactly one of vm_type and vm_resources")
	}
	ig.VMExtensions = d.strings(it, p, "vm_extensions")
	ig.Stemcell = d.str(it, p, "stemcell", true)
	disks := 0
	if n, ok := d.integer(it, p, "persistent_disk", false); ok {
		disks++
		if n < 0 {
			d.fail(it.Get("persistent_disk"), p+"/persistent_disk", "cannot be negative")
		}
		ig.PersistentDisk = n
	}
	if ig.PersistentDiskType = d.str(it, p, "persistent_disk_type", false); ig.PersistentDiskType != "" {
		disks++
	}
	if pds := d.list(it, p, "persistent_disks", false); pds != nil {
		disks++
		for i, pd := range pds {
			pp := itemPath(p+"/persistent_disks", i, pd)
			if d.fields(pd, pp) {
				ig.PersistentDisks = append(ig.PersistentDisks, NamedDisk{Name: d.str(pd, pp, "name", true), Type: d.str(pd, pp, "type", true)})
			}
		}
	}
	if disks > 1 {
		d.fail(it, p, "use at most one of persistent_disk, persistent_disk_type and persistent_disks")
	}
	for i, n := range d.list(it, p, "networks", true) {
		np := itemPath(p+"/networks", i, n)
		if !d.fields(n, np) {
			continue
		}
		nw := InstanceGroupNetwork{Name: d.str(n, np, "name", true), Default: d.strings(n, np, "default"), NicGroup: d.str(n, np, "nic_group", false), Pos: n.Pos, Path: np}
		for _, def := range nw.Default {
			if def != "dns" && def != "gateway" && def != "addressable" {
				d.fail(n.Get("default"), np+"/default", "may list dns, gateway and addressable, not %q", def)
			}
		}
		if ips := n.Get("static_ips"); ips != nil {
			items := []*Node{ips}
			if ips.Kind == SeqNode {
				items = ips.Items
			}
			for k, ipn := range items {
				ipp := np + "/static_ips/" + strconv.Itoa(k)
				s, ok := ipn.scalarString()
				r, err := parseIPRange(s)
				if !ok || err != nil {
					d.fail(ipn, ipp, "expected an IP address or range, found %v", ipn.Value)
					continue
				}
				for a := r.First; a.IsValid() && a.Compare(r.Last) <= 0; a = a.Next() {
					nw.StaticIPs = append(nw.StaticIPs, AddrAt{a, ipn.Pos, ipp})
					if len(nw.StaticIPs) > 1<<16 {
						d.fail(ipn, ipp, "range is too large for static IPs")
						break
					}
				}
			}
		}
		ig.Networks = append(ig.Networks, nw)
	}
	ig.Update = parent
	if u := it.Get("update"); u != nil {
		ig.Update = d.update(u, p+"/update", false).Merge(parent)
	}
	for i, m := range d.list(it, p, "migrated_from", false) {
		mp := p + "/migrated_from/" + strconv.Itoa(i)
		if d.fields(m, mp) {
			ig.MigratedFrom = append(ig.MigratedFrom, MigratedFrom{Name: d.str(m, mp, "name", true), AZ: d.str(m, mp, "az", false)})
		}
	}
	ig.Env, ig.Tags, ig.Properties = d.hash(it, p, "env"), d.hash(it, p, "tags"), d.hash(it, p, "properties")
	return ig
}

func (d *dec) addon(it *Node, p string) Addon {
	a := Addon{Pos: it.Pos, Path: p}
	if !d.fields(it, p) {
		return a
	}
	a.Name = d.str(it, p, "name", true)
	for i, j := range d.list(it, p, "jobs", false) {
		a.Jobs = append(a.Jobs, d.job(j, itemPath(p+"/jobs", i, j)))
	}
	a.Include, a.Exclude = d.filter(it.Get("include"), p+"/include"), d.filter(it.Get("exclude"), p+"/exclude")
	a.Properties = d.hash(it, p, "properties")
	return a
}

func (d *dec) filter(n *Node, p string) *Filter {
	if !d.fields(n, p) {
		return nil
	}
	f := &Filter{Deployments: d.strings(n, p, "deployments"), InstanceGroups: d.strings(n, p, "instance_groups"),
		Networks: d.strings(n, p, "networks"), Teams: d.strings(n, p, "teams"), AZs: d.strings(n, p, "azs"),
		Lifecycle: d.str(n, p, "lifecycle", false), Pos: n.Pos}
	for i, j := range d.list(n, p, "jobs", false) {
		jp := p + "/jobs/" + strconv.Itoa(i)
		if d.fields(j, jp) {
			f.Jobs = append(f.Jobs, FilterJob{Name: d.str(j, jp, "name", true), Release: d.str(j, jp, "release", true)})
		}
	}
	for i, s := range d.list(n, p, "stemcell", false) {
		if d.fields(s, p+"/stemcell/"+strconv.Itoa(i)) {
			f.StemcellOS = append(f.StemcellOS, d.str(s, p+"/stemcell/"+strconv.Itoa(i), "os", true))
		}
	}
	if f.Lifecycle != "" && f.Lifecycle != "service" && f.Lifecycle != "errand" {
		d.fail(n.Get("lifecycle"), p+"/lifecycle", "must be service or errand, not %q", f.Lifecycle)
	}
	return f
}

func (d *dec) variables(doc *Node) []Variable {
	var out []Variable
	seen := map[string]bool{}
	for i, it := range d.list(doc, "", "variables", false) {
		p := itemPath("variables", i, it)
		if !d.fields(it, p) {
			continue
		}
		v := Variable{Name: d.str(it, p, "name", true), Type: d.str(it, p, "type", true), Options: d.hash(it, p, "options"),
			UpdateMode: d.str(it, p, "update_mode", false), Pos: it.Pos, Path: p}
		if v.Name != "" && (strings.HasSuffix(v.Name, "/") || strings.Contains(v.Name, "//") || strings.TrimLeft(v.Name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-/") != "") {
			d.fail(it.Get("name"), p+"/name", "variable names use letters, digits, _, - and /, with no trailing / and no //")
		}
		if seen[v.Name] && v.Name != "" {
			d.fail(it, p, "variable %q is declared twice", v.Name)
		}
		seen[v.Name] = true
		switch v.UpdateMode {
		case "", "no-overwrite", "overwrite", "converge":
		default:
			d.fail(it.Get("update_mode"), p+"/update_mode", "must be no-overwrite, overwrite or converge, not %q", v.UpdateMode)
		}
		out = append(out, v)
	}
	return out
}
