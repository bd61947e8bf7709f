package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/cpi"
)

// Paths inside a VM's root.
const (
	settingsRel = "var/vcap/bosh/settings.json"
	storeRel    = "var/vcap/store"
	agentLogRel = "var/vcap/bosh/log/bosun-agent.log"
)

func (c *CPI) vmDir(cid cpi.VMCID) string { return c.path("vms", string(cid)) }

func (c *CPI) vmExists(cid cpi.VMCID) bool {
	return validCID(string(cid)) && exists(c.vmDir(cid))
}

// CreateVM implements cpi.CPI: a root directory, a loopback address per network, the
// agent's settings, and the agent started in its own session.
func (c *CPI) CreateVM(ctx context.Context, spec cpi.VMSpec) (cpi.VMCID, cpi.Networks, error) {
	const method = "create_vm"
	fail := func(retry bool, cause error, format string, a ...any) (cpi.VMCID, cpi.Networks, error) {
		return "", nil, c.errf(ctx, method, "agent "+spec.AgentID, cpi.VMCreationFailed, retry, cause, format, a...)
	}
	var props struct{}
	if err := cpi.DecodeCloudProperties(spec.CloudProperties, &props); err != nil {
		return fail(false, err, "bad vm cloud_properties")
	}
	for _, name := range slices.Sorted(maps.Keys(spec.Networks)) {
		if err := cpi.DecodeCloudProperties(spec.Networks[name].CloudProperties, &props); err != nil {
			return fail(false, err, "network %q", name)
		}
	}
	if spec.AgentID == "" {
		return fail(false, nil, "no agent id given")
	}
	if !validCID(string(spec.Stemcell)) || !exists(c.path("stemcells", string(spec.Stemcell), "stemcell.MF")) {
		return fail(false, nil, "stemcell %q not found", spec.Stemcell)
	}
	if err := ctx.Err(); err != nil {
		return fail(false, err, "not started")
	}

	cid := cpi.VMCID(newCID("vm-"))
	root := c.vmDir(cid)
	// The root is made under a hidden name (ListVMs sweeps those) and appears with the
	// agent id already in its settings: a creator killed at any point leaves either
	// nothing listed, or a VM that names its agent, which the director's write-ahead
	// intent finds and deletes.
	tmp := c.path("vms", ".tmp-"+string(cid))
	settings := spec.BootstrapSettings()
	settings.VM.Name = string(cid)
	for _, d := range []string{"var/vcap/bosh/log", storeRel, "var/vcap/data", "var/vcap/sys"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			os.RemoveAll(tmp)
			return fail(false, err, "create VM root")
		}
	}
	if err := writeJSONAtomic(filepath.Join(tmp, settingsRel), settings, 0o600); err != nil {
		os.RemoveAll(tmp)
		return fail(false, err, "write agent settings")
	}
	if err := os.Rename(tmp, root); err != nil {
		os.RemoveAll(tmp)
		return fail(false, err, "create VM root")
	}
	// From here on a failure cleans up; a retry is safe only when that worked.
	cleanup := func() bool {
		return c.DeleteVM(context.WithoutCancel(ctx), cid) == nil
	}
	nets, err := c.leaseAddresses(cid, spec.Networks)
	if err != nil {
		cleanup()
		return fail(false, err, "assign addresses")
	}
	settings.Networks = nets
	if err := writeJSONAtomic(filepath.Join(root, settingsRel), settings, 0o600); err != nil {
		return fail(cleanup(), err, "write agent settings")
	}
	if err := c.startAgent(root); err != nil {
		// A missing or unrunnable agent stays so; anything else may pass.
		lasting := errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission)
		return fail(cleanup() && !lasting, err, "start agent %s", c.cfg.AgentPath)
	}
	c.log.Info("created VM", "vm_cid", cid, "agent_id", spec.AgentID, "instance", cpi.InstanceFrom(ctx))
	return cid, nets, nil
}

