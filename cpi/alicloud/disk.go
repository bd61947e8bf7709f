package alicloud

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"

	"github.com/bosun-gitops/bosun/cpi"
)

// CreateDisk implements cpi.CPI: a cloud disk in the VM's zone (else the
// configured availability_zone), waited for until Available.
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
	if p.Size != 0 {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, nil, "disk_type cloud_properties take no size: the disk_size is the size")
	}
	if p.DeleteWithInstance != nil && *p.DeleteWithInstance {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, nil, "delete_with_instance: a persistent disk outlives its VM")
	}
	for k := range p.Tags {
		if err := checkTagKey(k); err != nil {
			return "", c.errf(ctx, method, subject, cpi.CloudError, false, err, "bad disk cloud_properties")
		}
	}
	zone := c.cfg.AvailabilityZone
	if vm != "" {
		inst, err := c.getInstance(ctx, method, vm)
		if err != nil {
			return "", err
		}
		zone = inst.ZoneId
	}
	if zone == "" {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, nil, "no zone: give a VM or set availability_zone in the CPI's config")
	}
	category := cmp.Or(p.Category, "cloud_efficiency")
	r := ecs.CreateCreateDiskRequest()
	r.ClientToken = newID()
	r.ZoneId = zone
	r.DiskCategory = category
	r.PerformanceLevel = p.PerformanceLevel
	r.Size = requests.NewInteger(max(gib(sizeMiB), minDiskGiB(category)))
	r.DiskName = "bosun-disk-" + r.ClientToken[:12]
	if c.encrypted(p.Encrypted) {
		r.Encrypted = requests.NewBoolean(true)
		r.KMSKeyId = cmp.Or(p.KMSKeyID, c.cfg.KMSKeyID)
	}
	if len(p.Tags) > 0 {
		var tags []ecs.CreateDiskTag
		for _, k := range slices.Sorted(maps.Keys(p.Tags)) {
			tags = append(tags, ecs.CreateDiskTag{Key: k, Value: clipTag(p.Tags[k])})
		}
		r.Tag = &tags
	}
	resp := ecs.CreateCreateDiskResponse()
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, resp); err != nil {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, err, "")
	}
	if err := c.waitDisk(ctx, resp.DiskId, "Available", 0); err != nil {
		if derr := c.deleteDisk(context.WithoutCancel(ctx), resp.DiskId); derr != nil {
			c.log.Error("could not delete a disk that failed to create", "disk_cid", resp.DiskId, "err", derr)
		}
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, err, "")
	}
	c.log.Info("created disk", "disk_cid", resp.DiskId, "size_gib", gib(sizeMiB), "zone", zone)
	return cpi.DiskCID(resp.DiskId), nil
}

// describeDisk returns the disk, or nil when ECS has none by that id.
func (c *CPI) describeDisk(ctx context.Context, id cpi.DiskCID) (*ecs.Disk, error) {
	r := ecs.CreateDescribeDisksRequest()
	ids, _ := json.Marshal([]string{string(id)})
	r.DiskIds = string(ids)
	resp := ecs.CreateDescribeDisksResponse()
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, resp); err != nil {
		if codeIs(err, "InvalidDiskId.NotFound", "InvalidDiskIds.Malformed", "InvalidDiskIds.ValueNotSupported") {
			return nil, nil
		}
		return nil, err
	}
	for i := range resp.Disks.Disk {
		if resp.Disks.Disk[i].DiskId == string(id) {
			return &resp.Disks.Disk[i], nil
		}
	}
	return nil, nil
}

// waitDisk waits for the disk to reach status (and, when size > 0, that size).
func (c *CPI) waitDisk(ctx context.Context, id, status string, size int) error {
	return c.waitFor(ctx, "disk "+id, func(ctx context.Context) (bool, string, error) {
		d, err := c.describeDisk(ctx, cpi.DiskCID(id))
		if err != nil {
			return false, "", err
		}
		if d == nil {
			return false, "", fmt.Errorf("disk %s vanished while waiting for it to be %s", id, status)
		}
		return d.Status == status && (size == 0 || d.Size == size), d.Status, nil
	})
}

