package openstack

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"

	"github.com/bosun-gitops/bosun/cpi"
)

// gib rounds MiB up to whole GiB, Cinder's unit.
func gib(mib int) int { return (mib + 1023) / 1024 }

// CreateDisk implements cpi.CPI: a Cinder volume in the VM's availability zone
// (unless ignore_server_availability_zone), waited for until available.
func (c *CPI) CreateDisk(ctx context.Context, sizeMiB int, props json.RawMessage, vm cpi.VMCID) (cpi.DiskCID, error) {
	const method = "create_disk"
	subject := fmt.Sprintf("%d MiB", sizeMiB)
	var p diskProps
	if err := cpi.DecodeCloudProperties(props, &p); err != nil {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, err, "bad disk cloud_properties")
	}
	if sizeMiB <= 0 {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, nil, "disk size must be positive")
	}
	api, err := c.services(ctx)
	if err != nil {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, err, "connect to OpenStack")
	}
	opts := volumes.CreateOpts{Size: gib(sizeMiB), Name: "volume-" + newID(), VolumeType: orDefault(p.Type, c.cfg.DefaultVolumeType)}
	if vm != "" && !c.cfg.IgnoreServerAvailabilityZone {
		s, err := c.getServer(ctx, api, method, vm)
		if err != nil {
			return "", err
		}
		opts.AvailabilityZone = s.AvailabilityZone
	}
	v, err := volumes.Create(ctx, api.volume, opts, nil).Extract()
	if err != nil {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, apiErr("cinder create volume", err), "")
	}
	if err := c.waitVolume(ctx, api, v.ID, "available", 0); err != nil {
		if derr := volumes.Delete(context.WithoutCancel(ctx), api.volume, v.ID, nil).ExtractErr(); derr != nil && !isNotFound(derr) {
			c.log.Error("could not delete a volume that failed to create", "volume", v.ID, "err", describe(derr))
		}
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, err, "")
	}
	c.log.Info("created disk", "disk_cid", v.ID, "size_gib", opts.Size, "az", opts.AvailabilityZone)
	return cpi.DiskCID(v.ID), nil
}

// waitVolume waits for the volume to reach status (and, when size > 0, that size).
func (c *CPI) waitVolume(ctx context.Context, api *services, id, status string, size int) error {
	return c.waitFor(ctx, "volume "+id, func(ctx context.Context) (bool, string, error) {
		v, err := volumes.Get(ctx, api.volume, id).Extract()
		if err != nil {
			return false, "", apiErr("cinder get volume", err)
		}
		if strings.HasPrefix(v.Status, "error") {
			return false, "", fmt.Errorf("volume %s went to %s", id, v.Status)
		}
		return v.Status == status && (size == 0 || v.Size == size), v.Status, nil
	})
}

// getVolume returns the volume, or DiskNotFound for method.
func (c *CPI) getVolume(ctx context.Context, api *services, method string, disk cpi.DiskCID) (*volumes.Volume, error) {
	v, err := volumes.Get(ctx, api.volume, string(disk)).Extract()
	if isNotFound(err) || (err == nil && (v.Status == "deleting" || v.Status == "deleted")) {
		return nil, c.errf(ctx, method, string(disk), cpi.DiskNotFound, false, nil, "disk %s not found", disk)
	}
	if err != nil {
		return nil, c.errf(ctx, method, string(disk), cpi.CloudError, false, apiErr("cinder get volume", err), "")
	}
	return v, nil
}

