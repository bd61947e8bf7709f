package external

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/bosun-gitops/bosun/cpi"
)

// Arguments follow BOSH's positional order (bosh-spec §7.2).

// CreateStemcell implements cpi.CPI.
func (c *CPI) CreateStemcell(ctx context.Context, imagePath string, props json.RawMessage) (cpi.StemcellCID, error) {
	var cid cpi.StemcellCID
	err := c.call(ctx, "create_stemcell", imagePath, 0, &cid, imagePath, object(props))
	return cid, err
}

// DeleteStemcell implements cpi.CPI.
func (c *CPI) DeleteStemcell(ctx context.Context, cid cpi.StemcellCID) error {
	return c.call(ctx, "delete_stemcell", string(cid), 0, nil, cid)
}

// CreateVM implements cpi.CPI. The agent's NATS URL and blobstore travel as BOSH's
// env.bosh.mbus.urls and env.bosh.blobstores, which the agent prefers over the CPI's
// own configuration; v1 (bare cid) and v2 ([cid, networks]) results are accepted.
func (c *CPI) CreateVM(ctx context.Context, spec cpi.VMSpec) (cpi.VMCID, cpi.Networks, error) {
	const method = "create_vm"
	subject := "agent " + spec.AgentID
	env, err := withAgentEnv(spec.Env, spec.Settings)
	if err != nil {
		return "", nil, c.errf(ctx, method, subject, cpi.CpiError, false, err, "env")
	}
	diskCIDs := spec.DiskCIDs
	if diskCIDs == nil {
		diskCIDs = []cpi.DiskCID{}
	}
	networks := spec.Networks
	if networks == nil {
		networks = cpi.Networks{}
	}
	var raw json.RawMessage
	if err := c.call(ctx, method, subject, spec.StemcellAPIVersion, &raw, spec.AgentID, spec.Stemcell,
		object(spec.CloudProperties), networks, diskCIDs, env); err != nil {
		return "", nil, err
	}
	cid, nets, err := parseCreateVM(raw)
	if err != nil {
		// It answered, so the VM may well exist: not safe to retry.
		return "", nil, c.errf(ctx, method, subject, cpi.CpiError, false, err, "unexpected result %s", truncate(raw, 80))
	}
	if nets == nil {
		nets = spec.Networks
	}
	return cid, nets, nil
}

func parseCreateVM(raw json.RawMessage) (cpi.VMCID, cpi.Networks, error) {
	raw = bytes.TrimSpace(raw)
	var cid cpi.VMCID
	if len(raw) > 0 && raw[0] == '"' {
		err := json.Unmarshal(raw, &cid)
		return cid, nil, err
	}
	var v2 []json.RawMessage
	if err := json.Unmarshal(raw, &v2); err != nil || len(v2) == 0 {
		return "", nil, fmt.Errorf("want a vm cid or [vm_cid, networks]")
	}
	if err := json.Unmarshal(v2[0], &cid); err != nil || cid == "" {
		return "", nil, fmt.Errorf("want a vm cid as the first element")
	}
	var nets cpi.Networks
	if len(v2) > 1 {
		if err := json.Unmarshal(v2[1], &nets); err != nil {
			return "", nil, fmt.Errorf("networks: %w", err)
		}
	}
	return cid, nets, nil
}

// withAgentEnv puts the agent's mbus URL and blobstore into env.bosh, unless the
// director already put them there.
func withAgentEnv(env json.RawMessage, s cpi.AgentSettings) (map[string]any, error) {
	m := map[string]any{}
	if len(bytes.TrimSpace(env)) > 0 && string(bytes.TrimSpace(env)) != "null" {
		if err := json.Unmarshal(env, &m); err != nil {
			return nil, fmt.Errorf("env must be an object: %w", err)
		}
	}
	bosh, _ := m["bosh"].(map[string]any)
	if bosh == nil {
		bosh = map[string]any{}
	}
	if s.Mbus != "" {
		mbus, _ := bosh["mbus"].(map[string]any)
		if mbus == nil {
			mbus = map[string]any{}
		}
		if _, ok := mbus["urls"]; !ok {
			mbus["urls"] = []string{s.Mbus}
		}
		bosh["mbus"] = mbus
	}
	if s.Blobstore.Provider != "" {
		if _, ok := bosh["blobstores"]; !ok {
			bosh["blobstores"] = []cpi.Blobstore{s.Blobstore}
		}
	}
	if len(bosh) > 0 {
		m["bosh"] = bosh
	}
	return m, nil
}

// object sends absent cloud properties as {} rather than null.
func object(raw json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage(`{}`)
	}
	return raw
}

// DeleteVM implements cpi.CPI. VMNotFound counts as deleted, as BOSH's director
// treats it.
func (c *CPI) DeleteVM(ctx context.Context, cid cpi.VMCID) error {
	err := c.call(ctx, "delete_vm", string(cid), 0, nil, cid)
	if cpi.KindOf(err) == cpi.VMNotFound {
		return nil
	}
	return err
}

// HasVM implements cpi.CPI.
func (c *CPI) HasVM(ctx context.Context, cid cpi.VMCID) (bool, error) {
	var ok bool
	err := c.call(ctx, "has_vm", string(cid), 0, &ok, cid)
	return ok, err
}

// RebootVM implements cpi.Rebooter.
func (c *CPI) RebootVM(ctx context.Context, cid cpi.VMCID) error {
	return c.call(ctx, "reboot_vm", string(cid), 0, nil, cid)
}

