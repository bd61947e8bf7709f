package openstack

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/bosun-gitops/bosun/cpi"
)

const (
	// agentKey is the server metadata key naming the VM's agent; ListVMs reports
	// the servers that carry it.
	agentKey = "bosun_agent_id"
	// portPrefix names the Neutron ports the CPI creates, so delete_vm removes
	// those and no others.
	portPrefix = "bosun-"
)

// UserData is what the CPI writes into Nova user_data: the agent's full settings
// (CPI API v2, no registry) plus the server's name, as BOSH's OpenStack CPI does.
type UserData struct {
	cpi.AgentSettings
	Server struct {
		Name string `json:"name"`
	} `json:"server"`
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// vmRequest is create_vm's input resolved against the cloud.
type vmRequest struct {
	spec      cpi.VMSpec
	props     vmProps
	nets      map[string]netProps
	imageID   string
	flavor    flavors.Flavor
	keyName   string
	sgNames   []string // for the server (dynamic networks)
	sgIDs     []string // for the ports we create
	bootFromV bool
	manual    int // how many manual networks
}

// CreateVM implements cpi.CPI.
func (c *CPI) CreateVM(ctx context.Context, spec cpi.VMSpec) (cpi.VMCID, cpi.Networks, error) {
	const method = "create_vm"
	subject := "agent " + spec.AgentID
	fail := func(retry bool, cause error, format string, a ...any) (cpi.VMCID, cpi.Networks, error) {
		return "", nil, c.errf(ctx, method, subject, cpi.VMCreationFailed, retry, cause, format, a...)
	}
	req := vmRequest{spec: spec, nets: map[string]netProps{}}
	if err := cpi.DecodeCloudProperties(spec.CloudProperties, &req.props); err != nil {
		return fail(false, err, "bad vm cloud_properties")
	}
	for _, name := range slices.Sorted(maps.Keys(spec.Networks)) {
		n := spec.Networks[name]
		var np netProps
		if err := cpi.DecodeCloudProperties(n.CloudProperties, &np); err != nil {
			return fail(false, err, "network %q", name)
		}
		switch n.Type {
		case "manual", "", "dynamic":
			if np.NetID == "" {
				return fail(false, nil, "network %q has no net_id in its cloud_properties", name)
			}
		case "vip":
			if n.IP == "" {
				return fail(false, nil, "vip network %q has no ip (the floating IP to associate)", name)
			}
		default:
			return fail(false, nil, "network %q: unknown type %q (want manual, dynamic or vip)", name, n.Type)
		}
		req.nets[name] = np
	}
	if spec.AgentID == "" {
		return fail(false, nil, "no agent id given")
	}
	manual := 0
	for _, n := range spec.Networks {
		if n.Type == "manual" || n.Type == "" {
			manual++
		}
	}
	req.manual = manual
	if manual > 1 && c.cfg.ConfigDrive == "" {
		// Without DHCP the agent can only read its static settings from a config drive.
		return fail(false, nil, "%d manual networks need config_drive (cdrom or disk) in the CPI's config", manual)
	}
	if req.props.InstanceType == "" {
		return fail(false, nil, "vm cloud_properties lack instance_type (the flavor name)")
	}
	if len(req.props.AvailabilityZones) > 0 && req.props.AvailabilityZone != "" {
		return fail(false, nil, "vm cloud_properties set both availability_zone and availability_zones")
	}
	api, err := c.services(ctx)
	if err != nil {
		return fail(false, err, "connect to OpenStack")
	}
	if err := c.resolve(ctx, api, &req); err != nil {
		return fail(false, err, "")
	}

	azs := req.props.AvailabilityZones
	if len(azs) == 0 {
		azs = []string{req.props.AvailabilityZone}
	}
	if az, err := c.diskZone(ctx, api, spec.DiskCIDs); err != nil {
		return fail(false, err, "")
	} else if az != "" {
		// The VM goes where its persistent disks are: Cinder cannot attach across
		// zones.
		if len(azs) > 1 || (azs[0] != "" && azs[0] != az) {
			return fail(false, nil, "the VM's persistent disks are in availability zone %q, but its cloud_properties ask for %q", az, strings.Join(azs, ", "))
		}
		azs = []string{az}
	}
	var lastErr error
	for i, az := range azs {
		vm, nets, retry, err := c.createIn(ctx, api, req, az)
		if err == nil {
			return vm, nets, nil
		}
		lastErr = err
		// Another zone may have room when this one could not place the VM; only
		// when the failed attempt left nothing behind.
		if !retry || i == len(azs)-1 {
			return fail(retry, err, "")
		}
		c.log.Warn("VM creation failed; trying the next availability zone", "agent_id", spec.AgentID, "az", az, "err", err)
	}
	return fail(false, lastErr, "")
}

// diskZone is the availability zone of the disks a VM will get, or "" when there are
// none or zones do not matter (ignore_server_availability_zone).
func (c *CPI) diskZone(ctx context.Context, api *services, disks []cpi.DiskCID) (string, error) {
	if c.cfg.IgnoreServerAvailabilityZone {
		return "", nil
	}
	zone := ""
	for _, d := range disks {
		v, err := volumes.Get(ctx, api.volume, string(d)).Extract()
		if err != nil {
			return "", fmt.Errorf("persistent disk %s: %w", d, apiErr("cinder get volume", err))
		}
		if zone != "" && v.AvailabilityZone != zone {
			return "", fmt.Errorf("the VM's persistent disks are in different availability zones (%s, %s)", zone, v.AvailabilityZone)
		}
		zone = v.AvailabilityZone
	}
	return zone, nil
}

// resolve looks up what the VM refers to: image, flavor, key pair, security groups.
func (c *CPI) resolve(ctx context.Context, api *services, req *vmRequest) error {
	req.imageID = imageID(req.spec.Stemcell)
	img, err := images.Get(ctx, api.image, req.imageID).Extract()
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("stemcell %s: image %s not found in glance", req.spec.Stemcell, req.imageID)
		}
		return fmt.Errorf("stemcell %s: %w", req.spec.Stemcell, apiErr("glance get image", err))
	}
	if img.Status != images.ImageStatusActive {
		return fmt.Errorf("stemcell %s: image %s is %s, not active", req.spec.Stemcell, img.ID, img.Status)
	}

	pages, err := flavors.ListDetail(api.compute, flavors.ListOpts{AccessType: flavors.AllAccess}).AllPages(ctx)
	if err != nil {
		return apiErr("nova list flavors", err)
	}
	all, err := flavors.ExtractFlavors(pages)
	if err != nil {
		return apiErr("nova list flavors", err)
	}
	i := slices.IndexFunc(all, func(f flavors.Flavor) bool { return f.Name == req.props.InstanceType })
	if i < 0 {
		names := make([]string, len(all))
		for j, f := range all {
			names[j] = f.Name
		}
		slices.Sort(names)
		return fmt.Errorf("instance_type %q: no such flavor (there are: %s)", req.props.InstanceType, strings.Join(names, ", "))
	}
	req.flavor = all[i]

	req.keyName = orDefault(req.props.KeyName, c.cfg.DefaultKeyName)
	if req.keyName != "" {
		if _, err := keypairs.Get(ctx, api.compute, req.keyName, nil).Extract(); err != nil {
			if isNotFound(err) {
				return fmt.Errorf("key pair %q not found", req.keyName)
			}
			return apiErr("nova get key pair", err)
		}
	}

	// Security groups: the vm_type's, else the networks', else the defaults.
	want := req.props.SecurityGroups
	if len(want) == 0 {
		for _, name := range slices.Sorted(maps.Keys(req.nets)) {
			for _, g := range req.nets[name].SecurityGroups {
				if !slices.Contains(want, g) {
					want = append(want, g)
				}
			}
		}
	}
	if len(want) == 0 {
		want = c.cfg.DefaultSecurityGroups
	}
	if len(want) > 0 {
		pages, err := groups.List(api.network, groups.ListOpts{}).AllPages(ctx)
		if err != nil {
			return apiErr("neutron list security groups", err)
		}
		have, err := groups.ExtractGroups(pages)
		if err != nil {
			return apiErr("neutron list security groups", err)
		}
		for _, w := range want {
			i := slices.IndexFunc(have, func(g groups.SecGroup) bool { return g.Name == w || g.ID == w })
			if i < 0 {
				return fmt.Errorf("security group %q not found", w)
			}
			req.sgIDs = append(req.sgIDs, have[i].ID)
			req.sgNames = append(req.sgNames, have[i].Name)
		}
	}
	req.bootFromV = c.cfg.BootFromVolume
	if req.props.BootFromVolume != nil {
		req.bootFromV = *req.props.BootFromVolume
	}
	return nil
}

