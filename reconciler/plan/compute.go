package plan

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// Compute diffs a desired deployment against what exists and returns the changes that
// converge it. It is deterministic: the same inputs (and the same NewID sequence) give the
// same plan. Invalid input gives an error naming the instance group and key; nothing is
// half-planned.
func Compute(d Desired, o Observed, opts Options) (Plan, error) {
	p, err := compute(d, o, opts)
	if err != nil {
		return Plan{}, fmt.Errorf("plan deployment %q: %w", d.Name, err)
	}
	return p, nil
}

func compute(d Desired, o Observed, opts Options) (Plan, error) {
	if d.Name == "" {
		return Plan{}, errors.New("name: a deployment needs a name")
	}
	byGroup, ids, err := indexObserved(o)
	if err != nil {
		return Plan{}, err
	}
	if d.Deleted {
		return deleteAll(d.Name, byGroup, nil, ReasonDeploymentDeleted), nil
	}
	nets, err := parseNetworks(d.Cloud, o.IPsInUse)
	if err != nil {
		return Plan{}, err
	}
	pl := &planner{
		opts:        opts,
		nets:        nets,
		azs:         map[string]AZ{},
		foreign:     map[string]map[netip.Addr]bool{},
		static:      map[string]map[netip.Addr]string{},
		ids:         ids,
		firstDeploy: len(o.Instances) == 0,
		strategies:  map[string]strategy{},
		oldLinks:    make(map[string]string, len(o.Instances)),
	}
	for _, in := range o.Instances {
		pl.oldLinks[in.ID] = in.Applied.Links
	}
	for _, az := range d.Cloud.AZs {
		pl.azs[az.Name] = az
	}
	for name, ips := range o.IPsInUse {
		pl.foreign[name] = map[netip.Addr]bool{}
		for _, ip := range ips {
			a, _ := netip.ParseAddr(ip) // parseNetworks validated it
			pl.foreign[name][a] = true
		}
	}
	for _, in := range o.Instances {
		for net, ip := range in.IPs {
			if n := nets[net]; n != nil && ip != "" {
				n.take(netip.MustParseAddr(ip)) // indexObserved validated it
			}
		}
	}
	if err := pl.claimStatic(d.Groups); err != nil {
		return Plan{}, err
	}

	plan := Plan{Deployment: d.Name}
	names := map[string]bool{}
	consumed := map[string]string{} // observed group → desired group taking its instances
	for _, g := range d.Groups {
		if g.Name == "" {
			return Plan{}, errors.New("instance_groups: an instance group has no name")
		}
		if names[g.Name] {
			return Plan{}, fmt.Errorf("instance_groups[%s]: name is used twice", g.Name)
		}
		names[g.Name] = true
	}
	for _, g := range d.Groups {
		existing := asExisting(byGroup[g.Name], "", "")
		consumed[g.Name] = g.Name
		for _, m := range g.MigratedFrom {
			if m.Name == g.Name || names[m.Name] {
				return Plan{}, fmt.Errorf("instance_groups[%s].migrated_from: %q is still an instance group of the deployment", g.Name, m.Name)
			}
			if by, ok := consumed[m.Name]; ok {
				return Plan{}, fmt.Errorf("instance_groups[%s].migrated_from: %q is already migrated into %q", g.Name, m.Name, by)
			}
			if m.AZ != "" && !slices.Contains(g.AZs, m.AZ) {
				return Plan{}, fmt.Errorf("instance_groups[%s].migrated_from[%s].az: %q is not one of the instance group's azs", g.Name, m.Name, m.AZ)
			}
			consumed[m.Name] = g.Name
			existing = append(existing, asExisting(byGroup[m.Name], m.Name, m.AZ)...)
		}
		gp, err := pl.group(g, existing)
		if err != nil {
			return Plan{}, fmt.Errorf("instance_groups[%s]: %w", g.Name, err)
		}
		plan.Groups = append(plan.Groups, gp)
	}
	pl.links(&plan, d.Groups)
	removed := deleteAll(d.Name, byGroup, consumed, ReasonGroupRemoved)
	plan.Groups = append(plan.Groups, removed.Groups...)
	plan.Stages = stages(plan.Groups)
	return plan, nil
}

