package cpi

import (
	"context"
	"encoding/json"
)

// Typed ids keep a disk id from being handed where a VM id belongs.
type (
	StemcellCID string
	VMCID       string
	DiskCID     string
	SnapshotCID string
)

// APIVersion is the highest CPI API version Bosun speaks.
const APIVersion = 2

// Info is what `info` answers.
type Info struct {
	APIVersion      int      `json:"api_version"`
	StemcellFormats []string `json:"stemcell_formats"`
}

// Metadata is what set_vm_metadata, set_disk_metadata and snapshot_disk carry
// (director, deployment, instance_group, id, index, name, created_at, tags…).
type Metadata map[string]string

// VMSpec is everything create_vm takes (bosh-spec §7.3).
type VMSpec struct {
	AgentID  string
	Stemcell StemcellCID
	// StemcellAPIVersion is stemcell.MF's api_version; external CPIs receive it in the
	// request context so that v2 CPIs write full settings instead of a registry.
	StemcellAPIVersion int
	CloudProperties    json.RawMessage
	Networks           Networks
	// DiskCIDs are persistent disks the VM will get: a placement hint only.
	DiskCIDs []DiskCID
	// Env is the instance group's env plus the director's bosh.* keys, passed through.
	Env json.RawMessage
	// Settings is what the agent boots with. The director fills agent id, mbus (with
	// the agent's own credentials), blobstore, ntp, networks and env; the CPI adds what
	// only it knows (resolved addresses, disk paths, vm name) before handing it over.
	Settings AgentSettings
}

// VMResources is calculate_vm_cloud_properties' argument (BOSH's vm_resources).
type VMResources struct {
	CPU int `json:"cpu"`
	// RAM and EphemeralDiskSize are MiB.
	RAM               int `json:"ram"`
	EphemeralDiskSize int `json:"ephemeral_disk_size"`
}

// VMInfo is one VM as ListVMs reports it.
type VMInfo struct {
	CID      VMCID    `json:"cid"`
	AgentID  string   `json:"agent_id"`
	Metadata Metadata `json:"metadata"`
}

// CPI is the method set every cloud implements.
type CPI interface {
	Info(ctx context.Context) (Info, error)

	// CreateStemcell imports the image at imagePath (for light stemcells, the cloud
	// properties name an existing image).
	CreateStemcell(ctx context.Context, imagePath string, cloudProperties json.RawMessage) (StemcellCID, error)
	DeleteStemcell(ctx context.Context, cid StemcellCID) error

	// CreateVM returns the new VM's id and its networks as the cloud assigned them
	// (dynamic addresses filled in).
	CreateVM(ctx context.Context, spec VMSpec) (VMCID, Networks, error)
	// DeleteVM deletes the VM and everything running on it; attached persistent disks
	// survive, detached. A VM that is already gone is not an error.
	DeleteVM(ctx context.Context, cid VMCID) error
	// HasVM reports whether the VM exists, running or not.
	HasVM(ctx context.Context, cid VMCID) (bool, error)

	// CreateDisk creates a persistent disk of sizeMiB; vm, when set, asks for it near
	// that VM.
	CreateDisk(ctx context.Context, sizeMiB int, cloudProperties json.RawMessage, vm VMCID) (DiskCID, error)
	DeleteDisk(ctx context.Context, cid DiskCID) error
	HasDisk(ctx context.Context, cid DiskCID) (bool, error)
	AttachDisk(ctx context.Context, vm VMCID, disk DiskCID) (DiskHint, error)
	DetachDisk(ctx context.Context, vm VMCID, disk DiskCID) error
}

// Optional capabilities.
type (
	Rebooter interface {
		RebootVM(ctx context.Context, cid VMCID) error
	}
	VMMetadataSetter interface {
		SetVMMetadata(ctx context.Context, cid VMCID, md Metadata) error
	}
	DiskMetadataSetter interface {
		SetDiskMetadata(ctx context.Context, cid DiskCID, md Metadata) error
	}
	// DiskLister answers get_disks: the persistent disks attached to a VM.
	DiskLister interface {
		GetDisks(ctx context.Context, vm VMCID) ([]DiskCID, error)
	}
	Snapshotter interface {
		SnapshotDisk(ctx context.Context, disk DiskCID, md Metadata) (SnapshotCID, error)
		DeleteSnapshot(ctx context.Context, cid SnapshotCID) error
	}
	// DiskResizer grows a detached disk in place; without it the director copies.
	DiskResizer interface {
		ResizeDisk(ctx context.Context, cid DiskCID, newSizeMiB int) error
	}
	// DiskUpdater changes size and cloud properties; it may return a new disk id.
	DiskUpdater interface {
		UpdateDisk(ctx context.Context, cid DiskCID, newSizeMiB int, cloudProperties json.RawMessage) (DiskCID, error)
	}
	VMPropertiesCalculator interface {
		CalculateVMCloudProperties(ctx context.Context, r VMResources) (json.RawMessage, error)
	}
	// VMLister lists every VM the CPI made, so orphans can be found by the instance
	// their metadata names (not part of BOSH's API).
	VMLister interface {
		ListVMs(ctx context.Context) ([]VMInfo, error)
	}
)

