package api_test

import (
	"context"
	"testing"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/state"
)

// seedBig puts one deployment of n instances, each with a VM, in e's store.
func seedBig(b *testing.B, e *env, n int) {
	ctx := b.Context()
	if err := e.store.PutDeployment(ctx, state.Deployment{Name: "big"}); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		in, err := e.store.PutInstance(ctx, state.Instance{Deployment: "big", Group: "web", Index: i, AZ: "z1",
			VMCID: "vm-" + itoa(int64(i)), AgentID: "agent-" + itoa(int64(i)), IPs: []string{"10.1.0.1"}})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.store.PutVM(ctx, state.VM{CID: in.VMCID, Deployment: "big", InstanceID: in.ID, AgentID: in.AgentID}); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.store.Analyze(ctx); err != nil {
		b.Fatal(err)
	}
}

type instantProber struct{}

func (instantProber) Probe(ctx context.Context, inst state.Instance) (api.Probe, error) {
	return api.Probe{JobState: "running", Processes: []api.Process{{Name: "nginx", State: "running"}}}, nil
}

// BenchmarkListInstances: GET /deployments/big/instances of 1,000 instances through the
// client: auth, the store query, JSON both ways. StoreOnly is the query alone, PS adds
// an agent probe per instance (answering at once, so the API's own cost shows).
func BenchmarkListInstances(b *testing.B) {
	e := newEnv(b, api.Options{Prober: instantProber{}})
	seedBig(b, e, 1000)
	c := e.client(b, readToken)
	ctx := b.Context()
	b.Run("StoreOnly", func(b *testing.B) {
		for b.Loop() {
			if is, err := e.store.Instances(ctx, "big"); err != nil || len(is) != 1000 {
				b.Fatal(len(is), err)
			}
		}
	})
	b.Run("API", func(b *testing.B) {
		for b.Loop() {
			if is, err := c.Instances(ctx, "big", false); err != nil || len(is) != 1000 {
				b.Fatal(len(is), err)
			}
		}
	})
	b.Run("APIWithPS", func(b *testing.B) {
		for b.Loop() {
			if is, err := c.Instances(ctx, "big", true); err != nil || len(is) != 1000 {
				b.Fatal(len(is), err)
			}
		}
	})
	b.Run("VMs", func(b *testing.B) {
		for b.Loop() {
			if vms, err := c.VMs(ctx, "big", false); err != nil || len(vms) != 1000 {
				b.Fatal(len(vms), err)
			}
		}
	})
}