// indexObserved checks the observed instances and groups them by instance group, by index,
// pointing into o rather than copying. It also returns the set of ids in use.
func indexObserved(o Observed) (map[string][]*Instance, map[string]bool, error) {
	type ipKey struct {
		net string
		a   netip.Addr
	}
	ids := make(map[string]bool, len(o.Instances))
	ips := make(map[ipKey]string, len(o.Instances))
	counts := map[string]int{}
	for i := range o.Instances {
		in := &o.Instances[i]
		name := func() string { return in.Group + "/" + strconv.Itoa(in.Index) }
		switch {
		case in.ID == "":
			return nil, nil, fmt.Errorf("observed instance %s has no id", name())
		case in.Group == "":
			return nil, nil, fmt.Errorf("observed instance %s has no instance group", in.ID)
		case in.Index < 0:
			return nil, nil, fmt.Errorf("observed instance %s (%s) has a negative index", name(), in.ID)
		case ids[in.ID]:
			return nil, nil, fmt.Errorf("observed instance id %s is used twice", in.ID)
		}
		ids[in.ID] = true
		for net, ip := range in.IPs {
			if ip == "" {
				continue
			}
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return nil, nil, fmt.Errorf("observed instance %s (%s): network %s: %q is not an IP address", name(), in.ID, net, ip)
			}
			if other := ips[ipKey{net, a}]; other != "" {
				return nil, nil, fmt.Errorf("observed instances %s and %s both hold %s on network %s", other, in.ID, a, net)
			}
			ips[ipKey{net, a}] = in.ID
		}
		counts[in.Group]++
	}
	byGroup := make(map[string][]*Instance, len(counts))
	for i := range o.Instances {
		in := &o.Instances[i]
		if byGroup[in.Group] == nil {
			byGroup[in.Group] = make([]*Instance, 0, counts[in.Group])
		}
		byGroup[in.Group] = append(byGroup[in.Group], in)
	}
	for _, ins := range byGroup {
		slices.SortFunc(ins, func(a, b *Instance) int { return cmp.Compare(a.Index, b.Index) })
		for i := 1; i < len(ins); i++ {
			if a, b := ins[i-1], ins[i]; a.Index == b.Index {
				return nil, nil, fmt.Errorf("observed instances %s and %s are both %s/%d", a.ID, b.ID, a.Group, a.Index)
			}
		}
	}
	return byGroup, ids, nil
}