// DeleteDisk implements cpi.CPI. A volume already gone is not an error; an attached
// one is refused.
func (c *CPI) DeleteDisk(ctx context.Context, disk cpi.DiskCID) error {
	const method = "delete_disk"
	api, err := c.services(ctx)
	if err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "connect to OpenStack")
	}
	v, err := volumes.Get(ctx, api.volume, string(disk)).Extract()
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, apiErr("cinder get volume", err), "")
	}
	if len(v.Attachments) > 0 {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, nil, "disk is attached to VM %s; detach it first", v.Attachments[0].ServerID)
	}
	if v.Status != "deleting" {
		if err := volumes.Delete(ctx, api.volume, string(disk), nil).ExtractErr(); err != nil && !isNotFound(err) {
			return c.errf(ctx, method, string(disk), cpi.CloudError, false, apiErr("cinder delete volume", err), "")
		}
	}
	err = c.waitFor(ctx, "deletion of volume "+string(disk), func(ctx context.Context) (bool, string, error) {
		v, err := volumes.Get(ctx, api.volume, string(disk)).Extract()
		if isNotFound(err) {
			return true, "", nil
		}
		if err != nil {
			return false, "", apiErr("cinder get volume", err)
		}
		if v.Status == "error_deleting" {
			return false, "", fmt.Errorf("cinder could not delete volume %s (error_deleting)", disk)
		}
		return false, v.Status, nil
	})
	if err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	c.log.Info("deleted disk", "disk_cid", disk)
	return nil
}

// HasDisk implements cpi.CPI.
func (c *CPI) HasDisk(ctx context.Context, disk cpi.DiskCID) (bool, error) {
	const method = "has_disk"
	api, err := c.services(ctx)
	if err != nil {
		return false, c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "connect to OpenStack")
	}
	if _, err := c.getVolume(ctx, api, method, disk); err != nil {
		if cpi.KindOf(err) == cpi.DiskNotFound {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// AttachDisk implements cpi.CPI. The device asked for follows BOSH: from /dev/sdb,
// skipping the flavor's ephemeral and swap disks, a config drive on a disk, and any
// letter already in use; the hint is the device Nova reports, and the volume id the
// agent finds it by under /dev/disk/by-id.
func (c *CPI) AttachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) (cpi.DiskHint, error) {
	const method = "attach_disk"
	api, err := c.services(ctx)
	if err != nil {
		return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "connect to OpenStack")
	}
	s, err := c.getServer(ctx, api, method, vm)
	if err != nil {
		return cpi.DiskHint{}, err
	}
	v, err := c.getVolume(ctx, api, method, disk)
	if err != nil {
		return cpi.DiskHint{}, err
	}
	for _, a := range v.Attachments {
		if a.ServerID == s.ID {
			// Attached, or still attaching after an interrupted call: done once in-use.
			if err := c.waitVolume(ctx, api, v.ID, "in-use", 0); err != nil {
				return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
			}
			return cpi.DiskHint{Path: a.Device, VolumeID: v.ID}, nil
		}
		return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CloudError, false, nil, "disk is attached to another VM, %s", a.ServerID)
	}
	attached, err := c.attachments(ctx, api, s.ID)
	if err != nil {
		return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	first := byte('b')
	if id, _ := s.Flavor["id"].(string); id != "" {
		if f, err := flavors.Get(ctx, api.compute, id).Extract(); err == nil {
			if f.Ephemeral > 0 {
				first++
			}
			if f.Swap > 0 {
				first++
			}
		}
	}
	if c.cfg.ConfigDrive == "disk" {
		first++
	}
	used := map[byte]bool{}
	for _, a := range attached {
		dev := strings.TrimPrefix(a.Device, "/dev/")
		for _, p := range []string{"xvd", "sd", "vd"} {
			if rest, ok := strings.CutPrefix(dev, p); ok && len(rest) == 1 {
				used[rest[0]] = true
			}
		}
	}
	letter := first
	for used[letter] && letter < 'z' {
		letter++
	}
	if used[letter] {
		return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CloudError, false, nil, "VM %s has no free device letter", vm)
	}
	a, err := volumeattach.Create(ctx, api.compute, s.ID, volumeattach.CreateOpts{VolumeID: v.ID, Device: "/dev/sd" + string(letter)}).Extract()
	if err != nil {
		return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CloudError, false, apiErr("nova attach volume", err), "")
	}
	if err := c.waitVolume(ctx, api, v.ID, "in-use", 0); err != nil {
		return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	c.log.Info("attached disk", "disk_cid", disk, "vm_cid", vm, "device", a.Device)
	return cpi.DiskHint{Path: a.Device, VolumeID: v.ID}, nil
}