// getDisk returns the disk, or DiskNotFound for method.
func (c *CPI) getDisk(ctx context.Context, method string, disk cpi.DiskCID) (*ecs.Disk, error) {
	d, err := c.describeDisk(ctx, disk)
	if err != nil {
		return nil, c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	if d == nil {
		return nil, c.errf(ctx, method, string(disk), cpi.DiskNotFound, false, nil, "disk %s not found", disk)
	}
	return d, nil
}

// deleteDisk deletes the disk and waits until it is gone; gone already is fine.
func (c *CPI) deleteDisk(ctx context.Context, id string) error {
	r := ecs.CreateDeleteDiskRequest()
	r.DiskId = id
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, ecs.CreateDeleteDiskResponse()); err != nil && !codeIs(err, "InvalidDiskId.NotFound") {
		return err
	}
	return c.waitFor(ctx, "deletion of disk "+id, func(ctx context.Context) (bool, string, error) {
		d, err := c.describeDisk(ctx, cpi.DiskCID(id))
		if err != nil || d == nil {
			return err == nil, "", err
		}
		return false, d.Status, nil
	})
}

// DeleteDisk implements cpi.CPI. A disk already gone is not an error; an attached
// one is refused.
func (c *CPI) DeleteDisk(ctx context.Context, disk cpi.DiskCID) error {
	const method = "delete_disk"
	d, err := c.describeDisk(ctx, disk)
	if err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	if d == nil {
		return nil
	}
	if d.InstanceId != "" {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, nil, "disk is attached to VM %s; detach it first", d.InstanceId)
	}
	if err := c.deleteDisk(ctx, string(disk)); err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	c.log.Info("deleted disk", "disk_cid", disk)
	return nil
}

// HasDisk implements cpi.CPI.
func (c *CPI) HasDisk(ctx context.Context, disk cpi.DiskCID) (bool, error) {
	d, err := c.describeDisk(ctx, disk)
	if err != nil {
		return false, c.errf(ctx, "has_disk", string(disk), cpi.CloudError, false, err, "")
	}
	return d != nil, nil
}

// AttachDisk implements cpi.CPI. The hint is the device the agent finds the disk
// by: on instance types that need NVMe, its /dev/disk/by-id name; else the device
// ECS reports, with the xvd prefix the stemcell maps to vd.
func (c *CPI) AttachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) (cpi.DiskHint, error) {
	const method = "attach_disk"
	inst, err := c.getInstance(ctx, method, vm)
	if err != nil {
		return cpi.DiskHint{}, err
	}
	d, err := c.getDisk(ctx, method, disk)
	if err != nil {
		return cpi.DiskHint{}, err
	}
	switch d.InstanceId {
	case "":
		r := ecs.CreateAttachDiskRequest()
		r.InstanceId, r.DiskId = string(vm), string(disk)
		if err := c.do(ctx, call{ep: c.ecs}, r, ecs.CreateAttachDiskResponse()); err != nil {
			return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
		}
	case string(vm):
		// Attached, or still attaching after an interrupted call: done once In_use.
	default:
		return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CloudError, false, nil, "disk is attached to another VM, %s", d.InstanceId)
	}
	if err := c.waitDisk(ctx, string(disk), "In_use", 0); err != nil {
		return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	d, err = c.getDisk(ctx, method, disk)
	if err != nil {
		return cpi.DiskHint{}, err
	}
	nvme, err := c.needsNVMe(ctx, inst.InstanceType)
	if err != nil {
		return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	hint := cpi.DiskHint{VolumeID: string(disk), Path: devicePath(d.Device)}
	if nvme {
		hint.Path = "/dev/disk/by-id/nvme-Alibaba_Cloud_Elastic_Block_Storage_" + strings.TrimPrefix(string(disk), "d-")
	}
	if hint.Path == "" {
		return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CloudError, false, nil, "ECS reports no device for disk %s on %s", disk, vm)
	}
	c.log.Info("attached disk", "disk_cid", disk, "vm_cid", vm, "device", hint.Path)
	return hint, nil
}

