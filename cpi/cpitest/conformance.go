package cpitest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/cpi"
)

// Setup is what a CPI under test hands the conformance suite: the CPI and inputs it
// accepts.
type Setup struct {
	CPI cpi.CPI
	// StemcellImage and StemcellProps are create_stemcell's arguments.
	StemcellImage string
	StemcellProps json.RawMessage
	// VMProps and DiskProps are valid cloud properties (empty is fine).
	VMProps   json.RawMessage
	DiskProps json.RawMessage
	// Networks are the networks each VM gets; include a dynamic one if the CPI can
	// assign addresses.
	Networks cpi.Networks
	// Settings are the agent settings the director would pass (mbus, blobstore).
	Settings cpi.AgentSettings
	// Timeout bounds each subtest (default 2 minutes).
	Timeout time.Duration
}

// RunConformance runs the lifecycle every CPI must pass. newSetup is called once per
// subtest and must return a CPI with no VMs or disks.
func RunConformance(t *testing.T, newSetup func(t *testing.T) Setup) {
	t.Run("Lifecycle", func(t *testing.T) { run(t, newSetup, lifecycle) })
	t.Run("NotFound", func(t *testing.T) { run(t, newSetup, notFound) })
	t.Run("UnknownCloudProperty", func(t *testing.T) { run(t, newSetup, unknownProperty) })
	t.Run("MissingStemcell", func(t *testing.T) { run(t, newSetup, missingStemcell) })
}

