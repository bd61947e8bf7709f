package plan

import (
	"fmt"
	"net/netip"
	"slices"
)

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
