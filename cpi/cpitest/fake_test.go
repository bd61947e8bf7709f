package cpitest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/cpitest"
	"github.com/google/go-cmp/cmp"
)

func TestFakeConformance(t *testing.T) {
	cpitest.RunConformance(t, func(t *testing.T) cpitest.Setup {
		return cpitest.Setup{
			CPI:           cpitest.NewFake("fake"),
			StemcellImage: "/nonexistent/image",
			StemcellProps: []byte(`{"name":"bosh-fake","version":"1"}`),
			VMProps:       []byte(`{"instance_type":"small"}`),
			Networks:      cpi.Networks{"default": {Type: "dynamic"}},
		}
	})
}

func TestFakeFaults(t *testing.T) {
	ctx := context.Background()
	f := cpitest.NewFake("fake")
	sc, err := f.CreateStemcell(ctx, "img", nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := cpi.VMSpec{AgentID: "a", Stemcell: sc}
	var created, deleted []string
	f.OnVM(func(vm cpitest.FakeVM) {
		// The hook runs outside the lock: calling back into the fake must not deadlock.
		f.HasVM(ctx, vm.CID)
		created = append(created, vm.Spec.AgentID)
	}, func(cid cpi.VMCID) { deleted = append(deleted, string(cid)) })

	f.FailNextRetryable("create_vm", 2, cpi.VMCreationFailed)
	for i := range 2 {
		if _, _, err := f.CreateVM(ctx, spec); !cpi.OkToRetry(err) || !errors.Is(err, cpi.ErrVMCreationFailed) {
			t.Fatalf("call %d: %v, want a retryable VMCreationFailed", i, err)
		}
	}
	vm, _, err := f.CreateVM(ctx, spec)
	if err != nil {
		t.Fatalf("third create_vm: %v", err)
	}
	if got := f.Calls("create_vm"); got != 3 {
		t.Errorf("Calls(create_vm) = %d", got)
	}

	f.FailNext("delete_vm", 1, nil)
	if err := f.DeleteVM(ctx, vm); err == nil || cpi.OkToRetry(err) {
		t.Errorf("injected delete_vm failure = %v", err)
	}

	f.HangNext("has_vm", 1)
	hctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := f.HasVM(hctx, vm); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hung has_vm = %v, want deadline exceeded", err)
	}

	f.LoseVM(vm)
	if ok, err := f.HasVM(ctx, vm); ok || err != nil {
		t.Errorf("has_vm of a lost VM = %v, %v", ok, err)
	}
	if len(f.VMs()) != 0 {
		t.Errorf("VMs after LoseVM = %v", f.VMs())
	}
	if diff := cmp.Diff([]string{"a"}, created); diff != "" {
		t.Errorf("create hook calls (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff([]string{string(vm)}, deleted); diff != "" {
		t.Errorf("delete hook calls (a failed delete and a loss; -want +got)\n%s", diff)
	}
}