func (c *CPI) attachments(ctx context.Context, api *services, serverID string) ([]volumeattach.VolumeAttachment, error) {
	pages, err := volumeattach.List(api.compute, serverID).AllPages(ctx)
	if err != nil {
		return nil, apiErr("nova list volume attachments", err)
	}
	as, err := volumeattach.ExtractVolumeAttachments(pages)
	if err != nil {
		return nil, apiErr("nova list volume attachments", err)
	}
	return as, nil
}

func isRootDevice(dev string) bool {
	switch dev {
	case "/dev/vda", "/dev/sda", "/dev/xvda":
		return true
	}
	return false
}

// DetachDisk implements cpi.CPI, waiting until the volume is available again.
func (c *CPI) DetachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) error {
	const method = "detach_disk"
	api, err := c.services(ctx)
	if err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "connect to OpenStack")
	}
	s, err := c.getServer(ctx, api, method, vm)
	if err != nil {
		return err
	}
	attached, err := c.attachments(ctx, api, s.ID)
	if err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	if !slices.ContainsFunc(attached, func(a volumeattach.VolumeAttachment) bool { return a.VolumeID == string(disk) }) {
		return c.errf(ctx, method, string(disk), cpi.DiskNotAttached, false, nil, "disk %s is not attached to VM %s", disk, vm)
	}
	if err := volumeattach.Delete(ctx, api.compute, s.ID, string(disk)).ExtractErr(); err != nil && !isNotFound(err) {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, apiErr("nova detach volume", err), "")
	}
	if err := c.waitVolume(ctx, api, string(disk), "available", 0); err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	c.log.Info("detached disk", "disk_cid", disk, "vm_cid", vm)
	return nil
}

// GetDisks implements cpi.DiskLister.
func (c *CPI) GetDisks(ctx context.Context, vm cpi.VMCID) ([]cpi.DiskCID, error) {
	const method = "get_disks"
	api, err := c.services(ctx)
	if err != nil {
		return nil, c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "connect to OpenStack")
	}
	if _, err := c.getServer(ctx, api, method, vm); err != nil {
		return nil, err
	}
	attached, err := c.attachments(ctx, api, string(vm))
	if err != nil {
		return nil, c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "")
	}
	out := []cpi.DiskCID{}
	for _, a := range attached {
		if isRootDevice(a.Device) {
			continue // a boot volume is the VM's, not a persistent disk
		}
		out = append(out, cpi.DiskCID(a.VolumeID))
	}
	return out, nil
}

// ResizeDisk implements cpi.DiskResizer: a detached volume grows in place; the
// same size is a no-op, a smaller one an error.
func (c *CPI) ResizeDisk(ctx context.Context, disk cpi.DiskCID, newSizeMiB int) error {
	const method = "resize_disk"
	api, err := c.services(ctx)
	if err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "connect to OpenStack")
	}
	v, err := c.getVolume(ctx, api, method, disk)
	if err != nil {
		return err
	}
	size := gib(newSizeMiB)
	switch {
	case size == v.Size:
		return nil
	case size < v.Size:
		return c.errf(ctx, method, string(disk), cpi.NotSupported, false, nil, "cannot shrink a volume from %d GiB to %d GiB", v.Size, size)
	case len(v.Attachments) > 0:
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, nil, "disk is attached to VM %s; detach it before resizing", v.Attachments[0].ServerID)
	}
	if err := volumes.ExtendSize(ctx, api.volume, v.ID, volumes.ExtendSizeOpts{NewSize: size}).ExtractErr(); err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, apiErr("cinder extend volume", err), "")
	}
	if err := c.waitVolume(ctx, api, v.ID, "available", size); err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	c.log.Info("resized disk", "disk_cid", disk, "size_gib", size)
	return nil
}