// leaseAddresses gives each network an address: a manual network's own (which must
// lie in 127.0.0.0/8), a dynamic network's drawn from the dynamic range.
func (c *CPI) leaseAddresses(cid cpi.VMCID, in cpi.Networks) (cpi.Networks, error) {
	unlock, err := c.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := os.MkdirAll(c.path("ips"), 0o700); err != nil {
		return nil, err
	}
	out := cpi.Networks{}
	for _, name := range slices.Sorted(maps.Keys(in)) {
		n := in[name]
		switch n.Type {
		case "vip":
		case "dynamic":
			ip, err := c.leaseDynamic(cid)
			if err != nil {
				return nil, fmt.Errorf("network %q: %w", name, err)
			}
			n.IP = ip.String()
			n.Netmask = netmask(c.dynamic.Bits())
		case "manual", "":
			ip, err := netip.ParseAddr(n.IP)
			if err != nil || !ip.Is4() || !loopback.Contains(ip) {
				return nil, fmt.Errorf("network %q: address %q is not in 127.0.0.0/8; the local CPI gives VMs loopback addresses", name, n.IP)
			}
			if holder := c.leaseHolder(ip); holder != "" && holder != cid {
				return nil, fmt.Errorf("network %q: address %s is already held by VM %s", name, ip, holder)
			}
			if err := writeFileAtomic(c.path("ips", ip.String()), []byte(cid), 0o600); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("network %q: unknown type %q (want manual, dynamic or vip)", name, n.Type)
		}
		out[name] = n
	}
	return out, nil
}

// leaseHolder returns the VM holding ip, or "" when the address is free. A lease
// whose VM directory is gone is free: the VM directory is made before its leases and
// removed before them, so such a lease is left over from a crash.
func (c *CPI) leaseHolder(ip netip.Addr) cpi.VMCID {
	b, err := os.ReadFile(c.path("ips", ip.String()))
	if err != nil {
		return ""
	}
	holder := cpi.VMCID(b)
	if !c.vmExists(holder) {
		return ""
	}
	return holder
}

func (c *CPI) leaseDynamic(cid cpi.VMCID) (netip.Addr, error) {
	first := c.dynamic.Addr().Next() // skip the network address
	size := 1 << (32 - c.dynamic.Bits())
	hosts := size - 2 // and the broadcast address
	// Start at a random host so concurrent creators rarely probe the same leases.
	var r [4]byte
	randRead(r[:])
	start := int(uint32(r[0])<<24|uint32(r[1])<<16|uint32(r[2])<<8|uint32(r[3])) % hosts
	for i := range hosts {
		ip := addN(first, (start+i)%hosts)
		if c.leaseHolder(ip) != "" {
			continue
		}
		return ip, writeFileAtomic(c.path("ips", ip.String()), []byte(cid), 0o600)
	}
	return netip.Addr{}, fmt.Errorf("no free address in %s: all %d are held by VMs", c.dynamic, hosts)
}

func addN(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func netmask(bits int) string {
	m := ^uint32(0) << (32 - bits)
	return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}).String()
}

// releaseAddresses drops the leases this VM holds.
func (c *CPI) releaseAddresses(cid cpi.VMCID, nets cpi.Networks) {
	for _, n := range nets {
		ip, err := netip.ParseAddr(n.IP)
		if err != nil {
			continue
		}
		p := c.path("ips", ip.String())
		if b, err := os.ReadFile(p); err == nil && cpi.VMCID(b) == cid {
			os.Remove(p)
		}
	}
}

func (c *CPI) readSettings(cid cpi.VMCID) (cpi.AgentSettings, error) {
	var s cpi.AgentSettings
	err := readJSON(filepath.Join(c.vmDir(cid), settingsRel), &s)
	return s, err
}