// createIn creates the VM in one availability zone. retry reports that the attempt
// left nothing behind and may be repeated.
func (c *CPI) createIn(ctx context.Context, api *services, req vmRequest, az string) (cpi.VMCID, cpi.Networks, bool, error) {
	spec := req.spec
	name := "vm-" + newID()
	nets := cpi.Networks{}
	var created []string // port ids
	cleanPorts := func() bool {
		ok := true
		for _, id := range created {
			if err := ports.Delete(context.WithoutCancel(ctx), api.network, id).ExtractErr(); err != nil && !isNotFound(err) {
				c.log.Error("could not delete a port of a failed VM", "port", id, "err", describe(err))
				ok = false
			}
		}
		return ok
	}

	useDHCP := c.cfg.useDHCP() && req.manual <= 1
	var serverNets []servers.Network
	for _, netName := range slices.Sorted(maps.Keys(spec.Networks)) {
		n, np := spec.Networks[netName], req.nets[netName]
		switch n.Type {
		case "manual", "":
			if err := c.deleteStalePort(ctx, api, np.NetID, n.IP); err != nil {
				return "", nil, cleanPorts(), fmt.Errorf("network %q: %w", netName, err)
			}
			opts := ports.CreateOpts{NetworkID: np.NetID, Name: portPrefix + spec.AgentID + "-" + netName,
				FixedIPs: []ports.IP{{IPAddress: n.IP}}}
			if len(req.sgIDs) > 0 {
				opts.SecurityGroups = &req.sgIDs
			}
			if req.props.AllowedAddressPairs != "" {
				opts.AllowedAddressPairs = []ports.AddressPair{{IPAddress: req.props.AllowedAddressPairs}}
			}
			p, err := ports.Create(ctx, api.network, opts).Extract()
			if err != nil {
				return "", nil, cleanPorts(), fmt.Errorf("network %q: %w", netName, apiErr("neutron create port for "+n.IP, err))
			}
			created = append(created, p.ID)
			serverNets = append(serverNets, servers.Network{Port: p.ID})
			n.MAC = p.MACAddress
			n.UseDHCP = useDHCP
		case "dynamic":
			serverNets = append(serverNets, servers.Network{UUID: np.NetID})
			n.UseDHCP = true
		}
		nets[netName] = n
	}

	settings := spec.BootstrapSettings()
	settings.Networks = maps.Clone(nets)
	settings.VM.Name = name
	settings.Disks.System = "/dev/sda"
	if req.flavor.Ephemeral > 0 || req.props.EphemeralDisk != nil {
		settings.Disks.Ephemeral = json.RawMessage(`"/dev/sdb"`)
	}
	ud := UserData{AgentSettings: settings}
	ud.Server.Name = name
	userData, err := json.Marshal(ud)
	if err != nil {
		return "", nil, cleanPorts(), fmt.Errorf("encode agent settings: %w", err)
	}

	opts := servers.CreateOpts{
		Name: name, ImageRef: req.imageID, FlavorRef: req.flavor.ID, UserData: userData,
		AvailabilityZone: az, SecurityGroups: req.sgNames, Networks: serverNets,
		Metadata: map[string]string{agentKey: spec.AgentID},
	}
	if len(serverNets) == 0 {
		opts.Networks = "none"
	}
	if c.cfg.ConfigDrive != "" {
		t := true
		opts.ConfigDrive = &t
	}
	if req.bootFromV {
		size := req.flavor.Disk
		if req.props.RootDisk != nil && req.props.RootDisk.Size > 0 {
			size = req.props.RootDisk.Size
		}
		opts.ImageRef = ""
		opts.BlockDevice = append(opts.BlockDevice, servers.BlockDevice{SourceType: servers.SourceImage, UUID: req.imageID,
			DestinationType: servers.DestinationVolume, BootIndex: 0, DeleteOnTermination: true, VolumeSize: size})
	}
	if e := req.props.EphemeralDisk; e != nil {
		if !req.bootFromV {
			opts.BlockDevice = append(opts.BlockDevice, servers.BlockDevice{SourceType: servers.SourceImage, UUID: req.imageID,
				DestinationType: servers.DestinationLocal, BootIndex: 0, DeleteOnTermination: true})
		}
		opts.BlockDevice = append(opts.BlockDevice, servers.BlockDevice{SourceType: servers.SourceBlank,
			DestinationType: servers.DestinationLocal, BootIndex: -1, DeleteOnTermination: true, VolumeSize: e.Size,
			GuestFormat: "ephemeral", VolumeType: e.Type})
	}
	var hintOpts servers.SchedulerHintOptsBuilder
	if req.props.SchedulerHints != nil && req.props.SchedulerHints.Group != "" {
		hintOpts = servers.SchedulerHintOpts{Group: req.props.SchedulerHints.Group}
	}

	var create servers.CreateOptsBuilder = opts
	if req.keyName != "" {
		create = keypairs.CreateOptsExt{CreateOptsBuilder: opts, KeyName: req.keyName}
	}
	srv, err := servers.Create(ctx, api.compute, create, hintOpts).Extract()
	if err != nil {
		status := statusOf(err)
		if status >= 400 && status < 500 {
			// Nova refused: nothing was made.
			return "", nil, cleanPorts() && status != 403 && status != 413, apiErr("nova create server", err)
		}
		// No answer, or a 5xx: the server may exist. Find it by its unique name and
		// delete it, but still say a retry is unsafe: it may yet appear.
		c.deleteByName(ctx, api, name)
		cleanPorts()
		return "", nil, false, apiErr("nova create server", err)
	}
	vm := cpi.VMCID(srv.ID)
	cleanup := func() bool {
		return c.deleteServer(context.WithoutCancel(ctx), api, srv.ID) == nil && cleanPorts()
	}

	err = c.waitFor(ctx, "server "+srv.ID, func(ctx context.Context) (bool, string, error) {
		s, err := servers.Get(ctx, api.compute, srv.ID).Extract()
		if err != nil {
			return false, "", apiErr("nova get server", err)
		}
		switch s.Status {
		case "ACTIVE":
			return true, "", nil
		case "ERROR":
			return false, "", fmt.Errorf("server %s went to ERROR: %s", srv.ID, orDefault(s.Fault.Message, "nova gave no reason"))
		}
		return false, s.Status, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			cleanup()
			return "", nil, false, err
		}
		return "", nil, cleanup(), err
	}

	// Dynamic addresses, from the ports Nova made.
	attached, err := listPorts(ctx, api, srv.ID)
	if err != nil {
		return "", nil, cleanup(), err
	}
	var primaryPort string
	for _, netName := range slices.Sorted(maps.Keys(nets)) {
		n, np := nets[netName], req.nets[netName]
		if n.Type == "vip" {
			continue
		}
		for _, p := range attached {
			if p.NetworkID != np.NetID || len(p.FixedIPs) == 0 {
				continue
			}
			if n.Type == "dynamic" {
				n.IP, n.MAC = p.FixedIPs[0].IPAddress, p.MACAddress
			}
			if primaryPort == "" || slices.Contains(n.Default, "gateway") {
				primaryPort = p.ID
			}
			break
		}
		if n.IP == "" {
			return "", nil, cleanup(), fmt.Errorf("network %q: server %s has no address on network %s", netName, srv.ID, np.NetID)
		}
		nets[netName] = n
	}
	for _, netName := range slices.Sorted(maps.Keys(nets)) {
		n := nets[netName]
		if n.Type != "vip" {
			continue
		}
		if err := c.associateFloatingIP(ctx, api, n.IP, primaryPort); err != nil {
			return "", nil, cleanup(), fmt.Errorf("vip network %q: %w", netName, err)
		}
	}
	c.log.Info("created VM", "vm_cid", vm, "agent_id", spec.AgentID, "instance", cpi.InstanceFrom(ctx), "az", az)
	return vm, nets, false, nil
}

