package local

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/bosun-gitops/bosun/cpi"
)

// diskRecord is disks/<cid>.json. VM and Path are written before a disk moves into a
// VM (and cleared after it moves out), so a crash in between is repaired by the next
// attach, detach or VM delete.
type diskRecord struct {
	SizeMiB  int          `json:"size_mib"`
	Metadata cpi.Metadata `json:"metadata,omitempty"`
	VM       cpi.VMCID    `json:"vm,omitempty"`
	// Path is where the disk sits inside the VM's root.
	Path string `json:"path,omitempty"`
}

func (c *CPI) diskData(cid cpi.DiskCID) string   { return c.path("disks", string(cid)) }
func (c *CPI) diskRecord(cid cpi.DiskCID) string { return c.path("disks", string(cid)+".json") }

// readDisk returns the disk's record; a VM named there that no longer exists is
// forgotten (it was deleted mid-attach, and the data never left the store).
func (c *CPI) readDisk(cid cpi.DiskCID) (diskRecord, bool, error) {
	var r diskRecord
	if !validCID(string(cid)) {
		return r, false, nil
	}
	err := readJSON(c.diskRecord(cid), &r)
	if errors.Is(err, os.ErrNotExist) {
		return r, false, nil
	}
	if err != nil {
		return r, false, err
	}
	if r.VM != "" && !c.vmExists(r.VM) {
		r.VM, r.Path = "", ""
	}
	return r, true, nil
}

type diskProps struct{}

// CreateDisk implements cpi.CPI: an empty directory. Sizes are recorded, not enforced.
func (c *CPI) CreateDisk(ctx context.Context, sizeMiB int, props json.RawMessage, vm cpi.VMCID) (cpi.DiskCID, error) {
	const method = "create_disk"
	subject := "near " + string(vm)
	if vm == "" {
		subject = ""
	}
	var p diskProps
	if err := cpi.DecodeCloudProperties(props, &p); err != nil {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, err, "bad disk cloud_properties")
	}
	if sizeMiB <= 0 {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, nil, "disk size %d MiB must be positive", sizeMiB)
	}
	cid := cpi.DiskCID(newCID("disk-"))
	if err := os.MkdirAll(c.diskData(cid), 0o755); err != nil {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, err, "create disk")
	}
	if err := writeJSONAtomic(c.diskRecord(cid), diskRecord{SizeMiB: sizeMiB}, 0o600); err != nil {
		os.RemoveAll(c.diskData(cid))
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, err, "record disk")
	}
	c.log.Info("created disk", "disk_cid", cid, "size_mib", sizeMiB, "instance", cpi.InstanceFrom(ctx))
	return cid, nil
}

// DeleteDisk implements cpi.CPI; an attached disk is refused.
func (c *CPI) DeleteDisk(ctx context.Context, cid cpi.DiskCID) error {
	const method = "delete_disk"
	if !validCID(string(cid)) {
		return nil
	}
	unlock, err := c.lock()
	if err != nil {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "lock data dir")
	}
	defer unlock()
	r, ok, err := c.readDisk(cid)
	if err != nil {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "read disk record")
	}
	if ok && r.VM != "" {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, nil, "disk %s is attached to VM %s; detach it first", cid, r.VM)
	}
	if err := removeAllAtomic(c.diskData(cid)); err != nil {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "remove disk")
	}
	if err := os.Remove(c.diskRecord(cid)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "remove disk record")
	}
	return nil
}

// HasDisk implements cpi.CPI.
func (c *CPI) HasDisk(ctx context.Context, cid cpi.DiskCID) (bool, error) {
	_, ok, err := c.readDisk(cid)
	if err != nil {
		return false, c.errf(ctx, "has_disk", string(cid), cpi.CloudError, false, err, "read disk record")
	}
	return ok, nil
}

// AttachDisk implements cpi.CPI: the disk's directory moves into the VM, at
// var/vcap/store when that is free. The hint is the path inside the VM's root.
func (c *CPI) AttachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) (cpi.DiskHint, error) {
	const method = "attach_disk"
	fail := func(kind cpi.Kind, cause error, format string, a ...any) (cpi.DiskHint, error) {
		return cpi.DiskHint{}, c.errf(ctx, method, string(disk)+" to "+string(vm), kind, false, cause, format, a...)
	}
	unlock, err := c.lock()
	if err != nil {
		return fail(cpi.CloudError, err, "lock data dir")
	}
	defer unlock()
	if !c.vmExists(vm) {
		return fail(cpi.VMNotFound, nil, "VM %s not found", vm)
	}
	r, ok, err := c.readDisk(disk)
	if err != nil {
		return fail(cpi.CloudError, err, "read disk record")
	}
	if !ok {
		return fail(cpi.DiskNotFound, nil, "disk %s not found", disk)
	}
	if r.VM != "" && r.VM != vm {
		return fail(cpi.CloudError, nil, "disk %s is attached to VM %s", disk, r.VM)
	}
	settings, err := c.readSettings(vm)
	if err != nil {
		return fail(cpi.CloudError, err, "read the VM's settings")
	}
	if r.VM == "" {
		r.Path = storeRel
		for _, h := range settings.Disks.Persistent {
			if h.Path == "/"+storeRel {
				r.Path = storeRel + "-" + string(disk)
			}
		}
		r.VM = vm
		if err := writeJSONAtomic(c.diskRecord(disk), r, 0o600); err != nil {
			return fail(cpi.CloudError, err, "record attachment")
		}
	}
	hint := cpi.DiskHint{Path: "/" + r.Path, ID: string(disk)}
	if settings.Disks.Persistent == nil {
		settings.Disks.Persistent = map[cpi.DiskCID]cpi.DiskHint{}
	}
	if settings.Disks.Persistent[disk] != hint {
		settings.Disks.Persistent[disk] = hint
		if err := writeJSONAtomic(filepath.Join(c.vmDir(vm), settingsRel), settings, 0o600); err != nil {
			return fail(cpi.CloudError, err, "update the VM's settings")
		}
	}
	if exists(c.diskData(disk)) {
		target := filepath.Join(c.vmDir(vm), r.Path)
		// The mount point is an empty directory; Remove refuses anything else.
		if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail(cpi.CloudError, err, "mount point %s is not empty", r.Path)
		}
		if err := os.Rename(c.diskData(disk), target); err != nil {
			return fail(cpi.CloudError, err, "move disk into VM")
		}
	}
	return hint, nil
}

