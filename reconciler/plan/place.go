package plan

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// slot is one desired instance being placed.
type slot struct {
	e     *existing // nil for a new instance
	az    string
	index int
	id    string
	ips   []netip.Addr // by the group's network position; invalid where not yet known
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