// devicePath maps ECS's /dev/xvdX to the /dev/vdX the guest sees for cloud disks.
func devicePath(dev string) string {
	if rest, ok := strings.CutPrefix(dev, "/dev/xvd"); ok {
		return "/dev/vd" + rest
	}
	return dev
}

// needsNVMe reports whether the instance type attaches disks as NVMe devices.
func (c *CPI) needsNVMe(ctx context.Context, instanceType string) (bool, error) {
	r := ecs.CreateDescribeInstanceTypesRequest()
	r.InstanceTypes = &[]string{instanceType}
	resp := ecs.CreateDescribeInstanceTypesResponse()
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, resp); err != nil {
		return false, err
	}
	for _, t := range resp.InstanceTypes.InstanceType {
		if t.InstanceTypeId == instanceType {
			return t.NvmeSupport == "required", nil
		}
	}
	return false, nil
}

// DetachDisk implements cpi.CPI, waiting until the disk is Available again.
func (c *CPI) DetachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) error {
	const method = "detach_disk"
	if _, err := c.getInstance(ctx, method, vm); err != nil {
		return err
	}
	d, err := c.getDisk(ctx, method, disk)
	if err != nil {
		return err
	}
	if d.InstanceId != string(vm) {
		return c.errf(ctx, method, string(disk), cpi.DiskNotAttached, false, nil, "disk %s is not attached to VM %s", disk, vm)
	}
	if d.Status != "Detaching" {
		r := ecs.CreateDetachDiskRequest()
		r.InstanceId, r.DiskId = string(vm), string(disk)
		if err := c.do(ctx, call{ep: c.ecs}, r, ecs.CreateDetachDiskResponse()); err != nil {
			return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
		}
	}
	if err := c.waitDisk(ctx, string(disk), "Available", 0); err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	c.log.Info("detached disk", "disk_cid", disk, "vm_cid", vm)
	return nil
}

// GetDisks implements cpi.DiskLister: the VM's data disks but its ephemeral one.
func (c *CPI) GetDisks(ctx context.Context, vm cpi.VMCID) ([]cpi.DiskCID, error) {
	const method = "get_disks"
	if _, err := c.getInstance(ctx, method, vm); err != nil {
		return nil, err
	}
	out := []cpi.DiskCID{}
	for page := 1; ; page++ {
		r := ecs.CreateDescribeDisksRequest()
		r.InstanceId = string(vm)
		r.DiskType = "data"
		r.PageNumber = requests.NewInteger(page)
		r.PageSize = requests.NewInteger(100)
		resp := ecs.CreateDescribeDisksResponse()
		if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, resp); err != nil {
			return nil, c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "")
		}
		for _, d := range resp.Disks.Disk {
			if d.DiskName != ephemeralName && d.Type != "system" {
				out = append(out, cpi.DiskCID(d.DiskId))
			}
		}
		if len(resp.Disks.Disk) == 0 || page*100 >= resp.TotalCount {
			return out, nil
		}
	}
}

// ResizeDisk implements cpi.DiskResizer: a detached disk grows in place; the same
// size is a no-op, a smaller one NotSupported.
func (c *CPI) ResizeDisk(ctx context.Context, disk cpi.DiskCID, newSizeMiB int) error {
	const method = "resize_disk"
	d, err := c.getDisk(ctx, method, disk)
	if err != nil {
		return err
	}
	size := max(gib(newSizeMiB), minDiskGiB(d.Category))
	switch {
	case size == d.Size:
		return nil
	case size < d.Size:
		return c.errf(ctx, method, string(disk), cpi.NotSupported, false, nil, "cannot shrink a disk from %d GiB to %d GiB", d.Size, size)
	case d.InstanceId != "":
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, nil, "disk is attached to VM %s; detach it before resizing", d.InstanceId)
	}
	r := ecs.CreateResizeDiskRequest()
	r.DiskId, r.NewSize, r.Type = string(disk), requests.NewInteger(size), "offline"
	if err := c.do(ctx, call{ep: c.ecs}, r, ecs.CreateResizeDiskResponse()); err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	if err := c.waitDisk(ctx, string(disk), "Available", size); err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	c.log.Info("resized disk", "disk_cid", disk, "size_gib", size)
	return nil
}