// deleteStalePort removes an unbound port of ours holding ip: what a create_vm
// interrupted between making the port and the server leaves, and what would
// otherwise keep the address from the VM that now asks for it.
func (c *CPI) deleteStalePort(ctx context.Context, api *services, netID, ip string) error {
	if ip == "" {
		return nil
	}
	pages, err := ports.List(api.network, ports.ListOpts{NetworkID: netID, FixedIPs: []ports.FixedIPOpts{{IPAddress: ip}}}).AllPages(ctx)
	if err != nil {
		return apiErr("neutron list ports", err)
	}
	found, err := ports.ExtractPorts(pages)
	if err != nil {
		return apiErr("neutron list ports", err)
	}
	for _, p := range found {
		if p.DeviceID != "" || !strings.HasPrefix(p.Name, portPrefix) {
			continue // in use, or not ours: the create will say so
		}
		c.log.Info("deleting a stale port left by an interrupted create_vm", "port", p.ID, "ip", ip)
		if err := ports.Delete(ctx, api.network, p.ID).ExtractErr(); err != nil && !isNotFound(err) {
			return apiErr("neutron delete stale port "+p.ID, err)
		}
	}
	return nil
}

func listPorts(ctx context.Context, api *services, serverID string) ([]ports.Port, error) {
	pages, err := ports.List(api.network, ports.ListOpts{DeviceID: serverID}).AllPages(ctx)
	if err != nil {
		return nil, apiErr("neutron list ports", err)
	}
	ps, err := ports.ExtractPorts(pages)
	if err != nil {
		return nil, apiErr("neutron list ports", err)
	}
	return ps, nil
}

