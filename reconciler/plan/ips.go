package plan

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ipRange is an inclusive address range.
type ipRange struct{ lo, hi netip.Addr }

func (r ipRange) contains(a netip.Addr) bool { return r.lo.Compare(a) <= 0 && a.Compare(r.hi) <= 0 }

// parseRange reads "a.b.c.d" or "a.b.c.d-e.f.g.h".
func parseRange(s string) (ipRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	l, err := netip.ParseAddr(strings.TrimSpace(lo))
	if err != nil {
		return ipRange{}, fmt.Errorf("%q is not an IP address or range", s)
	}
	if !isRange {
		return ipRange{l, l}, nil
	}
	h, err := netip.ParseAddr(strings.TrimSpace(hi))
	if err != nil || h.Is4() != l.Is4() || h.Less(l) {
		return ipRange{}, fmt.Errorf("%q is not an IP address or range", s)
	}
	return ipRange{l, h}, nil
}

// rangeSet is a sorted set of disjoint ranges.
type rangeSet []ipRange

func newRangeSet(rs []ipRange) rangeSet {
	slices.SortFunc(rs, func(a, b ipRange) int { return a.lo.Compare(b.lo) })
	var out rangeSet
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if r.lo.Compare(last.hi) <= 0 || r.lo == last.hi.Next() {
				if last.hi.Less(r.hi) {
					last.hi = r.hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// find returns the range holding a.
func (s rangeSet) find(a netip.Addr) (ipRange, bool) {
	i, _ := slices.BinarySearchFunc(s, a, func(r ipRange, a netip.Addr) int {
		if r.hi.Less(a) {
			return -1
		}
		if a.Less(r.lo) {
			return 1
		}
		return 0
	})
	if i < len(s) && s[i].contains(a) {
		return s[i], true
	}
	return ipRange{}, false
}

// subnet is a parsed manual (or vip) subnet with its allocation cursor.
type subnet struct {
	name      string // the range as written, for errors
	usable    ipRange
	gateway   netip.Addr
	reserved  rangeSet
	static    rangeSet
	azs       []string
	cloudHash string
	next      netip.Addr // every address below it is taken or excluded
}

func (s *subnet) serves(az string) bool {
	if len(s.azs) == 0 {
		return az == ""
	}
	return slices.Contains(s.azs, az)
}

func (s *subnet) isStatic(a netip.Addr) bool { _, ok := s.static.find(a); return ok }

// dynamicOK reports whether a may be handed out dynamically from this subnet.
func (s *subnet) dynamicOK(a netip.Addr) bool {
	if !s.usable.contains(a) || a == s.gateway {
		return false
	}
	if _, ok := s.reserved.find(a); ok {
		return false
	}
	return !s.isStatic(a)
}

// network is a cloud-config network with the addresses taken on it.
type network struct {
	name    string
	typ     NetworkType
	subnets []*subnet
	used    map[netip.Addr]struct{}
}

func (n *network) take(a netip.Addr) { n.used[a] = struct{}{} }

func (n *network) taken(a netip.Addr) bool { _, ok := n.used[a]; return ok }

// subnetOf returns the subnet whose range holds a.
func (n *network) subnetOf(a netip.Addr) *subnet {
	for _, s := range n.subnets {
		if s.usable.contains(a) {
			return s
		}
	}
	return nil
}

// servesAZ returns the first subnet serving az.
func (n *network) servesAZ(az string) *subnet {
	for _, s := range n.subnets {
		if s.serves(az) {
			return s
		}
	}
	return nil
}

// allocate hands out the lowest free dynamic address of a subnet serving az.
func (n *network) allocate(az string) (netip.Addr, *subnet, error) {
	var tried []string
	for _, s := range n.subnets {
		if !s.serves(az) {
			continue
		}
		tried = append(tried, s.name)
		for a := s.next; a.IsValid() && !s.usable.hi.Less(a); {
			if r, ok := s.reserved.find(a); ok {
				a = r.hi.Next()
				continue
			}
			if r, ok := s.static.find(a); ok {
				a = r.hi.Next()
				continue
			}
			if a == s.gateway || n.taken(a) {
				a = a.Next()
				continue
			}
			n.take(a)
			s.next = a.Next()
			return a, s, nil
		}
		s.next = netip.Addr{}
	}
	where := "in az " + az
	if az == "" {
		where = "without an az"
	}
	return netip.Addr{}, nil, fmt.Errorf("network %q has no free IP %s: subnet %s exhausted", n.name, where, strings.Join(tried, ", "))
}

// parseNetworks validates the cloud-config networks and marks addresses in use.
func parseNetworks(c Cloud, inUse map[string][]string) (map[string]*network, error) {
	azs := map[string]bool{}
	for _, az := range c.AZs {
		if az.Name == "" {
			return nil, fmt.Errorf("cloud-config azs: an az has no name")
		}
		if azs[az.Name] {
			return nil, fmt.Errorf("cloud-config azs: az %q is defined twice", az.Name)
		}
		azs[az.Name] = true
	}
	nets := make(map[string]*network, len(c.Networks))
	for _, cn := range c.Networks {
		if cn.Name == "" {
			return nil, fmt.Errorf("cloud-config networks: a network has no name")
		}
		if nets[cn.Name] != nil {
			return nil, fmt.Errorf("cloud-config networks: network %q is defined twice", cn.Name)
		}
		typ := cn.Type
		if typ == "" {
			typ = Manual
		}
		if typ != Manual && typ != Dynamic && typ != VIP {
			return nil, fmt.Errorf("cloud-config networks[%s].type: %q is not manual, dynamic or vip", cn.Name, cn.Type)
		}
		n := &network{name: cn.Name, typ: typ, used: map[netip.Addr]struct{}{}}
		for i, cs := range cn.Subnets {
			s, err := parseSubnet(typ, cs, azs)
			if err != nil {
				return nil, fmt.Errorf("cloud-config networks[%s].subnets[%d]: %w", cn.Name, i, err)
			}
			for _, o := range n.subnets {
				if typ == Manual && o.usable.lo.Compare(s.usable.hi) <= 0 && s.usable.lo.Compare(o.usable.hi) <= 0 {
					return nil, fmt.Errorf("cloud-config networks[%s].subnets[%d]: range %s overlaps subnet %s", cn.Name, i, s.name, o.name)
				}
			}
			n.subnets = append(n.subnets, s)
		}
		nets[cn.Name] = n
	}
	for name, ips := range inUse {
		n := nets[name]
		if n == nil {
			continue // a network other deployments use that this one does not
		}
		for _, ip := range ips {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return nil, fmt.Errorf("IP in use on network %q: %q is not an IP address", name, ip)
			}
			n.take(a)
		}
	}
	return nets, nil
}

func parseSubnet(typ NetworkType, cs Subnet, azs map[string]bool) (*subnet, error) {
	s := &subnet{azs: cs.AZs, cloudHash: cs.CloudPropertiesHash}
	for _, az := range cs.AZs {
		if !azs[az] {
			return nil, fmt.Errorf("azs: %q is not a cloud-config az", az)
		}
	}
	if typ != Manual {
		// Dynamic subnets only place the network in azs; vip subnets list static addresses.
		for _, st := range cs.Static {
			r, err := parseRange(st)
			if err != nil {
				return nil, fmt.Errorf("static: %w", err)
			}
			s.static = append(s.static, r)
		}
		s.static = newRangeSet(s.static)
		if len(s.static) > 0 {
			s.usable = ipRange{s.static[0].lo, s.static[len(s.static)-1].hi}
		}
		return s, nil
	}
	p, err := netip.ParsePrefix(strings.TrimSpace(cs.Range))
	if err != nil {
		return nil, fmt.Errorf("range: %q is not a CIDR", cs.Range)
	}
	p = p.Masked()
	s.name = p.String()
	first := p.Addr()
	last := lastAddr(p)
	// The network id and broadcast address are never handed out.
	lo, hi := first.Next(), last.Prev()
	if !lo.IsValid() || !hi.IsValid() || hi.Less(lo) {
		return nil, fmt.Errorf("range: %s has no usable addresses", s.name)
	}
	s.usable = ipRange{lo, hi}
	s.next = lo
	if cs.Gateway != "" {
		g, err := netip.ParseAddr(strings.TrimSpace(cs.Gateway))
		if err != nil {
			return nil, fmt.Errorf("gateway: %q is not an IP address", cs.Gateway)
		}
		if !s.usable.contains(g) {
			return nil, fmt.Errorf("gateway: %s is not a usable address of %s", g, s.name)
		}
		s.gateway = g
	}
	var reserved, static []ipRange
	for _, r := range cs.Reserved {
		rr, err := parseRange(r)
		if err != nil {
			return nil, fmt.Errorf("reserved: %w", err)
		}
		if !p.Contains(rr.lo) || !p.Contains(rr.hi) {
			return nil, fmt.Errorf("reserved: %s is outside %s", r, s.name)
		}
		reserved = append(reserved, rr)
	}
	s.reserved = newRangeSet(reserved)
	for _, st := range cs.Static {
		rr, err := parseRange(st)
		if err != nil {
			return nil, fmt.Errorf("static: %w", err)
		}
		if !s.usable.contains(rr.lo) || !s.usable.contains(rr.hi) {
			return nil, fmt.Errorf("static: %s is outside the usable addresses of %s", st, s.name)
		}
		if overlapsAny(s.reserved, rr) {
			return nil, fmt.Errorf("static: %s overlaps a reserved range", st)
		}
		static = append(static, rr)
	}
	s.static = newRangeSet(static)
	return s, nil
}

func overlapsAny(s rangeSet, r ipRange) bool {
	for _, o := range s {
		if o.lo.Compare(r.hi) <= 0 && r.lo.Compare(o.hi) <= 0 {
			return true
		}
	}
	return false
}

func lastAddr(p netip.Prefix) netip.Addr {
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