// deleteAll plans the deletion of every observed group not in keep.
func deleteAll(deployment string, byGroup map[string][]*Instance, keep map[string]string, why ReasonKind) Plan {
	p := Plan{Deployment: deployment}
	var names []string
	for name := range byGroup {
		if _, ok := keep[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		g := GroupPlan{Name: name, Removed: true}
		var ids []string
		for _, in := range byGroup[name] {
			g.Instances = append(g.Instances, obsolete(existing{Instance: in}, Reason{Kind: why}))
			ids = append(ids, in.ID)
		}
		g.Batches = []Batch{{Kind: BatchDelete, Instances: ids}}
		p.Groups = append(p.Groups, g)
	}
	p.Stages = stages(p.Groups)
	return p
}

func obsolete(e existing, why Reason) InstancePlan {
	in := e.Instance
	ip := InstancePlan{ID: in.ID, Group: in.Group, Index: in.Index, AZ: in.AZ, Bootstrap: in.Bootstrap,
		Action: Delete, Reasons: []Reason{why}, VMCID: in.VMCID}
	if in.Applied.Disk.Size > 0 {
		ip.Disk = DiskDelete
	}
	nets := make([]string, 0, len(in.IPs))
	for n := range in.IPs {
		nets = append(nets, n)
	}
	slices.Sort(nets)
	for _, n := range nets {
		ip.IPs = append(ip.IPs, Address{Network: n, IP: in.IPs[n]})
	}
	return ip
}

// existing is an observed instance offered to a desired group. It points into the
// caller's Observed, which the planner never modifies.
type existing struct {
	*Instance
	from string // the migrated_from group it comes from, if any
}

func asExisting(ins []*Instance, from, az string) []existing {
	out := make([]existing, len(ins))
	for i, in := range ins {
		if in.AZ == "" && az != "" {
			c := *in
			c.AZ = az
			in = &c
		}
		out[i] = existing{Instance: in, from: from}
	}
	return out
}

type planner struct {
	opts    Options
	nets    map[string]*network
	azs     map[string]AZ
	foreign map[string]map[netip.Addr]bool   // network → addresses other deployments hold
	static  map[string]map[netip.Addr]string // network → static IP → group claiming it
	ids     map[string]bool
	h       hasher // reused for per-instance fingerprints
	// firstDeploy is set when nothing of the deployment exists yet, which is when BOSH
	// honours initial_deploy_az_update_strategy.
	firstDeploy bool
	strategies  map[string]strategy // by group, for batching again after links
	oldLinks    map[string]string   // observed instances' Applied.Links, by id
}

// claimStatic checks every group's static IPs before any placement, so that a static IP
// claimed by a later group is never handed out dynamically to an earlier one.
func (pl *planner) claimStatic(groups []Group) error {
	for _, g := range groups {
		for _, gn := range g.Networks {
			ips, err := expandStatic(gn.StaticIPs, g.Instances)
			if err != nil {
				return fmt.Errorf("instance_groups[%s].networks[%s].static_ips: %w", g.Name, gn.Name, err)
			}
			if pl.static[gn.Name] == nil {
				pl.static[gn.Name] = map[netip.Addr]string{}
			}
			for _, a := range ips {
				if other, ok := pl.static[gn.Name][a]; ok {
					return fmt.Errorf("instance_groups[%s].networks[%s].static_ips: %s is also a static IP of instance group %s", g.Name, gn.Name, a, other)
				}
				if pl.foreign[gn.Name][a] {
					return fmt.Errorf("instance_groups[%s].networks[%s].static_ips: %s is in use by another deployment", g.Name, gn.Name, a)
				}
				pl.static[gn.Name][a] = g.Name
			}
		}
	}
	return nil
}

// expandStatic expands IPs and ranges, refusing more addresses than instances early so a
// huge range costs nothing.
func expandStatic(list []string, instances int) ([]netip.Addr, error) {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, s := range list {
		r, err := parseRange(s)
		if err != nil {
			return nil, err
		}
		for a := r.lo; a.IsValid() && !r.hi.Less(a); a = a.Next() {
			if seen[a] {
				return nil, fmt.Errorf("%s is listed twice", a)
			}
			seen[a] = true
			out = append(out, a)
			if len(out) > instances {
				return nil, fmt.Errorf("more static IPs than the %d instances", instances)
			}
		}
	}
	return out, nil
}

func (pl *planner) group(g Group, ex []existing) (GroupPlan, error) {
	if pl.opts.Canaries != "" {
		g.Update.Canaries = pl.opts.Canaries
	}
	if pl.opts.MaxInFlight != "" {
		g.Update.MaxInFlight = pl.opts.MaxInFlight
	}
	st, err := pl.validate(g)
	if err != nil {
		return GroupPlan{}, err
	}
	st.AZsInParallel = g.Update.InitialDeployAZUpdateStrategy == "parallel" && pl.firstDeploy
	azs := g.AZs
	if len(azs) == 0 {
		azs = []string{""}
	}
	var slots []*slot
	var unclaimed []*existing
	driver := -1
	for i, gn := range g.Networks {
		if len(gn.StaticIPs) > 0 {
			driver = i
			break
		}
	}
	staticNet := ""
	staticKept := map[string]bool{} // the static IPs of the placing network
	if driver >= 0 {
		staticNet = g.Networks[driver].Name
		slots, unclaimed, err = pl.placeStatic(g, azs, staticNet, ex)
		for _, s := range slots {
			staticKept[s.ips[0].String()] = true
		}
	} else {
		slots, unclaimed = placeBalanced(g.Instances, g.Disk.Size > 0, azs, ex)
	}
	if err != nil {
		return GroupPlan{}, err
	}
	if err := pl.assignIndexesAndIDs(g.Name, slots, unclaimed); err != nil {
		return GroupPlan{}, err
	}
	// One backing array for every slot's addresses; placeStatic left the placing
	// network's address first.
	backing := make([]netip.Addr, len(slots)*len(g.Networks))
	for i, s := range slots {
		ips := backing[i*len(g.Networks) : (i+1)*len(g.Networks)]
		if len(s.ips) > 0 {
			ips[driver] = s.ips[0]
		}
		s.ips = ips
	}
	slices.SortFunc(slots, func(a, b *slot) int { return cmp.Compare(a.index, b.index) })
	for i, gn := range g.Networks {
		if i == driver {
			continue
		}
		if err := pl.assignIPs(g, i, slots); err != nil {
			return GroupPlan{}, fmt.Errorf("networks[%s]: %w", gn.Name, err)
		}
	}
	bootstrap := electBootstrap(azs, slots)

	gp := GroupPlan{Name: g.Name, Lifecycle: g.Lifecycle, Strategy: st.Strategy,
		Instances: make([]InstancePlan, 0, len(slots)+len(unclaimed))}
	if gp.Lifecycle == "" {
		gp.Lifecycle = Service
	}
	fp := pl.groupFingerprints(g)
	for _, s := range slots {
		in, err := pl.diff(g, fp, s, s == bootstrap)
		if err != nil {
			return GroupPlan{}, err
		}
		gp.Instances = append(gp.Instances, in)
	}
	slices.SortFunc(unclaimed, func(a, b *existing) int { return cmp.Compare(a.Index, b.Index) })
	for _, e := range unclaimed {
		why := Reason{Kind: ReasonScaledDown, Detail: fmt.Sprintf("to %d instances", g.Instances)}
		if !slices.Contains(azs, e.AZ) {
			why = Reason{Kind: ReasonAZRemoved, Detail: cmp.Or(e.AZ, "(none)")}
		} else if ip := e.IPs[staticNet]; staticNet != "" && ip != "" && !staticKept[ip] {
			why = Reason{Kind: ReasonStaticIPRemoved, Detail: ip}
		}
		in := obsolete(*e, why)
		in.Group = g.Name
		gp.Instances = append(gp.Instances, in)
	}
	if gp.Lifecycle == Errand {
		// An errand's VMs exist only while it runs; converging the group only records its
		// instances and deletes the ones no longer wanted.
		st.canaries, st.maxInFlight = amount{}, amount{n: 100, percent: true}
	}
	pl.strategies[g.Name] = st
	gp.Batches = batchesOf(st, gp)
	return gp, nil
}

func batchesOf(st strategy, gp GroupPlan) []Batch {
	if gp.Lifecycle == Errand {
		return st.batches(slices.DeleteFunc(slices.Clone(gp.Instances), func(in InstancePlan) bool { return in.Action != Delete }))
	}
	return st.batches(gp.Instances)
}

// links fingerprints what each group's consumed links carry once every group is placed:
// the providing groups' instances (ids, indexes, AZs, bootstrap, the addresses the
// planner gives them) and the group's LinkHash. An instance whose fingerprint moved
// updates: its templates render the links (a provider scaled, a new address).
func (pl *planner) links(p *Plan, groups []Group) {
	byName := make(map[string]int, len(p.Groups))
	for i, g := range p.Groups {
		if !g.Removed {
			byName[g.Name] = i
		}
	}
	for _, g := range groups {
		if len(g.Links) == 0 && g.LinkHash == "" {
			continue
		}
		h := newHasher()
		h.add(g.LinkHash)
		for _, name := range slices.Compact(slices.Sorted(slices.Values(g.Links))) {
			i, ok := byName[name]
			if !ok {
				continue
			}
			for _, in := range p.Groups[i].Instances {
				if in.Action == Delete {
					continue
				}
				h.add(name, in.ID, itoa(in.Index), in.AZ, strconv.FormatBool(in.Bootstrap))
				for _, a := range in.IPs {
					if n := pl.nets[a.Network]; n != nil && n.typ != Dynamic {
						h.add(a.Network, a.IP) // a dynamic address is the cloud's, known after boot
					}
				}
			}
		}
		fp := h.sum()
		gp := &p.Groups[byName[g.Name]]
		changed := false
		for j := range gp.Instances {
			in := &gp.Instances[j]
			if in.Action == Delete {
				continue
			}
			in.Applied.Links = fp
			// An instance recorded before links were fingerprinted (no Links) adopts the
			// fingerprint without an update: what it runs is not known to differ.
			if old, ok := pl.oldLinks[in.ID]; ok && old != "" && in.Action != Create && old != fp {
				in.because(Update, ReasonLinks, "changed")
				changed = true
			}
		}
		if changed {
			gp.Batches = batchesOf(pl.strategies[g.Name], *gp)
		}
	}
}

func (pl *planner) validate(g Group) (strategy, error) {
	st, err := parseStrategy(g.Update)
	if err != nil {
		return st, err
	}
	switch {
	case g.Instances < 0:
		return st, fmt.Errorf("instances: %d is negative", g.Instances)
	case g.Instances > maxInstances:
		return st, fmt.Errorf("instances: %d is more than one instance group may have (%d)", g.Instances, maxInstances)
	case g.Disk.Size < 0:
		return st, fmt.Errorf("persistent_disk: %d MB is negative", g.Disk.Size)
	case g.Lifecycle != "" && g.Lifecycle != Service && g.Lifecycle != Errand:
		return st, fmt.Errorf("lifecycle: %q is not service or errand", g.Lifecycle)
	case len(g.Networks) == 0:
		return st, errors.New("networks: an instance group needs at least one network")
	case len(g.AZs) == 0 && len(pl.azs) > 0:
		return st, errors.New("azs: required, since the cloud-config defines azs")
	}
	for i, az := range g.AZs {
		if _, ok := pl.azs[az]; !ok {
			return st, fmt.Errorf("azs: %q is not a cloud-config az", az)
		}
		if slices.Contains(g.AZs[:i], az) {
			return st, fmt.Errorf("azs: %q is listed twice", az)
		}
	}
	jobs := map[string]bool{}
	for _, j := range g.Jobs {
		if jobs[j.Name] {
			return st, fmt.Errorf("jobs: %q is listed twice", j.Name)
		}
		jobs[j.Name] = true
	}
	defaults := map[string]int{}
	for i, gn := range g.Networks {
		n := pl.nets[gn.Name]
		if n == nil {
			return st, fmt.Errorf("networks[%s]: not a cloud-config network", gn.Name)
		}
		if slices.ContainsFunc(g.Networks[:i], func(o GroupNetwork) bool { return o.Name == gn.Name }) {
			return st, fmt.Errorf("networks[%s]: listed twice", gn.Name)
		}
		for _, d := range gn.Default {
			defaults[d]++
		}
		if len(gn.StaticIPs) > 0 && n.typ == Dynamic {
			return st, fmt.Errorf("networks[%s].static_ips: a dynamic network takes no static IPs", gn.Name)
		}
		if len(gn.StaticIPs) > 0 && n.typ == VIP && len(n.subnets) > 0 {
			return st, fmt.Errorf("networks[%s].static_ips: vip network %s assigns addresses from its subnets", gn.Name, gn.Name)
		}
		if n.typ == Manual || len(n.subnets) > 0 {
			for _, az := range g.AZs {
				if n.servesAZ(az) == nil {
					return st, fmt.Errorf("networks[%s]: network has no subnet in az %q", gn.Name, az)
				}
			}
			if len(g.AZs) == 0 && n.servesAZ("") == nil {
				return st, fmt.Errorf("networks[%s]: network has no subnet without an az", gn.Name)
			}
		}
	}
	if len(g.Networks) > 1 {
		for _, d := range []string{"dns", "gateway"} {
			if defaults[d] != 1 {
				return st, fmt.Errorf("networks: exactly one network must be default for %s, %d are", d, defaults[d])
			}
		}
	}
	return st, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