func (c *CPI) associateFloatingIP(ctx context.Context, api *services, ip, port string) error {
	if port == "" {
		return fmt.Errorf("floating IP %s: the VM has no port to associate it with", ip)
	}
	pages, err := floatingips.List(api.network, floatingips.ListOpts{FloatingIP: ip}).AllPages(ctx)
	if err != nil {
		return apiErr("neutron list floating ips", err)
	}
	fips, err := floatingips.ExtractFloatingIPs(pages)
	if err != nil {
		return apiErr("neutron list floating ips", err)
	}
	if len(fips) == 0 {
		return fmt.Errorf("floating IP %s is not allocated to the project", ip)
	}
	if _, err := floatingips.Update(ctx, api.network, fips[0].ID, floatingips.UpdateOpts{PortID: &port}).Extract(); err != nil {
		return apiErr("neutron associate floating ip "+ip, err)
	}
	return nil
}

// deleteByName deletes the servers named name (after a create whose answer was lost).
func (c *CPI) deleteByName(ctx context.Context, api *services, name string) {
	ctx = context.WithoutCancel(ctx)
	pages, err := servers.List(api.compute, servers.ListOpts{Name: "^" + name + "$"}).AllPages(ctx)
	if err != nil {
		c.log.Error("could not look for a server whose create failed", "name", name, "err", describe(err))
		return
	}
	found, _ := servers.ExtractServers(pages)
	for _, s := range found {
		if s.Name == name {
			if err := c.deleteServer(ctx, api, s.ID); err != nil {
				c.log.Error("could not delete a server whose create failed", "server", s.ID, "err", err)
			}
		}
	}
}