// DeleteVM implements cpi.CPI: every process of the VM's session is stopped,
// attached disks go back to the disk store, and the root directory is removed.
func (c *CPI) DeleteVM(ctx context.Context, cid cpi.VMCID) error {
	const method = "delete_vm"
	if !c.vmExists(cid) {
		return nil
	}
	root := c.vmDir(cid)
	if err := c.stopAgent(ctx, root); err != nil {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "stop the VM's processes")
	}
	unlock, err := c.lock()
	if err != nil {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "lock data dir")
	}
	defer unlock()
	settings, err := c.readSettings(cid)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		// Without settings we cannot know which disks are inside; refuse rather
		// than destroy a persistent disk.
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "read the VM's settings")
	}
	for disk := range settings.Disks.Persistent {
		if err := c.moveDiskOut(cid, disk); err != nil {
			return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "detach disk %s", disk)
		}
	}
	if err := removeAllAtomic(root); err != nil {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "remove VM root")
	}
	c.releaseAddresses(cid, settings.Networks)
	c.log.Info("deleted VM", "vm_cid", cid, "instance", cpi.InstanceFrom(ctx))
	return nil
}

// sweep removes what a crash left half-deleted or half-written, once it is old
// enough that no running call can still own it.
func (c *CPI) sweep(path string) {
	base := filepath.Base(path)
	if !strings.HasPrefix(base, ".deleted-") && !strings.HasPrefix(base, ".tmp-") {
		return
	}
	if st, err := os.Lstat(path); err == nil && time.Since(st.ModTime()) > 10*time.Minute {
		c.log.Info("removing leftover of an interrupted operation", "path", path)
		os.RemoveAll(path)
	}
}

// HasVM implements cpi.CPI: a VM exists while its root does, whether its agent
// runs or has crashed.
func (c *CPI) HasVM(ctx context.Context, cid cpi.VMCID) (bool, error) {
	return c.vmExists(cid), nil
}

// RebootVM implements cpi.Rebooter: all of the VM's processes stop and its agent
// starts again.
func (c *CPI) RebootVM(ctx context.Context, cid cpi.VMCID) error {
	const method = "reboot_vm"
	if !c.vmExists(cid) {
		return c.errf(ctx, method, string(cid), cpi.VMNotFound, false, nil, "VM %s not found", cid)
	}
	root := c.vmDir(cid)
	if err := c.stopAgent(ctx, root); err != nil {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "stop the VM's processes")
	}
	if err := c.startAgent(root); err != nil {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "start agent")
	}
	return nil
}

// SetVMMetadata implements cpi.VMMetadataSetter.
func (c *CPI) SetVMMetadata(ctx context.Context, cid cpi.VMCID, md cpi.Metadata) error {
	const method = "set_vm_metadata"
	if !c.vmExists(cid) {
		return c.errf(ctx, method, string(cid), cpi.VMNotFound, false, nil, "VM %s not found", cid)
	}
	if md == nil {
		md = cpi.Metadata{}
	}
	if err := writeJSONAtomic(filepath.Join(c.vmDir(cid), "metadata.json"), md, 0o600); err != nil {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "write metadata")
	}
	return nil
}

// ListVMs implements cpi.VMLister.
func (c *CPI) ListVMs(ctx context.Context) ([]cpi.VMInfo, error) {
	entries, err := os.ReadDir(c.path("vms"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, c.errf(ctx, "list_vms", "", cpi.CloudError, false, err, "list VMs")
	}
	var out []cpi.VMInfo
	for _, e := range entries {
		if isHidden(e.Name()) {
			c.sweep(c.path("vms", e.Name()))
			continue
		}
		if !e.IsDir() || !validCID(e.Name()) {
			continue
		}
		cid := cpi.VMCID(e.Name())
		vi := cpi.VMInfo{CID: cid, Metadata: cpi.Metadata{}}
		if s, err := c.readSettings(cid); err == nil {
			vi.AgentID = s.AgentID
		}
		if err := readJSON(filepath.Join(c.vmDir(cid), "metadata.json"), &vi.Metadata); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, c.errf(ctx, "list_vms", string(cid), cpi.CloudError, false, err, "read metadata")
		}
		out = append(out, vi)
	}
	return out, nil
}
