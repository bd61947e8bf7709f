package plan

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

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
		recreate(ReasonNetwork, networkDetail(e.IPs, in.IPs))
	}
	if old.Env != now.Env {
		recreate(ReasonEnv, "changed")
	}
	if old.Jobs != now.Jobs {
		update(ReasonJobs, "changed")
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
	if in.Action == Recreate && in.VMStrategy == CreateSwapDelete {
		pl.swapAddresses(g, s, &in)
	}
	return in, nil
}

// swapAddresses gives a VM replaced create-swap-delete its own addresses: the old VM
// keeps its own until it is deleted, so the new one cannot reuse them. BOSH does the same
// (the instance comes back on a new IP). When a subnet has no address to spare, the
// instance falls back to delete-create and keeps its addresses.
func (pl *planner) swapAddresses(g Group, s *slot, in *InstancePlan) {
	type taken struct {
		pos int
		n   *network
		sub *subnet
		a   netip.Addr
	}
	var took []taken
	for i, gn := range g.Networks {
		if !s.ips[i].IsValid() {
			continue // a dynamic network: the cloud hands out another address itself
		}
		n := pl.nets[gn.Name]
		a, sub, err := n.allocate(s.az)
		if err != nil {
			for _, t := range took { // give back what this instance took
				delete(t.n.used, t.a)
				if !t.sub.next.IsValid() || t.a.Less(t.sub.next) {
					t.sub.next = t.a
				}
			}
			in.VMStrategy = DeleteCreate
			return
		}
		took = append(took, taken{i, n, sub, a})
	}
	for _, t := range took {
		s.ips[t.pos] = t.a
		in.IPs[t.pos].IP = t.a.String()
	}
	in.Applied.Networks = pl.networkFP(g, s)
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

func networkDetail(old map[string]string, now []Address) string {
	var parts []string
	names := map[string]bool{}
	for _, a := range now {
		names[a.Network] = true
		if was := old[a.Network]; was != a.IP && a.IP != "" {
			parts = append(parts, a.Network+" "+arrow(was, a.IP))
		}
	}
	var gone []string
	for n := range old {
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
