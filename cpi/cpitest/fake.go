package cpitest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/bosun-gitops/bosun/cpi"
)

// Fake is an in-memory CPI for other packages' tests. It implements every optional
// capability, decodes cloud properties strictly (VMs take instance_type, disks take
// type, stemcells take name and version) and can be told to fail.
type Fake struct {
	name string

	mu        sync.Mutex
	stemcells map[cpi.StemcellCID]bool
	vms       map[cpi.VMCID]*FakeVM
	disks     map[cpi.DiskCID]*FakeDisk
	snapshots map[cpi.SnapshotCID]cpi.DiskCID
	faults    map[string][]fault
	calls     map[string]int
	nextIP    int
	onCreate  func(FakeVM)
	onDelete  func(cpi.VMCID)
}

// OnVM registers functions called (outside the fake's lock) after a VM is created
// and after one is deleted or lost, e.g. to start and stop a fake agent using the
// VM's settings. Either may be nil.
func (f *Fake) OnVM(created func(FakeVM), deleted func(cpi.VMCID)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onCreate, f.onDelete = created, deleted
}

// FakeVM is a VM as the fake holds it.
type FakeVM struct {
	CID      cpi.VMCID
	Spec     cpi.VMSpec
	Networks cpi.Networks
	Metadata cpi.Metadata
	Reboots  int
}

// FakeDisk is a persistent disk as the fake holds it.
type FakeDisk struct {
	CID      cpi.DiskCID
	SizeMiB  int
	Metadata cpi.Metadata
	VM       cpi.VMCID // attached to, or ""
}

type fault struct {
	err  error // returned as is
	hang bool  // block until ctx is done
}

// NewFake returns an empty fake named name (errors carry it).
func NewFake(name string) *Fake {
	return &Fake{name: name, stemcells: map[cpi.StemcellCID]bool{}, vms: map[cpi.VMCID]*FakeVM{},
		disks: map[cpi.DiskCID]*FakeDisk{}, snapshots: map[cpi.SnapshotCID]cpi.DiskCID{},
		faults: map[string][]fault{}, calls: map[string]int{}}
}

// Name implements cpi.Namer.
func (f *Fake) Name() string { return f.name }

// FailNext makes the next n calls of method (BOSH's name, e.g. "create_vm") return err.
// A nil err means a CloudError that is not safe to retry.
func (f *Fake) FailNext(method string, n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		err = &cpi.Error{CPI: f.name, Method: method, Kind: cpi.CloudError, Msg: "injected failure"}
	}
	for range n {
		f.faults[method] = append(f.faults[method], fault{err: err})
	}
}

// FailNextRetryable makes the next n calls of method fail with an error of kind
// (VMCreationFailed, DiskNotFound, …) that says ok_to_retry.
func (f *Fake) FailNextRetryable(method string, n int, kind cpi.Kind) {
	f.FailNext(method, n, &cpi.Error{CPI: f.name, Method: method, Kind: kind, OkToRetry: true, Msg: "injected retryable failure"})
}

// HangNext makes the next n calls of method block until their ctx is done, then
// return a CloudError wrapping ctx.Err().
func (f *Fake) HangNext(method string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.faults[method] = append(f.faults[method], fault{hang: true})
	}
}

// LoseVM makes a VM vanish as if the cloud lost it: has_vm answers false and its
// disks are detached.
func (f *Fake) LoseVM(cid cpi.VMCID) {
	f.mu.Lock()
	hook := f.onDelete
	if f.vms[cid] == nil {
		hook = nil
	}
	defer func() {
		if hook != nil {
			hook(cid)
		}
	}()
	defer f.mu.Unlock()
	delete(f.vms, cid)
	for _, d := range f.disks {
		if d.VM == cid {
			d.VM = ""
		}
	}
}