// DetachDisk implements cpi.CPI.
func (c *CPI) DetachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) error {
	const method = "detach_disk"
	subject := string(disk) + " from " + string(vm)
	unlock, err := c.lock()
	if err != nil {
		return c.errf(ctx, method, subject, cpi.CloudError, false, err, "lock data dir")
	}
	defer unlock()
	if !c.vmExists(vm) {
		return c.errf(ctx, method, subject, cpi.VMNotFound, false, nil, "VM %s not found", vm)
	}
	r, ok, err := c.readDisk(disk)
	if err != nil {
		return c.errf(ctx, method, subject, cpi.CloudError, false, err, "read disk record")
	}
	if !ok {
		return c.errf(ctx, method, subject, cpi.DiskNotFound, false, nil, "disk %s not found", disk)
	}
	if r.VM != vm {
		return c.errf(ctx, method, subject, cpi.DiskNotAttached, false, nil, "disk %s is not attached to VM %s", disk, vm)
	}
	if err := c.moveDiskOut(vm, disk); err != nil {
		return c.errf(ctx, method, subject, cpi.CloudError, false, err, "move disk out of VM")
	}
	return nil
}

// moveDiskOut moves an attached disk back to the store and forgets the attachment,
// in the order that lets a crash at any point be finished by calling it again.
// The caller holds the lock.
func (c *CPI) moveDiskOut(vm cpi.VMCID, disk cpi.DiskCID) error {
	r, ok, err := c.readDisk(disk)
	if err != nil {
		return err
	}
	settings, err := c.readSettings(vm)
	if err != nil {
		return err
	}
	rel := r.Path
	if rel == "" {
		if h, ok := settings.Disks.Persistent[disk]; ok && h.Path != "" {
			rel = filepath.Clean(h.Path)[1:]
		}
	}
	if rel != "" && !exists(c.diskData(disk)) {
		src := filepath.Join(c.vmDir(vm), rel)
		if exists(src) {
			if err := os.Rename(src, c.diskData(disk)); err != nil {
				return err
			}
			if rel == storeRel {
				os.Mkdir(src, 0o755)
			}
		}
	}
	if _, attached := settings.Disks.Persistent[disk]; attached {
		delete(settings.Disks.Persistent, disk)
		if err := writeJSONAtomic(filepath.Join(c.vmDir(vm), settingsRel), settings, 0o600); err != nil {
			return err
		}
	}
	if ok && r.VM != "" {
		r.VM, r.Path = "", ""
		return writeJSONAtomic(c.diskRecord(disk), r, 0o600)
	}
	return nil
}

// GetDisks implements cpi.DiskLister.
func (c *CPI) GetDisks(ctx context.Context, vm cpi.VMCID) ([]cpi.DiskCID, error) {
	if !c.vmExists(vm) {
		return nil, c.errf(ctx, "get_disks", string(vm), cpi.VMNotFound, false, nil, "VM %s not found", vm)
	}
	s, err := c.readSettings(vm)
	if err != nil {
		return nil, c.errf(ctx, "get_disks", string(vm), cpi.CloudError, false, err, "read the VM's settings")
	}
	return slices.Sorted(maps.Keys(s.Disks.Persistent)), nil
}

// SetDiskMetadata implements cpi.DiskMetadataSetter.
func (c *CPI) SetDiskMetadata(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) error {
	return c.updateDisk(ctx, "set_disk_metadata", cid, func(r *diskRecord) error {
		r.Metadata = md
		return nil
	})
}

// ResizeDisk implements cpi.DiskResizer: a directory has no size, so this records
// the new one; shrinking is refused as on any cloud.
func (c *CPI) ResizeDisk(ctx context.Context, cid cpi.DiskCID, newSizeMiB int) error {
	return c.updateDisk(ctx, "resize_disk", cid, func(r *diskRecord) error {
		if newSizeMiB < r.SizeMiB {
			return c.errf(ctx, "resize_disk", string(cid), cpi.NotSupported, false, nil, "cannot shrink disk from %d to %d MiB", r.SizeMiB, newSizeMiB)
		}
		r.SizeMiB = newSizeMiB
		return nil
	})
}

func (c *CPI) updateDisk(ctx context.Context, method string, cid cpi.DiskCID, f func(*diskRecord) error) error {
	unlock, err := c.lock()
	if err != nil {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "lock data dir")
	}
	defer unlock()
	r, ok, err := c.readDisk(cid)
	if err != nil {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "read disk record")
	}
	if !ok {
		return c.errf(ctx, method, string(cid), cpi.DiskNotFound, false, nil, "disk %s not found", cid)
	}
	if err := f(&r); err != nil {
		return err
	}
	if err := writeJSONAtomic(c.diskRecord(cid), r, 0o600); err != nil {
		return c.errf(ctx, method, string(cid), cpi.CloudError, false, err, "write disk record")
	}
	return nil
}