// SetVMMetadata implements cpi.VMMetadataSetter.
func (c *CPI) SetVMMetadata(ctx context.Context, cid cpi.VMCID, md cpi.Metadata) error {
	return c.call(ctx, "set_vm_metadata", string(cid), 0, nil, cid, nonNil(md))
}

// CalculateVMCloudProperties implements cpi.VMPropertiesCalculator.
func (c *CPI) CalculateVMCloudProperties(ctx context.Context, r cpi.VMResources) (json.RawMessage, error) {
	var props json.RawMessage
	err := c.call(ctx, "calculate_vm_cloud_properties", "", 0, &props, r)
	return props, err
}

// ListVMs implements cpi.VMLister through "list_vms", a Bosun extension that
// `bosun cpi serve` answers; BOSH's CPIs answer NotImplemented.
func (c *CPI) ListVMs(ctx context.Context) ([]cpi.VMInfo, error) {
	var vms []cpi.VMInfo
	err := c.call(ctx, "list_vms", "", 0, &vms)
	return vms, err
}

// CreateDisk implements cpi.CPI.
func (c *CPI) CreateDisk(ctx context.Context, sizeMiB int, props json.RawMessage, vm cpi.VMCID) (cpi.DiskCID, error) {
	var cid cpi.DiskCID
	var near any
	if vm != "" {
		near = vm
	}
	err := c.call(ctx, "create_disk", string(vm), 0, &cid, sizeMiB, object(props), near)
	return cid, err
}

// DeleteDisk implements cpi.CPI; DiskNotFound counts as deleted.
func (c *CPI) DeleteDisk(ctx context.Context, cid cpi.DiskCID) error {
	err := c.call(ctx, "delete_disk", string(cid), 0, nil, cid)
	if cpi.KindOf(err) == cpi.DiskNotFound {
		return nil
	}
	return err
}

// HasDisk implements cpi.CPI.
func (c *CPI) HasDisk(ctx context.Context, cid cpi.DiskCID) (bool, error) {
	var ok bool
	err := c.call(ctx, "has_disk", string(cid), 0, &ok, cid)
	return ok, err
}

// AttachDisk implements cpi.CPI. A v1 CPI returns no hint; a v2 CPI must.
func (c *CPI) AttachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) (cpi.DiskHint, error) {
	const method = "attach_disk"
	var raw json.RawMessage
	if err := c.call(ctx, method, string(disk)+" to "+string(vm), 0, &raw, vm, disk); err != nil {
		return cpi.DiskHint{}, err
	}
	var hint cpi.DiskHint
	if t := bytes.TrimSpace(raw); len(t) > 0 && string(t) != "null" {
		if err := json.Unmarshal(t, &hint); err != nil {
			return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CpiError, false, err, "unexpected disk hint %s", truncate(t, 80))
		}
	}
	if v, _ := c.version(ctx); v >= 2 && hint.IsZero() {
		return cpi.DiskHint{}, c.errf(ctx, method, string(disk), cpi.CpiError, false, nil, "a v2 CPI attached the disk but returned no disk hint")
	}
	return hint, nil
}

// DetachDisk implements cpi.CPI.
func (c *CPI) DetachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) error {
	return c.call(ctx, "detach_disk", string(disk)+" from "+string(vm), 0, nil, vm, disk)
}

// GetDisks implements cpi.DiskLister.
func (c *CPI) GetDisks(ctx context.Context, vm cpi.VMCID) ([]cpi.DiskCID, error) {
	var disks []cpi.DiskCID
	err := c.call(ctx, "get_disks", string(vm), 0, &disks, vm)
	return disks, err
}

// SetDiskMetadata implements cpi.DiskMetadataSetter.
func (c *CPI) SetDiskMetadata(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) error {
	return c.call(ctx, "set_disk_metadata", string(cid), 0, nil, cid, nonNil(md))
}

// ResizeDisk implements cpi.DiskResizer.
func (c *CPI) ResizeDisk(ctx context.Context, cid cpi.DiskCID, newSizeMiB int) error {
	return c.call(ctx, "resize_disk", string(cid), 0, nil, cid, newSizeMiB)
}

// UpdateDisk implements cpi.DiskUpdater; a nil result keeps the disk's cid.
func (c *CPI) UpdateDisk(ctx context.Context, cid cpi.DiskCID, newSizeMiB int, props json.RawMessage) (cpi.DiskCID, error) {
	var newCID *cpi.DiskCID
	if err := c.call(ctx, "update_disk", string(cid), 0, &newCID, cid, newSizeMiB, object(props)); err != nil {
		return "", err
	}
	if newCID == nil || *newCID == "" {
		return cid, nil
	}
	return *newCID, nil
}

// SnapshotDisk implements cpi.Snapshotter.
func (c *CPI) SnapshotDisk(ctx context.Context, disk cpi.DiskCID, md cpi.Metadata) (cpi.SnapshotCID, error) {
	var cid cpi.SnapshotCID
	err := c.call(ctx, "snapshot_disk", string(disk), 0, &cid, disk, nonNil(md))
	return cid, err
}

// DeleteSnapshot implements cpi.Snapshotter.
func (c *CPI) DeleteSnapshot(ctx context.Context, cid cpi.SnapshotCID) error {
	return c.call(ctx, "delete_snapshot", string(cid), 0, nil, cid)
}

func nonNil(md cpi.Metadata) cpi.Metadata {
	if md == nil {
		return cpi.Metadata{}
	}
	return md
}