// Calls returns how many times method was called, failed calls included.
func (f *Fake) Calls(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// VMs returns copies of the VMs the fake holds, by cid.
func (f *Fake) VMs() []FakeVM {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FakeVM, 0, len(f.vms))
	for _, k := range slices.Sorted(maps.Keys(f.vms)) {
		v := *f.vms[k]
		v.Metadata = maps.Clone(v.Metadata)
		out = append(out, v)
	}
	return out
}

// Disks returns copies of the disks the fake holds, by cid.
func (f *Fake) Disks() []FakeDisk {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FakeDisk, 0, len(f.disks))
	for _, k := range slices.Sorted(maps.Keys(f.disks)) {
		out = append(out, *f.disks[k])
	}
	return out
}

// enter counts the call and applies an injected fault. It returns with f.mu held
// when err is nil.
func (f *Fake) enter(ctx context.Context, method, subject string) error {
	f.mu.Lock()
	f.calls[method]++
	var ft fault
	if q := f.faults[method]; len(q) > 0 {
		ft, f.faults[method] = q[0], q[1:]
	}
	if ft.err != nil {
		f.mu.Unlock()
		return ft.err
	}
	if ft.hang {
		f.mu.Unlock()
		<-ctx.Done()
		return f.errf(ctx, method, subject, cpi.CloudError, false, ctx.Err(), "gave up waiting")
	}
	if err := ctx.Err(); err != nil {
		f.mu.Unlock()
		return f.errf(ctx, method, subject, cpi.CloudError, false, err, "not started")
	}
	return nil
}

func (f *Fake) errf(ctx context.Context, method, subject string, kind cpi.Kind, retry bool, cause error, format string, a ...any) error {
	return &cpi.Error{CPI: f.name, Method: method, Instance: cpi.InstanceFrom(ctx), Subject: subject,
		Kind: kind, OkToRetry: retry, Msg: fmt.Sprintf(format, a...), Err: cause}
}

