package plan

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"
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
	byGroup, err := indexObserved(o)
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
		ids:         map[string]bool{},
		firstDeploy: len(o.Instances) == 0,
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
		pl.ids[in.ID] = true
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
	removed := deleteAll(d.Name, byGroup, consumed, ReasonGroupRemoved)
	plan.Groups = append(plan.Groups, removed.Groups...)
	plan.Stages = stages(plan.Groups)
	return plan, nil
}

// indexObserved checks the observed instances and groups them by instance group, by index.
func indexObserved(o Observed) (map[string][]Instance, error) {
	type slotKey struct {
		group string
		index int
	}
	type ipKey struct {
		net string
		a   netip.Addr
	}
	ids := make(map[string]bool, len(o.Instances))
	at := make(map[slotKey]string, len(o.Instances))
	ips := make(map[ipKey]string, len(o.Instances))
	counts := map[string]int{}
	for _, in := range o.Instances {
		name := func() string { return in.Group + "/" + strconv.Itoa(in.Index) }
		switch {
		case in.ID == "":
			return nil, fmt.Errorf("observed instance %s has no id", name())
		case in.Group == "":
			return nil, fmt.Errorf("observed instance %s has no instance group", in.ID)
		case in.Index < 0:
			return nil, fmt.Errorf("observed instance %s (%s) has a negative index", name(), in.ID)
		case ids[in.ID]:
			return nil, fmt.Errorf("observed instance id %s is used twice", in.ID)
		case at[slotKey{in.Group, in.Index}] != "":
			return nil, fmt.Errorf("observed instances %s and %s are both %s", at[slotKey{in.Group, in.Index}], in.ID, name())
		}
		ids[in.ID], at[slotKey{in.Group, in.Index}] = true, in.ID
		for net, ip := range in.IPs {
			if ip == "" {
				continue
			}
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return nil, fmt.Errorf("observed instance %s (%s): network %s: %q is not an IP address", name(), in.ID, net, ip)
			}
			if other := ips[ipKey{net, a}]; other != "" {
				return nil, fmt.Errorf("observed instances %s and %s both hold %s on network %s", other, in.ID, a, net)
			}
			ips[ipKey{net, a}] = in.ID
		}
		counts[in.Group]++
	}
	byGroup := make(map[string][]Instance, len(counts))
	for _, in := range o.Instances {
		if byGroup[in.Group] == nil {
			byGroup[in.Group] = make([]Instance, 0, counts[in.Group])
		}
		byGroup[in.Group] = append(byGroup[in.Group], in)
	}
	for _, ins := range byGroup {
		slices.SortFunc(ins, func(a, b Instance) int { return cmp.Compare(a.Index, b.Index) })
	}
	return byGroup, nil
}