// deleteServer deletes the server and the ports the CPI made for it, and waits until
// Nova no longer has it. A server already gone is not an error.
func (c *CPI) deleteServer(ctx context.Context, api *services, id string) error {
	own, err := listPorts(ctx, api, id)
	if err != nil {
		return err
	}
	if err := servers.Delete(ctx, api.compute, id).ExtractErr(); err != nil && !isNotFound(err) {
		return apiErr("nova delete server", err)
	}
	err = c.waitFor(ctx, "deletion of server "+id, func(ctx context.Context) (bool, string, error) {
		s, err := servers.Get(ctx, api.compute, id).Extract()
		if isNotFound(err) {
			return true, "", nil
		}
		if err != nil {
			return false, "", apiErr("nova get server", err)
		}
		switch s.Status {
		case "DELETED", "SOFT_DELETED":
			return true, "", nil
		}
		return false, s.Status, nil
	})
	if err != nil {
		return err
	}
	for _, p := range own {
		if !strings.HasPrefix(p.Name, portPrefix) {
			continue // Nova's own, gone with the server
		}
		if err := ports.Delete(ctx, api.network, p.ID).ExtractErr(); err != nil && !isNotFound(err) {
			return apiErr("neutron delete port "+p.ID, err)
		}
	}
	return nil
}