// SetDiskMetadata implements cpi.DiskMetadataSetter: the keys become tags.
func (c *CPI) SetDiskMetadata(ctx context.Context, disk cpi.DiskCID, md cpi.Metadata) error {
	const method = "set_disk_metadata"
	d, err := c.getDisk(ctx, method, disk)
	if err != nil {
		return err
	}
	if err := c.addTags(ctx, "disk", string(disk), md, d.Tags.Tag); err != nil {
		return c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	return nil
}

// SnapshotDisk implements cpi.Snapshotter: a snapshot tagged with the metadata,
// waited for until accomplished.
func (c *CPI) SnapshotDisk(ctx context.Context, disk cpi.DiskCID, md cpi.Metadata) (cpi.SnapshotCID, error) {
	const method = "snapshot_disk"
	if _, err := c.getDisk(ctx, method, disk); err != nil {
		return "", err
	}
	r := ecs.CreateCreateSnapshotRequest()
	r.ClientToken = newID()
	r.DiskId = string(disk)
	r.SnapshotName = "bosun-snapshot-" + r.ClientToken[:12]
	r.Description = strings.Trim(strings.Join([]string{md["deployment"], md["instance_group"], md["index"]}, "/"), "/")
	var tags []ecs.CreateSnapshotTag
	for _, k := range slices.Sorted(maps.Keys(md)) {
		if checkTagKey(k) == nil && len(tags) < maxTags {
			tags = append(tags, ecs.CreateSnapshotTag{Key: k, Value: clipTag(md[k])})
		}
	}
	if len(tags) > 0 {
		r.Tag = &tags
	}
	resp := ecs.CreateCreateSnapshotResponse()
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, resp); err != nil {
		return "", c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	err := c.waitFor(ctx, "snapshot "+resp.SnapshotId, func(ctx context.Context) (bool, string, error) {
		s, err := c.describeSnapshot(ctx, resp.SnapshotId)
		if err != nil {
			return false, "", err
		}
		if s == nil {
			return false, "", fmt.Errorf("snapshot %s vanished", resp.SnapshotId)
		}
		if s.Status == "failed" {
			return false, "", fmt.Errorf("snapshot %s failed", resp.SnapshotId)
		}
		return s.Status == "accomplished", s.Status, nil
	})
	if err != nil {
		return "", c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
	}
	return cpi.SnapshotCID(resp.SnapshotId), nil
}

func (c *CPI) describeSnapshot(ctx context.Context, id string) (*ecs.Snapshot, error) {
	r := ecs.CreateDescribeSnapshotsRequest()
	ids, _ := json.Marshal([]string{id})
	r.SnapshotIds = string(ids)
	resp := ecs.CreateDescribeSnapshotsResponse()
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, resp); err != nil {
		if codeIs(err, "InvalidSnapshotId.NotFound", "InvalidSnapshotIds.Malformed") {
			return nil, nil
		}
		return nil, err
	}
	for i := range resp.Snapshots.Snapshot {
		if resp.Snapshots.Snapshot[i].SnapshotId == id {
			return &resp.Snapshots.Snapshot[i], nil
		}
	}
	return nil, nil
}

// DeleteSnapshot implements cpi.Snapshotter; a snapshot already gone is not an error.
func (c *CPI) DeleteSnapshot(ctx context.Context, snap cpi.SnapshotCID) error {
	if err := c.deleteSnapshot(ctx, string(snap)); err != nil {
		return c.errf(ctx, "delete_snapshot", string(snap), cpi.CloudError, false, err, "")
	}
	return nil
}