func newID(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Info implements cpi.CPI.
func (f *Fake) Info(ctx context.Context) (cpi.Info, error) {
	if err := f.enter(ctx, "info", ""); err != nil {
		return cpi.Info{}, err
	}
	defer f.mu.Unlock()
	return cpi.Info{APIVersion: cpi.APIVersion, StemcellFormats: []string{"fake-raw"}}, nil
}

type fakeStemcellProps struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// CreateStemcell implements cpi.CPI.
func (f *Fake) CreateStemcell(ctx context.Context, imagePath string, props json.RawMessage) (cpi.StemcellCID, error) {
	if err := f.enter(ctx, "create_stemcell", imagePath); err != nil {
		return "", err
	}
	defer f.mu.Unlock()
	var p fakeStemcellProps
	if err := cpi.DecodeCloudProperties(props, &p); err != nil {
		return "", f.errf(ctx, "create_stemcell", imagePath, cpi.CloudError, false, err, "bad stemcell cloud_properties")
	}
	cid := cpi.StemcellCID(newID("sc-"))
	f.stemcells[cid] = true
	return cid, nil
}

// DeleteStemcell implements cpi.CPI.
func (f *Fake) DeleteStemcell(ctx context.Context, cid cpi.StemcellCID) error {
	if err := f.enter(ctx, "delete_stemcell", string(cid)); err != nil {
		return err
	}
	defer f.mu.Unlock()
	delete(f.stemcells, cid)
	return nil
}

type fakeVMProps struct {
	InstanceType string `json:"instance_type"`
}

// CreateVM implements cpi.CPI. Dynamic networks get an address from 10.0.0.0/16.
func (f *Fake) CreateVM(ctx context.Context, spec cpi.VMSpec) (cpi.VMCID, cpi.Networks, error) {
	var created *FakeVM
	var hook func(FakeVM)
	defer func() {
		if created != nil && hook != nil {
			hook(*created)
		}
	}()
	if err := f.enter(ctx, "create_vm", spec.AgentID); err != nil {
		return "", nil, err
	}
	defer f.mu.Unlock()
	var p fakeVMProps
	if err := cpi.DecodeCloudProperties(spec.CloudProperties, &p); err != nil {
		return "", nil, f.errf(ctx, "create_vm", spec.AgentID, cpi.VMCreationFailed, false, err, "bad vm cloud_properties")
	}
	if !f.stemcells[spec.Stemcell] {
		return "", nil, f.errf(ctx, "create_vm", spec.AgentID, cpi.VMCreationFailed, false, nil, "stemcell %s not found", spec.Stemcell)
	}
	nets := cpi.Networks{}
	for name, n := range spec.Networks {
		var np struct{}
		if err := cpi.DecodeCloudProperties(n.CloudProperties, &np); err != nil {
			return "", nil, f.errf(ctx, "create_vm", spec.AgentID, cpi.VMCreationFailed, false, err, "network %s", name)
		}
		if n.Type == "dynamic" && n.IP == "" {
			n.IP = fmt.Sprintf("10.%d.%d.%d", f.nextIP/62500%256, f.nextIP/250%250, f.nextIP%250+2)
			f.nextIP++
		}
		nets[name] = n
	}
	cid := cpi.VMCID(newID("vm-"))
	f.vms[cid] = &FakeVM{CID: cid, Spec: spec, Networks: nets, Metadata: cpi.Metadata{}}
	created, hook = &FakeVM{CID: cid, Spec: spec, Networks: nets, Metadata: cpi.Metadata{}}, f.onCreate
	return cid, nets, nil
}

// DeleteVM implements cpi.CPI; attached disks are detached.
func (f *Fake) DeleteVM(ctx context.Context, cid cpi.VMCID) error {
	var hook func(cpi.VMCID)
	defer func() {
		if hook != nil {
			hook(cid)
		}
	}()
	if err := f.enter(ctx, "delete_vm", string(cid)); err != nil {
		return err
	}
	defer f.mu.Unlock()
	if f.vms[cid] != nil {
		hook = f.onDelete
	}
	delete(f.vms, cid)
	for _, d := range f.disks {
		if d.VM == cid {
			d.VM = ""
		}
	}
	return nil
}

// HasVM implements cpi.CPI.
func (f *Fake) HasVM(ctx context.Context, cid cpi.VMCID) (bool, error) {
	if err := f.enter(ctx, "has_vm", string(cid)); err != nil {
		return false, err
	}
	defer f.mu.Unlock()
	return f.vms[cid] != nil, nil
}

// RebootVM implements cpi.Rebooter.
func (f *Fake) RebootVM(ctx context.Context, cid cpi.VMCID) error {
	if err := f.enter(ctx, "reboot_vm", string(cid)); err != nil {
		return err
	}
	defer f.mu.Unlock()
	vm := f.vms[cid]
	if vm == nil {
		return f.errf(ctx, "reboot_vm", string(cid), cpi.VMNotFound, false, nil, "VM %s not found", cid)
	}
	vm.Reboots++
	return nil
}

// SetVMMetadata implements cpi.VMMetadataSetter.
func (f *Fake) SetVMMetadata(ctx context.Context, cid cpi.VMCID, md cpi.Metadata) error {
	if err := f.enter(ctx, "set_vm_metadata", string(cid)); err != nil {
		return err
	}
	defer f.mu.Unlock()
	vm := f.vms[cid]
	if vm == nil {
		return f.errf(ctx, "set_vm_metadata", string(cid), cpi.VMNotFound, false, nil, "VM %s not found", cid)
	}
	vm.Metadata = maps.Clone(md)
	return nil
}

// ListVMs implements cpi.VMLister.
func (f *Fake) ListVMs(ctx context.Context) ([]cpi.VMInfo, error) {
	if err := f.enter(ctx, "list_vms", ""); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	var out []cpi.VMInfo
	for _, k := range slices.Sorted(maps.Keys(f.vms)) {
		vm := f.vms[k]
		out = append(out, cpi.VMInfo{CID: k, AgentID: vm.Spec.AgentID, Metadata: maps.Clone(vm.Metadata)})
	}
	return out, nil
}

// CalculateVMCloudProperties implements cpi.VMPropertiesCalculator.
func (f *Fake) CalculateVMCloudProperties(ctx context.Context, r cpi.VMResources) (json.RawMessage, error) {
	if err := f.enter(ctx, "calculate_vm_cloud_properties", ""); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	return json.Marshal(fakeVMProps{InstanceType: fmt.Sprintf("fake-%dcpu-%dmib", r.CPU, r.RAM)})
}

type fakeDiskProps struct {
	Type string `json:"type"`
}

// CreateDisk implements cpi.CPI.
func (f *Fake) CreateDisk(ctx context.Context, sizeMiB int, props json.RawMessage, vm cpi.VMCID) (cpi.DiskCID, error) {
	if err := f.enter(ctx, "create_disk", string(vm)); err != nil {
		return "", err
	}
	defer f.mu.Unlock()
	var p fakeDiskProps
	if err := cpi.DecodeCloudProperties(props, &p); err != nil {
		return "", f.errf(ctx, "create_disk", string(vm), cpi.CloudError, false, err, "bad disk cloud_properties")
	}
	if sizeMiB <= 0 {
		return "", f.errf(ctx, "create_disk", string(vm), cpi.CloudError, false, nil, "disk size %d MiB must be positive", sizeMiB)
	}
	cid := cpi.DiskCID(newID("disk-"))
	f.disks[cid] = &FakeDisk{CID: cid, SizeMiB: sizeMiB, Metadata: cpi.Metadata{}}
	return cid, nil
}

// DeleteDisk implements cpi.CPI.
func (f *Fake) DeleteDisk(ctx context.Context, cid cpi.DiskCID) error {
	if err := f.enter(ctx, "delete_disk", string(cid)); err != nil {
		return err
	}
	defer f.mu.Unlock()
	if d := f.disks[cid]; d != nil && d.VM != "" {
		return f.errf(ctx, "delete_disk", string(cid), cpi.CloudError, false, nil, "disk %s is attached to VM %s", cid, d.VM)
	}
	delete(f.disks, cid)
	return nil
}

// HasDisk implements cpi.CPI.
func (f *Fake) HasDisk(ctx context.Context, cid cpi.DiskCID) (bool, error) {
	if err := f.enter(ctx, "has_disk", string(cid)); err != nil {
		return false, err
	}
	defer f.mu.Unlock()
	return f.disks[cid] != nil, nil
}

// AttachDisk implements cpi.CPI.
func (f *Fake) AttachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) (cpi.DiskHint, error) {
	if err := f.enter(ctx, "attach_disk", string(disk)); err != nil {
		return cpi.DiskHint{}, err
	}
	defer f.mu.Unlock()
	if f.vms[vm] == nil {
		return cpi.DiskHint{}, f.errf(ctx, "attach_disk", string(vm), cpi.VMNotFound, false, nil, "VM %s not found", vm)
	}
	d := f.disks[disk]
	if d == nil {
		return cpi.DiskHint{}, f.errf(ctx, "attach_disk", string(disk), cpi.DiskNotFound, false, nil, "disk %s not found", disk)
	}
	if d.VM != "" && d.VM != vm {
		return cpi.DiskHint{}, f.errf(ctx, "attach_disk", string(disk), cpi.CloudError, false, nil, "disk %s is attached to VM %s", disk, d.VM)
	}
	d.VM = vm
	return cpi.DiskHint{ID: string(disk)}, nil
}