// DeleteVM implements cpi.CPI. Attached volumes survive: Nova detaches them.
func (c *CPI) DeleteVM(ctx context.Context, vm cpi.VMCID) error {
	const method = "delete_vm"
	api, err := c.services(ctx)
	if err != nil {
		return c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "connect to OpenStack")
	}
	if _, err := servers.Get(ctx, api.compute, string(vm)).Extract(); isNotFound(err) {
		return nil
	} else if err != nil {
		return c.errf(ctx, method, string(vm), cpi.CloudError, false, apiErr("nova get server", err), "")
	}
	if err := c.deleteServer(ctx, api, string(vm)); err != nil {
		return c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "")
	}
	c.log.Info("deleted VM", "vm_cid", vm, "instance", cpi.InstanceFrom(ctx))
	return nil
}

// getServer returns the server, or a VMNotFound error for method.
func (c *CPI) getServer(ctx context.Context, api *services, method string, vm cpi.VMCID) (*servers.Server, error) {
	s, err := servers.Get(ctx, api.compute, string(vm)).Extract()
	if isNotFound(err) || (err == nil && (s.Status == "DELETED" || s.Status == "SOFT_DELETED")) {
		return nil, c.errf(ctx, method, string(vm), cpi.VMNotFound, false, nil, "VM %s not found", vm)
	}
	if err != nil {
		return nil, c.errf(ctx, method, string(vm), cpi.CloudError, false, apiErr("nova get server", err), "")
	}
	return s, nil
}

// HasVM implements cpi.CPI.
func (c *CPI) HasVM(ctx context.Context, vm cpi.VMCID) (bool, error) {
	const method = "has_vm"
	api, err := c.services(ctx)
	if err != nil {
		return false, c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "connect to OpenStack")
	}
	_, err = c.getServer(ctx, api, method, vm)
	if errors.Is(err, cpi.ErrVMNotFound) {
		return false, nil
	}
	return err == nil, err
}

// RebootVM implements cpi.Rebooter: a soft reboot, waited for.
func (c *CPI) RebootVM(ctx context.Context, vm cpi.VMCID) error {
	const method = "reboot_vm"
	api, err := c.services(ctx)
	if err != nil {
		return c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "connect to OpenStack")
	}
	if _, err := c.getServer(ctx, api, method, vm); err != nil {
		return err
	}
	if err := servers.Reboot(ctx, api.compute, string(vm), servers.RebootOpts{Type: servers.SoftReboot}).ExtractErr(); err != nil {
		return c.errf(ctx, method, string(vm), cpi.CloudError, false, apiErr("nova reboot server", err), "")
	}
	err = c.waitFor(ctx, "reboot of server "+string(vm), func(ctx context.Context) (bool, string, error) {
		s, err := servers.Get(ctx, api.compute, string(vm)).Extract()
		if err != nil {
			return false, "", apiErr("nova get server", err)
		}
		if s.Status == "ERROR" {
			return false, "", fmt.Errorf("server went to ERROR while rebooting: %s", s.Fault.Message)
		}
		return s.Status == "ACTIVE", s.Status, nil
	})
	if err != nil {
		return c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "")
	}
	return nil
}

// SetVMMetadata implements cpi.VMMetadataSetter: the keys are merged into the
// server's metadata, and with human_readable_vm_names the server takes the
// instance's name.
func (c *CPI) SetVMMetadata(ctx context.Context, vm cpi.VMCID, md cpi.Metadata) error {
	const method = "set_vm_metadata"
	api, err := c.services(ctx)
	if err != nil {
		return c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "connect to OpenStack")
	}
	if _, err := c.getServer(ctx, api, method, vm); err != nil {
		return err
	}
	m := make(map[string]string, len(md))
	for k, v := range md {
		if k == agentKey {
			continue // ours; the director cannot change which agent a VM runs
		}
		m[k] = clip255(v)
	}
	if _, err := servers.UpdateMetadata(ctx, api.compute, string(vm), servers.MetadataOpts(m)).Extract(); err != nil {
		return c.errf(ctx, method, string(vm), cpi.CloudError, false, apiErr("nova update server metadata", err), "")
	}
	if name := md["name"]; c.cfg.HumanReadableVMNames && name != "" {
		if _, err := servers.Update(ctx, api.compute, string(vm), servers.UpdateOpts{Name: strings.ReplaceAll(name, "/", "_")}).Extract(); err != nil {
			return c.errf(ctx, method, string(vm), cpi.CloudError, false, apiErr("nova rename server", err), "")
		}
	}
	return nil
}