// SetDiskMetadata implements cpi.DiskMetadataSetter.
func (c *CPI) SetDiskMetadata(ctx context.Context, disk cpi.DiskCID, md cpi.Metadata) error {
	const method = "set_disk_metadata"
	api, err := c.services(ctx)
	if err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "connect to OpenStack")
	}
	if _, err := c.getVolume(ctx, api, method, disk); err != nil {
		return err
	}
	m := make(map[string]string, len(md))
	for k, v := range md {
		m[k] = clip255(v)
	}
	if _, err := volumes.Update(ctx, api.volume, string(disk), volumes.UpdateOpts{Metadata: m}).Extract(); err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, apiErr("cinder update volume metadata", err), "")
	}
	return nil
}

// SnapshotDisk implements cpi.Snapshotter: a forced snapshot (the disk may be
// attached) carrying the metadata, waited for until available.
func (c *CPI) SnapshotDisk(ctx context.Context, disk cpi.DiskCID, md cpi.Metadata) (cpi.SnapshotCID, error) {
	const method = "snapshot_disk"
	api, err := c.services(ctx)
	if err != nil {
		return "", c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "connect to OpenStack")
	}
	if _, err := c.getVolume(ctx, api, method, disk); err != nil {
		return "", err
	}
	m := make(map[string]string, len(md))
	for k, v := range md {
		m[k] = clip255(v)
	}
	desc := strings.Trim(strings.Join([]string{md["deployment"], md["instance_group"], md["index"]}, "/"), "/")
	s, err := snapshots.Create(ctx, api.volume, snapshots.CreateOpts{VolumeID: string(disk), Force: true,
		Name: "snapshot-" + newID(), Description: desc, Metadata: m}).Extract()
	if err != nil {
		return "", c.errf(ctx, method, string(disk), cpi.CloudError, false, apiErr("cinder create snapshot", err), "")
	}
	err = c.waitFor(ctx, "snapshot "+s.ID, func(ctx context.Context) (bool, string, error) {
		got, err := snapshots.Get(ctx, api.volume, s.ID).Extract()
		if err != nil {
			return false, "", apiErr("cinder get snapshot", err)
		}
		if strings.HasPrefix(got.Status, "error") {
			return false, "", fmt.Errorf("snapshot %s went to %s", s.ID, got.Status)
		}
		return got.Status == "available", got.Status, nil
	})
	if err != nil {
		return "", c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	return cpi.SnapshotCID(s.ID), nil
}

// DeleteSnapshot implements cpi.Snapshotter; a snapshot already gone is not an error.
func (c *CPI) DeleteSnapshot(ctx context.Context, snap cpi.SnapshotCID) error {
	const method = "delete_snapshot"
	api, err := c.services(ctx)
	if err != nil {
		return c.errf(ctx, method, string(snap), cpi.CloudError, false, err, "connect to OpenStack")
	}
	if err := snapshots.Delete(ctx, api.volume, string(snap)).ExtractErr(); err != nil {
		if isNotFound(err) {
			return nil
		}
		return c.errf(ctx, method, string(snap), cpi.CloudError, false, apiErr("cinder delete snapshot", err), "")
	}
	err = c.waitFor(ctx, "deletion of snapshot "+string(snap), func(ctx context.Context) (bool, string, error) {
		got, err := snapshots.Get(ctx, api.volume, string(snap)).Extract()
		if isNotFound(err) {
			return true, "", nil
		}
		if err != nil {
			return false, "", apiErr("cinder get snapshot", err)
		}
		if got.Status == "error_deleting" {
			return false, "", fmt.Errorf("cinder could not delete snapshot %s (error_deleting)", snap)
		}
		return false, got.Status, nil
	})
	if err != nil {
		return c.errf(ctx, method, string(snap), cpi.CloudError, false, err, "")
	}
	return nil
}