// DetachDisk implements cpi.CPI.
func (f *Fake) DetachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) error {
	if err := f.enter(ctx, "detach_disk", string(disk)); err != nil {
		return err
	}
	defer f.mu.Unlock()
	if f.vms[vm] == nil {
		return f.errf(ctx, "detach_disk", string(vm), cpi.VMNotFound, false, nil, "VM %s not found", vm)
	}
	d := f.disks[disk]
	if d == nil {
		return f.errf(ctx, "detach_disk", string(disk), cpi.DiskNotFound, false, nil, "disk %s not found", disk)
	}
	if d.VM != vm {
		return f.errf(ctx, "detach_disk", string(disk), cpi.DiskNotAttached, false, nil, "disk %s is not attached to VM %s", disk, vm)
	}
	d.VM = ""
	return nil
}

// GetDisks implements cpi.DiskLister.
func (f *Fake) GetDisks(ctx context.Context, vm cpi.VMCID) ([]cpi.DiskCID, error) {
	if err := f.enter(ctx, "get_disks", string(vm)); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	if f.vms[vm] == nil {
		return nil, f.errf(ctx, "get_disks", string(vm), cpi.VMNotFound, false, nil, "VM %s not found", vm)
	}
	out := []cpi.DiskCID{}
	for _, k := range slices.Sorted(maps.Keys(f.disks)) {
		if f.disks[k].VM == vm {
			out = append(out, k)
		}
	}
	return out, nil
}