// clip255 keeps a metadata value within Nova's and Cinder's 255-character limit.
func clip255(s string) string {
	if len(s) > 255 {
		return s[:255]
	}
	return s
}

// ListVMs implements cpi.VMLister: the servers whose metadata names an agent.
func (c *CPI) ListVMs(ctx context.Context) ([]cpi.VMInfo, error) {
	const method = "list_vms"
	api, err := c.services(ctx)
	if err != nil {
		return nil, c.errf(ctx, method, "", cpi.CloudError, false, err, "connect to OpenStack")
	}
	pages, err := servers.List(api.compute, servers.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, c.errf(ctx, method, "", cpi.CloudError, false, apiErr("nova list servers", err), "")
	}
	all, err := servers.ExtractServers(pages)
	if err != nil {
		return nil, c.errf(ctx, method, "", cpi.CloudError, false, apiErr("nova list servers", err), "")
	}
	var out []cpi.VMInfo
	for _, s := range all {
		agent, ok := s.Metadata[agentKey]
		if !ok || s.Status == "DELETED" || s.Status == "SOFT_DELETED" {
			continue
		}
		md := cpi.Metadata{}
		for k, v := range s.Metadata {
			if k != agentKey {
				md[k] = v
			}
		}
		out = append(out, cpi.VMInfo{CID: cpi.VMCID(s.ID), AgentID: agent, Metadata: md})
	}
	return out, nil
}

// CalculateVMCloudProperties implements cpi.VMPropertiesCalculator: the smallest
// flavor with the CPUs and RAM asked for, plus an ephemeral_disk when the flavor's
// own ephemeral disk is smaller than asked.
func (c *CPI) CalculateVMCloudProperties(ctx context.Context, r cpi.VMResources) (json.RawMessage, error) {
	const method = "calculate_vm_cloud_properties"
	subject := fmt.Sprintf("cpu %d, ram %d MiB, ephemeral disk %d MiB", r.CPU, r.RAM, r.EphemeralDiskSize)
	api, err := c.services(ctx)
	if err != nil {
		return nil, c.errf(ctx, method, subject, cpi.CloudError, false, err, "connect to OpenStack")
	}
	pages, err := flavors.ListDetail(api.compute, flavors.ListOpts{AccessType: flavors.AllAccess}).AllPages(ctx)
	if err == nil {
		var all []flavors.Flavor
		if all, err = flavors.ExtractFlavors(pages); err == nil {
			fits := slices.DeleteFunc(all, func(f flavors.Flavor) bool { return f.VCPUs < r.CPU || f.RAM < r.RAM })
			if len(fits) == 0 {
				return nil, c.errf(ctx, method, subject, cpi.CloudError, false, nil, "no flavor has %d CPUs and %d MiB of RAM", r.CPU, r.RAM)
			}
			best := slices.MinFunc(fits, func(a, b flavors.Flavor) int {
				return cmp.Or(cmp.Compare(a.VCPUs, b.VCPUs), cmp.Compare(a.RAM, b.RAM), cmp.Compare(a.Disk+a.Ephemeral, b.Disk+b.Ephemeral), strings.Compare(a.Name, b.Name))
			})
			props := vmProps{InstanceType: best.Name}
			if need := gib(r.EphemeralDiskSize); need > best.Ephemeral {
				props.EphemeralDisk = &ephemeralDisk{Size: need}
			}
			b, err := json.Marshal(props)
			return b, err
		}
	}
	return nil, c.errf(ctx, method, subject, cpi.CloudError, false, apiErr("nova list flavors", err), "")
}