// deleteAll plans the deletion of every observed group not in keep.
func deleteAll(deployment string, byGroup map[string][]Instance, keep map[string]string, why ReasonKind) Plan {
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

// existing is an observed instance offered to a desired group.
type existing struct {
	Instance
	from string // the migrated_from group it comes from, if any
}

func asExisting(ins []Instance, from, az string) []existing {
	out := make([]existing, len(ins))
	for i, in := range ins {
		if in.AZ == "" {
			in.AZ = az
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

// slot is one desired instance being placed.
type slot struct {
	e     *existing // nil for a new instance
	az    string
	index int
	id    string
	ips   []netip.Addr // by the group's network position; invalid where not yet known
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
		gp.Batches = st.batches(slices.DeleteFunc(slices.Clone(gp.Instances), func(in InstancePlan) bool { return in.Action != Delete }))
	} else {
		gp.Batches = st.batches(gp.Instances)
	}
	return gp, nil
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

// placeBalanced is BOSH's AvailabilityZonePicker: instances with a persistent disk stay in
// their AZ (only while the group keeps a disk: BOSH pins them even when the disk is about
// to be deleted, and so needs a second deploy to rebalance); every other desired instance goes to the AZ with the fewest placed so far,
// preferring the AZ with the most unclaimed existing instances, whose lowest index it
// takes. What is left unclaimed is deleted: so scaling down removes from the most-used AZ,
// highest index first, and an AZ dropped from the group loses all its instances.
func placeBalanced(count int, keepsDisk bool, azs []string, ex []existing) ([]*slot, []*existing) {
	pos := make(map[string]int, len(azs))
	for i, az := range azs {
		pos[az] = i
	}
	queues := make([][]*existing, len(azs)) // per AZ, by index
	var unclaimed []*existing
	for i := range ex {
		if p, ok := pos[ex[i].AZ]; ok {
			queues[p] = append(queues[p], &ex[i])
		} else {
			unclaimed = append(unclaimed, &ex[i])
		}
	}
	left, placed, head := make([]int, len(azs)), make([]int, len(azs)), make([]int, len(azs))
	for p := range queues {
		left[p] = len(queues[p])
	}
	order := make([]int, len(azs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(left[b], left[a]) })
	claimed := map[*existing]bool{}
	slots := make([]*slot, 0, count)
	claim := func(p int, e *existing) {
		claimed[e] = true
		left[p]--
		placed[p]++
		slots = append(slots, &slot{e: e, az: e.AZ})
	}
	if keepsDisk {
		for i := range ex {
			if len(slots) == count {
				break
			}
			if p, ok := pos[ex[i].AZ]; ok && ex[i].Applied.Disk.Size > 0 {
				claim(p, &ex[i])
			}
		}
	}
	for len(slots) < count {
		best := order[0]
		for _, p := range order[1:] {
			if placed[p] < placed[best] || (placed[p] == placed[best] && left[p] > left[best]) {
				best = p
			}
		}
		if left[best] == 0 {
			placed[best]++
			slots = append(slots, &slot{az: azs[best]})
			continue
		}
		for claimed[queues[best][head[best]]] {
			head[best]++
		}
		claim(best, queues[best][head[best]])
	}
	for p := range queues {
		for _, e := range queues[p][head[p]:] {
			if !claimed[e] {
				unclaimed = append(unclaimed, e)
			}
		}
	}
	return slots, unclaimed
}

// staticAZs lists the group's AZs that the subnet holding static IP a serves.
func (pl *planner) staticAZs(net string, a netip.Addr, azs []string) ([]string, error) {
	n := pl.nets[net]
	if n.typ == VIP {
		return azs, nil
	}
	s := n.subnetOf(a)
	if s == nil || !s.isStatic(a) {
		return nil, fmt.Errorf("static IP %s is not in a static range of network %s", a, net)
	}
	var out []string
	for _, az := range azs {
		if s.serves(az) {
			out = append(out, az)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("static IP %s is in subnet %s, whose azs %v are none of the instance group's", a, s.name, s.azs)
	}
	return out, nil
}

// placeStatic places a group whose placement its static IPs decide: an instance that holds
// one of them keeps it; the other IPs go to remaining instances in their subnet's AZ (which
// then move address), then to new instances in the least-used AZ the subnet serves.
func (pl *planner) placeStatic(g Group, azs []string, net string, ex []existing) ([]*slot, []*existing, error) {
	ips, err := pl.staticList(g, net, azs)
	if err != nil {
		return nil, nil, err
	}
	unclaimed := make([]*existing, len(ex))
	for i := range ex {
		unclaimed[i] = &ex[i]
	}
	placed := map[string]int{}
	var slots []*slot
	done := map[netip.Addr]bool{}
	take := func(e *existing, az string, a netip.Addr) {
		unclaimed = slices.DeleteFunc(unclaimed, func(o *existing) bool { return o == e })
		placed[az]++
		done[a] = true
		slots = append(slots, &slot{e: e, az: az, ips: []netip.Addr{a}})
	}
	for _, e := range slices.Clone(unclaimed) {
		a, err := netip.ParseAddr(e.IPs[net])
		if cands, ok := ips[a]; err == nil && ok && !done[a] && slices.Contains(cands.azs, e.AZ) {
			take(e, e.AZ, a)
		}
	}
	for _, a := range ipOrder(ips) {
		if done[a] {
			continue
		}
		cands := ips[a].azs
		if i := slices.IndexFunc(unclaimed, func(e *existing) bool { return slices.Contains(cands, e.AZ) }); i >= 0 {
			take(unclaimed[i], unclaimed[i].AZ, a)
			continue
		}
		best := cands[0]
		for _, az := range cands[1:] {
			if placed[az] < placed[best] {
				best = az
			}
		}
		take(nil, best, a)
	}
	return slots, unclaimed, nil
}

type staticIP struct {
	pos int
	azs []string
}

// staticList validates one network's static IPs for a group.
func (pl *planner) staticList(g Group, net string, azs []string) (map[netip.Addr]staticIP, error) {
	var gn GroupNetwork
	for _, n := range g.Networks {
		if n.Name == net {
			gn = n
		}
	}
	list, _ := expandStatic(gn.StaticIPs, g.Instances) // claimStatic validated it
	if len(list) != g.Instances {
		return nil, fmt.Errorf("networks[%s].static_ips: %d static IPs for %d instances; BOSH needs exactly one per instance", net, len(list), g.Instances)
	}
	out := make(map[netip.Addr]staticIP, len(list))
	for i, a := range list {
		cands, err := pl.staticAZs(net, a, azs)
		if err != nil {
			return nil, fmt.Errorf("networks[%s].static_ips: %w", net, err)
		}
		out[a] = staticIP{pos: i, azs: cands}
	}
	return out, nil
}

func ipOrder(ips map[netip.Addr]staticIP) []netip.Addr {
	out := make([]netip.Addr, 0, len(ips))
	for a := range ips {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return cmp.Compare(ips[a].pos, ips[b].pos) })
	return out
}

// assignIndexesAndIDs keeps existing indexes and ids; new instances take the lowest index
// neither kept nor being deleted, as BOSH's index assigner does, and a fresh id.
func (pl *planner) assignIndexesAndIDs(group string, slots []*slot, unclaimed []*existing) error {
	taken := map[int]bool{}
	for _, e := range unclaimed {
		taken[e.Index] = true
	}
	kept := make([]*slot, 0, len(slots))
	var fresh []*slot
	for _, s := range slots {
		if s.e != nil {
			kept = append(kept, s)
		} else {
			fresh = append(fresh, s)
		}
	}
	slices.SortStableFunc(kept, func(a, b *slot) int { return cmp.Compare(a.e.Index, b.e.Index) })
	for _, s := range kept {
		s.id = s.e.ID
		if taken[s.e.Index] {
			fresh = append(fresh, s) // two migrated groups had the same index: renumber one
			continue
		}
		s.index = s.e.Index
		taken[s.index] = true
	}
	next := 0
	for _, s := range fresh {
		for taken[next] {
			next++
		}
		s.index = next
		taken[next] = true
		if s.e != nil {
			continue
		}
		if pl.opts.NewID == nil {
			return fmt.Errorf("creating %s/%d needs an instance id generator (Options.NewID)", group, s.index)
		}
		s.id = pl.opts.NewID()
		if s.id == "" || pl.ids[s.id] {
			return fmt.Errorf("creating %s/%d: the id generator returned %q, which is empty or already used", group, s.index, s.id)
		}
		pl.ids[s.id] = true
	}
	return nil
}

// assignIPs gives each instance its address on one of the group's networks (other than the
// one whose static IPs placed the group).
func (pl *planner) assignIPs(g Group, pos int, slots []*slot) error {
	gn := g.Networks[pos]
	n := pl.nets[gn.Name]
	set := func(s *slot, a netip.Addr) { s.ips[pos] = a }
	current := func(s *slot) (netip.Addr, bool) {
		if s.e == nil {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(s.e.IPs[gn.Name])
		return a, err == nil
	}
	if len(gn.StaticIPs) > 0 {
		azs := g.AZs
		if len(azs) == 0 {
			azs = []string{""}
		}
		ips, err := pl.staticList(g, gn.Name, azs)
		if err != nil {
			return err
		}
		done := map[netip.Addr]bool{}
		var rest []*slot
		for _, s := range slots {
			if a, ok := current(s); ok && !done[a] && slices.Contains(ips[a].azs, s.az) {
				set(s, a)
				done[a] = true
				continue
			}
			rest = append(rest, s)
		}
		order := ipOrder(ips)
		for _, s := range rest {
			i := slices.IndexFunc(order, func(a netip.Addr) bool { return !done[a] && slices.Contains(ips[a].azs, s.az) })
			if i < 0 {
				return fmt.Errorf("static_ips: none left for %s/%d in az %q", g.Name, s.index, s.az)
			}
			set(s, order[i])
			done[order[i]] = true
		}
		return nil
	}
	switch n.typ {
	case Dynamic:
		return nil
	case VIP:
		if len(n.subnets) == 0 {
			return nil
		}
	}
	for _, s := range slots {
		if a, ok := current(s); ok && pl.keepable(n, a, s.az) {
			set(s, a)
			continue
		}
		var a netip.Addr
		var err error
		if n.typ == VIP {
			a, err = pl.allocateVIP(n, s.az)
		} else {
			a, _, err = n.allocate(s.az)
		}
		if err != nil {
			return fmt.Errorf("allocate IP for %s/%d: %w", g.Name, s.index, err)
		}
		set(s, a)
	}
	return nil
}

// keepable reports whether an instance may keep dynamic address a in az.
func (pl *planner) keepable(n *network, a netip.Addr, az string) bool {
	if _, static := pl.static[n.name][a]; static {
		return false
	}
	s := n.subnetOf(a)
	if s == nil || !s.serves(az) {
		return false
	}
	if n.typ == VIP {
		return s.isStatic(a)
	}
	return s.dynamicOK(a)
}

// allocateVIP hands out the lowest free address of a vip subnet's static pool in az.
func (pl *planner) allocateVIP(n *network, az string) (netip.Addr, error) {
	for _, s := range n.subnets {
		if !s.serves(az) {
			continue
		}
		for _, r := range s.static {
			for a := r.lo; a.IsValid() && !r.hi.Less(a); a = a.Next() {
				if _, claimed := pl.static[n.name][a]; !claimed && !n.taken(a) {
					n.take(a)
					return a, nil
				}
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("vip network %q has no free address in az %q", n.name, az)
}

// electBootstrap keeps the current bootstrap instance if it stays; otherwise the lowest
// index in the first AZ that has instances.
func electBootstrap(azs []string, slots []*slot) *slot {
	for _, s := range slots {
		if s.e != nil && s.e.Bootstrap {
			return s
		}
	}
	for _, az := range azs {
		for _, s := range slots {
			if s.az == az {
				return s
			}
		}
	}
	return nil
}

// groupFP holds the fingerprints shared by a group's instances.
type groupFP struct {
	stemcell string
	jobs     string
	vm       map[string]string // by az
}

func (pl *planner) groupFingerprints(g Group) groupFP {
	h := newHasher()
	for _, j := range g.Jobs {
		h.add(j.Name, j.Release, j.Version, j.Hash)
	}
	fp := groupFP{stemcell: g.Stemcell.String(), jobs: h.sum(), vm: map[string]string{}}
	for _, az := range append(slices.Clone(g.AZs), "") {
		h := newHasher()
		h.add(g.VMType, g.CloudPropertiesHash, pl.azs[az].CloudPropertiesHash)
		h.add(g.VMExtensions...)
		fp.vm[az] = h.sum()
	}
	return fp
}

// networkFP fingerprints an instance's network settings: names, defaults, addresses and
// the cloud properties of the subnets they come from.
func (pl *planner) networkFP(g Group, s *slot) string {
	h := &pl.h
	h.b = h.b[:0]
	for i, gn := range g.Networks {
		n := pl.nets[gn.Name]
		h.add(gn.Name, string(n.typ))
		h.add(gn.Default...)
		sub := n.servesAZ(s.az)
		if a := s.ips[i]; a.IsValid() {
			h.add(a.String())
			if sa := n.subnetOf(a); sa != nil {
				sub = sa
			}
		}
		if sub != nil {
			h.add(sub.cloudHash)
		}
	}
	return h.sum()
}

func (pl *planner) diff(g Group, fp groupFP, s *slot, bootstrap bool) (InstancePlan, error) {
	in := InstancePlan{ID: s.id, Group: g.Name, Index: s.index, AZ: s.az, Bootstrap: bootstrap, Action: Keep,
		VMStrategy: g.Update.VMStrategy}
	if in.VMStrategy == "" {
		in.VMStrategy = DeleteCreate
	}
	in.IPs = make([]Address, 0, len(g.Networks))
	for i, gn := range g.Networks {
		addr := Address{Network: gn.Name, Default: gn.Default}
		if len(g.Networks) == 1 && len(addr.Default) == 0 {
			addr.Default = []string{"dns", "gateway"}
		}
		if a := s.ips[i]; a.IsValid() {
			addr.IP = a.String()
		} else if s.e != nil {
			addr.IP = s.e.IPs[gn.Name] // a dynamic address, as the agent reported it
		}
		if len(gn.StaticIPs) > 0 && in.VMStrategy == CreateSwapDelete {
			in.VMStrategy = DeleteCreate
		}
		in.IPs = append(in.IPs, addr)
	}
	in.Applied = Fingerprint{Stemcell: fp.stemcell, VM: fp.vm[s.az], Env: g.EnvHash,
		Networks: pl.networkFP(g, s), Jobs: fp.jobs, Disk: g.Disk}
	if s.e == nil {
		in.Action = Create
		if g.Disk.Size > 0 {
			in.Disk = DiskCreate
		}
		return in, nil
	}
	e, old, now := s.e, s.e.Applied, in.Applied
	in.VMCID = e.VMCID
	recreate := func(k ReasonKind, detail string) { in.because(Recreate, k, detail) }
	update := func(k ReasonKind, detail string) { in.because(Update, k, detail) }
	if e.Unresponsive {
		if !pl.opts.Fix {
			return in, fmt.Errorf("instance %s/%d (%s) is unresponsive; repair it, or plan with fix to recreate it", e.Group, e.Index, e.ID)
		}
		recreate(ReasonUnresponsive, "")
	}
	if g.Lifecycle != Errand && (e.VMMissing || e.VMCID == "") {
		recreate(ReasonVMMissing, e.VMCID)
	}
	if pl.opts.Recreate {
		recreate(ReasonRecreate, "")
	}
	if old.Stemcell != now.Stemcell {
		recreate(ReasonStemcell, arrow(old.Stemcell, now.Stemcell))
	}
	if old.VM != now.VM {
		recreate(ReasonVMType, "or cloud properties changed")
	}
	if old.Networks != now.Networks {
		recreate(ReasonNetwork, networkDetail(e.Instance, in.IPs))
	}
	if old.Env != now.Env {
		recreate(ReasonEnv, "changed")
	}
	if old.Jobs != now.Jobs {
		update(ReasonJobs, "templates, properties or links changed")
	}
	if e.from != "" || e.Index != s.index {
		update(ReasonMigrated, fmt.Sprintf("from %s/%d", cmp.Or(e.from, e.Group), e.Index))
	}
	if e.Bootstrap != bootstrap {
		update(ReasonBootstrap, map[bool]string{true: "elected", false: "moved away"}[bootstrap])
	}
	if in.Disk = diskAction(old.Disk, now.Disk); in.Disk != DiskKeep {
		update(ReasonDisk, fmt.Sprintf("%s %s", in.Disk, arrow(diskString(old.Disk), diskString(now.Disk))))
	}
	return in, nil
}

// because records a reason; a recreate outranks an update.
func (in *InstancePlan) because(a Action, k ReasonKind, detail string) {
	if in.Action != Recreate {
		in.Action = a
	}
	in.Reasons = append(in.Reasons, Reason{Kind: k, Detail: detail})
}

func diskAction(old, now Disk) DiskAction {
	switch {
	case old.Size == 0 && now.Size == 0:
		return DiskKeep
	case old.Size == 0:
		return DiskCreate
	case now.Size == 0:
		return DiskDelete
	case old.Type != now.Type || now.Size < old.Size:
		return DiskMigrate
	case now.Size > old.Size:
		return DiskResize
	}
	return DiskKeep
}

func diskString(d Disk) string {
	if d.Size == 0 {
		return "none"
	}
	s := strconv.Itoa(d.Size) + " MB"
	if d.Type != "" {
		s += " " + d.Type
	}
	return s
}

func arrow(old, now string) string { return cmp.Or(old, "none") + " -> " + cmp.Or(now, "none") }

func networkDetail(e Instance, now []Address) string {
	var parts []string
	names := map[string]bool{}
	for _, a := range now {
		names[a.Network] = true
		if old := e.IPs[a.Network]; old != a.IP && a.IP != "" {
			parts = append(parts, a.Network+" "+arrow(old, a.IP))
		}
	}
	var gone []string
	for n := range e.IPs {
		if !names[n] {
			gone = append(gone, n+" removed")
		}
	}
	slices.Sort(gone)
	parts = append(parts, gone...)
	if len(parts) == 0 {
		return "settings changed"
	}
	return strings.Join(parts, ", ")
}

// hasher builds an FNV-1a fingerprint: fast, stable, and only ever compared with itself.
type hasher struct{ b []byte }

func newHasher() *hasher { return &hasher{b: make([]byte, 0, 128)} }

func (h *hasher) add(parts ...string) {
	for _, p := range parts {
		h.b = strconv.AppendInt(h.b, int64(len(p)), 10)
		h.b = append(h.b, ':')
		h.b = append(h.b, p...)
	}
	h.b = append(h.b, ';')
}

func (h *hasher) sum() string {
	f := fnv.New64a()
	f.Write(h.b)
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], f.Sum64())
	var out [16]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

func itoa(i int) string { return strconv.Itoa(i) }