func run(t *testing.T, newSetup func(*testing.T) Setup, f func(context.Context, *testing.T, Setup)) {
	s := newSetup(t)
	if s.Timeout == 0 {
		s.Timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	f(cpi.WithInstance(ctx, "conformance/0"), t, s)
}

func mustStemcell(ctx context.Context, t *testing.T, s Setup) cpi.StemcellCID {
	t.Helper()
	sc, err := s.CPI.CreateStemcell(ctx, s.StemcellImage, s.StemcellProps)
	if err != nil {
		t.Fatalf("create_stemcell: %v", err)
	}
	if sc == "" {
		t.Fatal("create_stemcell returned an empty cid")
	}
	t.Cleanup(func() { s.CPI.DeleteStemcell(context.Background(), sc) })
	return sc
}

func vmSpec(s Setup, agentID string, sc cpi.StemcellCID) cpi.VMSpec {
	settings := s.Settings
	settings.AgentID = agentID
	return cpi.VMSpec{AgentID: agentID, Stemcell: sc, StemcellAPIVersion: 2, CloudProperties: s.VMProps,
		Networks: s.Networks, Env: json.RawMessage(`{"bosh":{"group":"conformance"}}`), Settings: settings}
}

func mustVM(ctx context.Context, t *testing.T, s Setup, agentID string, sc cpi.StemcellCID) (cpi.VMCID, cpi.Networks) {
	t.Helper()
	vm, nets, err := s.CPI.CreateVM(ctx, vmSpec(s, agentID, sc))
	if err != nil {
		t.Fatalf("create_vm: %v", err)
	}
	if vm == "" {
		t.Fatal("create_vm returned an empty cid")
	}
	t.Cleanup(func() { s.CPI.DeleteVM(context.Background(), vm) })
	return vm, nets
}

// wantErr checks err is a *cpi.Error of kind from method, naming its CPI, and never
// retryable unless the kind allows it.
func wantErr(t *testing.T, err error, method string, kinds ...cpi.Kind) *cpi.Error {
	t.Helper()
	var e *cpi.Error
	if !errors.As(err, &e) {
		t.Errorf("%s: got %v (%T), want a *cpi.Error of kind %v", method, err, err, kinds)
		return nil
	}
	if !slices.Contains(kinds, e.Kind) {
		t.Errorf("%s: kind %s (%v), want one of %v", method, e.Kind, err, kinds)
	}
	if e.Method != method {
		t.Errorf("%s: error names method %q: %v", method, e.Method, err)
	}
	if e.CPI == "" {
		t.Errorf("%s: error does not name its CPI: %v", method, err)
	}
	if e.OkToRetry && !e.Kind.Retriable() {
		t.Errorf("%s: %s error says ok_to_retry: %v", method, e.Kind, err)
	}
	return e
}

func lifecycle(ctx context.Context, t *testing.T, s Setup) {
	c := s.CPI
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	if info.APIVersion < 1 {
		t.Errorf("info api_version = %d", info.APIVersion)
	}
	sc := mustStemcell(ctx, t, s)
	vm, nets := mustVM(ctx, t, s, "agent-conformance-1", sc)
	for name := range s.Networks {
		n, ok := nets[name]
		if !ok {
			t.Errorf("create_vm networks lack %q: %v", name, nets)
		} else if n.IP == "" && n.Type != "vip" {
			t.Errorf("create_vm network %q has no ip", name)
		}
	}
	if ok, err := c.HasVM(ctx, vm); err != nil || !ok {
		t.Fatalf("has_vm after create = %v, %v", ok, err)
	}

	md := cpi.Metadata{"director": "bosun", "deployment": "conf", "instance_group": "web", "id": "0f3a", "index": "0", "name": "web/0f3a"}
	if err := cpi.SetVMMetadata(ctx, c, vm, md); err != nil && !errors.Is(err, cpi.ErrNotImplemented) {
		t.Errorf("set_vm_metadata: %v", err)
	} else if err == nil {
		if vms, err := cpi.ListVMs(ctx, c); err == nil {
			i := slices.IndexFunc(vms, func(v cpi.VMInfo) bool { return v.CID == vm })
			if i < 0 {
				t.Errorf("list_vms lacks %s: %v", vm, vms)
			} else if vms[i].Metadata["name"] != "web/0f3a" || vms[i].AgentID != "agent-conformance-1" {
				t.Errorf("list_vms[%s] = %+v, want its metadata and agent id", vm, vms[i])
			}
		} else if !errors.Is(err, cpi.ErrNotImplemented) {
			t.Errorf("list_vms: %v", err)
		}
	}

	disk, err := c.CreateDisk(ctx, 1024, s.DiskProps, vm)
	if err != nil {
		t.Fatalf("create_disk: %v", err)
	}
	t.Cleanup(func() { c.DeleteDisk(context.Background(), disk) })
	if ok, err := c.HasDisk(ctx, disk); err != nil || !ok {
		t.Errorf("has_disk after create = %v, %v", ok, err)
	}
	if err := cpi.SetDiskMetadata(ctx, c, disk, cpi.Metadata{"deployment": "conf"}); err != nil && !errors.Is(err, cpi.ErrNotImplemented) {
		t.Errorf("set_disk_metadata: %v", err)
	}
	hint, err := c.AttachDisk(ctx, vm, disk)
	if err != nil {
		t.Fatalf("attach_disk: %v", err)
	}
	if hint.IsZero() {
		t.Error("attach_disk returned an empty hint")
	}
	if got, err := cpi.GetDisks(ctx, c, vm); err == nil {
		if !slices.Equal(got, []cpi.DiskCID{disk}) {
			t.Errorf("get_disks after attach = %v, want [%s]", got, disk)
		}
	} else if !errors.Is(err, cpi.ErrNotImplemented) {
		t.Errorf("get_disks: %v", err)
	}
	if snap, err := cpi.SnapshotDisk(ctx, c, disk, cpi.Metadata{"deployment": "conf"}); err == nil {
		if err := cpi.DeleteSnapshot(ctx, c, snap); err != nil {
			t.Errorf("delete_snapshot: %v", err)
		}
		if err := cpi.DeleteSnapshot(ctx, c, snap); err != nil {
			t.Errorf("delete_snapshot twice: %v (deletes must be idempotent)", err)
		}
	} else if !errors.Is(err, cpi.ErrNotImplemented) {
		t.Errorf("snapshot_disk: %v", err)
	}
	if err := c.DetachDisk(ctx, vm, disk); err != nil {
		t.Fatalf("detach_disk: %v", err)
	}
	if got, err := cpi.GetDisks(ctx, c, vm); err == nil && len(got) != 0 {
		t.Errorf("get_disks after detach = %v", got)
	}
	err = c.DetachDisk(ctx, vm, disk)
	wantErr(t, err, "detach_disk", cpi.DiskNotAttached)
	if err := cpi.ResizeDisk(ctx, c, disk, 2048); err != nil && !errors.Is(err, cpi.ErrNotSupported) {
		t.Errorf("resize_disk: %v", err)
	}
	// Data written to an attached disk survives detach and re-attach is not testable
	// through the contract; that lives in each CPI's own tests.
	if err := c.DeleteDisk(ctx, disk); err != nil {
		t.Fatalf("delete_disk: %v", err)
	}
	if ok, err := c.HasDisk(ctx, disk); err != nil || ok {
		t.Errorf("has_disk after delete = %v, %v", ok, err)
	}
	if err := c.DeleteDisk(ctx, disk); err != nil {
		t.Errorf("delete_disk twice: %v (deletes must be idempotent)", err)
	}

	if err := cpi.RebootVM(ctx, c, vm); err != nil && !errors.Is(err, cpi.ErrNotImplemented) {
		t.Errorf("reboot_vm: %v", err)
	}
	if ok, err := c.HasVM(ctx, vm); err != nil || !ok {
		t.Errorf("has_vm after reboot = %v, %v", ok, err)
	}

	if err := c.DeleteVM(ctx, vm); err != nil {
		t.Fatalf("delete_vm: %v", err)
	}
	if ok, err := c.HasVM(ctx, vm); err != nil || ok {
		t.Errorf("has_vm after delete = %v, %v", ok, err)
	}
	if err := c.DeleteVM(ctx, vm); err != nil {
		t.Errorf("delete_vm twice: %v (deletes must be idempotent)", err)
	}
	if vms, err := cpi.ListVMs(ctx, c); err == nil && slices.ContainsFunc(vms, func(v cpi.VMInfo) bool { return v.CID == vm }) {
		t.Errorf("list_vms still has deleted %s", vm)
	}
	if err := c.DeleteStemcell(ctx, sc); err != nil {
		t.Errorf("delete_stemcell: %v", err)
	}
	if err := c.DeleteStemcell(ctx, sc); err != nil {
		t.Errorf("delete_stemcell twice: %v (deletes must be idempotent)", err)
	}
}

func notFound(ctx context.Context, t *testing.T, s Setup) {
	c := s.CPI
	const noVM, noDisk = cpi.VMCID("vm-conformance-missing"), cpi.DiskCID("disk-conformance-missing")
	if ok, err := c.HasVM(ctx, noVM); err != nil || ok {
		t.Errorf("has_vm(missing) = %v, %v; want false, nil", ok, err)
	}
	if ok, err := c.HasDisk(ctx, noDisk); err != nil || ok {
		t.Errorf("has_disk(missing) = %v, %v; want false, nil", ok, err)
	}
	if err := c.DeleteVM(ctx, noVM); err != nil {
		t.Errorf("delete_vm(missing): %v (want success: deletes are idempotent)", err)
	}
	if err := c.DeleteDisk(ctx, noDisk); err != nil {
		t.Errorf("delete_disk(missing): %v (want success)", err)
	}
	if err := cpi.SetVMMetadata(ctx, c, noVM, cpi.Metadata{"a": "b"}); !errors.Is(err, cpi.ErrNotImplemented) {
		wantErr(t, err, "set_vm_metadata", cpi.VMNotFound)
	}
	if err := cpi.RebootVM(ctx, c, noVM); !errors.Is(err, cpi.ErrNotImplemented) {
		wantErr(t, err, "reboot_vm", cpi.VMNotFound)
	}
	sc := mustStemcell(ctx, t, s)
	vm, _ := mustVM(ctx, t, s, "agent-conformance-2", sc)
	_, err := c.AttachDisk(ctx, vm, noDisk)
	wantErr(t, err, "attach_disk", cpi.DiskNotFound)
	disk, err := c.CreateDisk(ctx, 100, s.DiskProps, "")
	if err != nil {
		t.Fatalf("create_disk: %v", err)
	}
	t.Cleanup(func() { c.DeleteDisk(context.Background(), disk) })
	_, err = c.AttachDisk(ctx, noVM, disk)
	wantErr(t, err, "attach_disk", cpi.VMNotFound)
	wantErr(t, c.DetachDisk(ctx, vm, disk), "detach_disk", cpi.DiskNotAttached)
	if err := c.DeleteVM(ctx, vm); err != nil {
		t.Errorf("delete_vm: %v", err)
	}
}

func withKey(t *testing.T, raw json.RawMessage, key string) json.RawMessage {
	m := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("setup cloud properties: %v", err)
		}
	}
	m[key] = true
	b, _ := json.Marshal(m)
	return b
}