// Namer is implemented by CPIs that know their configured name; errors built by the
// helpers below use it.
type Namer interface {
	Name() string
}

func nameOf(c CPI) string {
	if n, ok := c.(Namer); ok {
		return n.Name()
	}
	return ""
}

func notImplemented(ctx context.Context, c CPI, method, subject string) error {
	return &Error{CPI: nameOf(c), Method: method, Instance: InstanceFrom(ctx), Subject: subject,
		Kind: NotImplemented, Msg: "this CPI does not implement " + method}
}

// RebootVM reboots the VM, or returns NotImplemented.
func RebootVM(ctx context.Context, c CPI, cid VMCID) error {
	if r, ok := c.(Rebooter); ok {
		return r.RebootVM(ctx, cid)
	}
	return notImplemented(ctx, c, "reboot_vm", string(cid))
}

// SetVMMetadata tags the VM, or returns NotImplemented (which BOSH skips).
func SetVMMetadata(ctx context.Context, c CPI, cid VMCID, md Metadata) error {
	if s, ok := c.(VMMetadataSetter); ok {
		return s.SetVMMetadata(ctx, cid, md)
	}
	return notImplemented(ctx, c, "set_vm_metadata", string(cid))
}

// SetDiskMetadata tags the disk, or returns NotImplemented.
func SetDiskMetadata(ctx context.Context, c CPI, cid DiskCID, md Metadata) error {
	if s, ok := c.(DiskMetadataSetter); ok {
		return s.SetDiskMetadata(ctx, cid, md)
	}
	return notImplemented(ctx, c, "set_disk_metadata", string(cid))
}

// GetDisks lists the VM's attached disks, or returns NotImplemented.
func GetDisks(ctx context.Context, c CPI, vm VMCID) ([]DiskCID, error) {
	if l, ok := c.(DiskLister); ok {
		return l.GetDisks(ctx, vm)
	}
	return nil, notImplemented(ctx, c, "get_disks", string(vm))
}

// SnapshotDisk snapshots the disk, or returns NotImplemented.
func SnapshotDisk(ctx context.Context, c CPI, disk DiskCID, md Metadata) (SnapshotCID, error) {
	if s, ok := c.(Snapshotter); ok {
		return s.SnapshotDisk(ctx, disk, md)
	}
	return "", notImplemented(ctx, c, "snapshot_disk", string(disk))
}

// DeleteSnapshot deletes the snapshot, or returns NotImplemented.
func DeleteSnapshot(ctx context.Context, c CPI, cid SnapshotCID) error {
	if s, ok := c.(Snapshotter); ok {
		return s.DeleteSnapshot(ctx, cid)
	}
	return notImplemented(ctx, c, "delete_snapshot", string(cid))
}

// ResizeDisk grows the disk, or returns NotSupported so the caller copies instead.
func ResizeDisk(ctx context.Context, c CPI, cid DiskCID, newSizeMiB int) error {
	if r, ok := c.(DiskResizer); ok {
		return r.ResizeDisk(ctx, cid, newSizeMiB)
	}
	return &Error{CPI: nameOf(c), Method: "resize_disk", Instance: InstanceFrom(ctx), Subject: string(cid),
		Kind: NotSupported, Msg: "this CPI cannot resize disks"}
}

// ListVMs lists the CPI's VMs, or returns NotImplemented.
func ListVMs(ctx context.Context, c CPI) ([]VMInfo, error) {
	if l, ok := c.(VMLister); ok {
		return l.ListVMs(ctx)
	}
	return nil, notImplemented(ctx, c, "list_vms", "")
}

type instanceKey struct{}

// WithInstance names the instance (e.g. "web/0f3a…") a CPI call is made for, so that
// errors can say which instance failed.
func WithInstance(ctx context.Context, instance string) context.Context {
	return context.WithValue(ctx, instanceKey{}, instance)
}

// InstanceFrom returns the instance named with WithInstance, or "".
func InstanceFrom(ctx context.Context) string {
	s, _ := ctx.Value(instanceKey{}).(string)
	return s
}