func (c *CPI) deleteSnapshot(ctx context.Context, id string) error {
	r := ecs.CreateDeleteSnapshotRequest()
	r.SnapshotId = id
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, ecs.CreateDeleteSnapshotResponse()); err != nil && !codeIs(err, "InvalidSnapshotId.NotFound") {
		return err
	}
	return c.waitFor(ctx, "deletion of snapshot "+id, func(ctx context.Context) (bool, string, error) {
		s, err := c.describeSnapshot(ctx, id)
		if err != nil || s == nil {
			return err == nil, "", err
		}
		return false, s.Status, nil
	})
}

var _ cpi.DiskUpdater = (*CPI)(nil)

// UpdateDisk implements cpi.DiskUpdater in place: ModifyDiskSpec changes the
// category and performance level, ResizeDisk grows it; the disk keeps its id.
// What ECS cannot do in place (shrink, a conversion it refuses, an attached disk,
// encryption) is NotSupported, so the director copies to a new disk instead.
func (c *CPI) UpdateDisk(ctx context.Context, disk cpi.DiskCID, newSizeMiB int, props json.RawMessage) (cpi.DiskCID, error) {
	const method = "update_disk"
	var p diskProps
	if err := cpi.DecodeCloudProperties(props, &p); err != nil {
		return "", c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "bad disk cloud_properties")
	}
	d, err := c.getDisk(ctx, method, disk)
	if err != nil {
		return "", err
	}
	notSupported := func(cause error, format string, a ...any) (cpi.DiskCID, error) {
		return "", c.errf(ctx, method, string(disk), cpi.NotSupported, false, cause, format, a...)
	}
	category := cmp.Or(p.Category, "cloud_efficiency")
	size := max(gib(newSizeMiB), minDiskGiB(category))
	switch {
	case d.InstanceId != "":
		return notSupported(nil, "disk is attached to VM %s", d.InstanceId)
	case size < d.Size:
		return notSupported(nil, "cannot shrink a disk from %d GiB to %d GiB", d.Size, size)
	case c.encrypted(p.Encrypted) != d.Encrypted:
		return notSupported(nil, "cannot change a disk's encryption in place")
	}
	if category != d.Category || (p.PerformanceLevel != "" && p.PerformanceLevel != d.PerformanceLevel) {
		r := ecs.CreateModifyDiskSpecRequest()
		r.DiskId, r.DiskCategory, r.PerformanceLevel = string(disk), category, p.PerformanceLevel
		if err := c.do(ctx, call{ep: c.ecs}, r, ecs.CreateModifyDiskSpecResponse()); err != nil {
			var e *apiError
			if errors.As(err, &e) && e.Status >= 400 && e.Status < 500 && !strings.HasPrefix(e.Code, "Throttling") {
				return notSupported(err, "")
			}
			return "", c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
		}
		err := c.waitFor(ctx, "disk "+string(disk), func(ctx context.Context) (bool, string, error) {
			d, err := c.describeDisk(ctx, disk)
			if err != nil || d == nil {
				return false, "", cmp.Or(err, fmt.Errorf("disk %s vanished", disk))
			}
			return d.Category == category && d.Status == "Available", d.Category + " " + d.Status, nil
		})
		if err != nil {
			return "", c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
		}
	}
	if size > d.Size {
		if err := c.ResizeDisk(ctx, disk, newSizeMiB); err != nil {
			var e *cpi.Error
			if errors.As(err, &e) {
				e.Method = method
			}
			return "", err
		}
	}
	if len(p.Tags) > 0 {
		md := cpi.Metadata{}
		maps.Copy(md, p.Tags)
		if err := c.addTags(ctx, "disk", string(disk), md, d.Tags.Tag); err != nil {
			return "", c.errf(ctx, method, string(disk), cpi.CloudError, false, err, "")
		}
	}
	c.log.Info("updated disk", "disk_cid", disk, "category", category, "size_gib", max(size, d.Size))
	return disk, nil
}