func unknownProperty(ctx context.Context, t *testing.T, s Setup) {
	const key = "bosun_conformance_no_such_key"
	c := s.CPI
	sc := mustStemcell(ctx, t, s)
	spec := vmSpec(s, "agent-conformance-3", sc)
	spec.CloudProperties = withKey(t, s.VMProps, key)
	vm, _, err := c.CreateVM(ctx, spec)
	if err == nil {
		c.DeleteVM(ctx, vm)
		t.Fatal("create_vm accepted an unknown cloud property")
	}
	if e := wantErr(t, err, "create_vm", cpi.VMCreationFailed, cpi.CloudError); e != nil && !strings.Contains(err.Error(), key) {
		t.Errorf("create_vm error does not name the key %q: %v", key, err)
	}
	if vms, err := cpi.ListVMs(ctx, c); err == nil && len(vms) != 0 {
		t.Errorf("a rejected create_vm left VMs behind: %v", vms)
	}
	_, err = c.CreateDisk(ctx, 100, withKey(t, s.DiskProps, key), "")
	if e := wantErr(t, err, "create_disk", cpi.CloudError); e != nil && !strings.Contains(err.Error(), key) {
		t.Errorf("create_disk error does not name the key %q: %v", key, err)
	}
}

func missingStemcell(ctx context.Context, t *testing.T, s Setup) {
	_, _, err := s.CPI.CreateVM(ctx, vmSpec(s, "agent-conformance-4", "stemcell-conformance-missing"))
	if e := wantErr(t, err, "create_vm", cpi.VMCreationFailed, cpi.CloudError); e != nil && !strings.Contains(err.Error(), "stemcell-conformance-missing") {
		t.Errorf("create_vm error does not name the stemcell: %v", err)
	}
}