// SetDiskMetadata implements cpi.DiskMetadataSetter.
func (f *Fake) SetDiskMetadata(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) error {
	if err := f.enter(ctx, "set_disk_metadata", string(cid)); err != nil {
		return err
	}
	defer f.mu.Unlock()
	d := f.disks[cid]
	if d == nil {
		return f.errf(ctx, "set_disk_metadata", string(cid), cpi.DiskNotFound, false, nil, "disk %s not found", cid)
	}
	d.Metadata = maps.Clone(md)
	return nil
}

// ResizeDisk implements cpi.DiskResizer: grow only, detached only.
func (f *Fake) ResizeDisk(ctx context.Context, cid cpi.DiskCID, newSizeMiB int) error {
	if err := f.enter(ctx, "resize_disk", string(cid)); err != nil {
		return err
	}
	defer f.mu.Unlock()
	d := f.disks[cid]
	switch {
	case d == nil:
		return f.errf(ctx, "resize_disk", string(cid), cpi.DiskNotFound, false, nil, "disk %s not found", cid)
	case newSizeMiB < d.SizeMiB:
		return f.errf(ctx, "resize_disk", string(cid), cpi.NotSupported, false, nil, "cannot shrink disk from %d to %d MiB", d.SizeMiB, newSizeMiB)
	case d.VM != "":
		return f.errf(ctx, "resize_disk", string(cid), cpi.CloudError, false, nil, "disk %s is attached to VM %s", cid, d.VM)
	}
	d.SizeMiB = newSizeMiB
	return nil
}

// SnapshotDisk implements cpi.Snapshotter.
func (f *Fake) SnapshotDisk(ctx context.Context, disk cpi.DiskCID, md cpi.Metadata) (cpi.SnapshotCID, error) {
	if err := f.enter(ctx, "snapshot_disk", string(disk)); err != nil {
		return "", err
	}
	defer f.mu.Unlock()
	if f.disks[disk] == nil {
		return "", f.errf(ctx, "snapshot_disk", string(disk), cpi.DiskNotFound, false, nil, "disk %s not found", disk)
	}
	cid := cpi.SnapshotCID(newID("snap-"))
	f.snapshots[cid] = disk
	return cid, nil
}

// DeleteSnapshot implements cpi.Snapshotter.
func (f *Fake) DeleteSnapshot(ctx context.Context, cid cpi.SnapshotCID) error {
	if err := f.enter(ctx, "delete_snapshot", string(cid)); err != nil {
		return err
	}
	defer f.mu.Unlock()
	delete(f.snapshots, cid)
	return nil
}
