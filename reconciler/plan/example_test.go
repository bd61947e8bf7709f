package plan_test

import (
	"fmt"

	"github.com/bosun-gitops/bosun/reconciler/plan"
)

func ExampleCompute() {
	desired := plan.Desired{
		Name: "demo",
		Cloud: plan.Cloud{
			AZs: []plan.AZ{{Name: "z1"}},
			Networks: []plan.Network{{Name: "default", Type: plan.Manual, Subnets: []plan.Subnet{{
				Range: "10.244.0.0/24", Gateway: "10.244.0.1", Reserved: []string{"10.244.0.2-10.244.0.9"}, AZs: []string{"z1"},
			}}}},
		},
		Groups: []plan.Group{{
			Name: "web", Instances: 2, AZs: []string{"z1"},
			Networks: []plan.GroupNetwork{{Name: "default"}},
			VMType:   "default", Stemcell: plan.Stemcell{OS: "ubuntu-jammy", Version: "1.10"},
			Jobs:   []plan.Job{{Name: "greeter", Release: "demo", Version: "0.1", Hash: "3f2a"}},
			Update: plan.UpdateBlock{Canaries: "1", MaxInFlight: "1", Serial: true, CanaryWatchTime: "1000-30000", UpdateWatchTime: "1000-30000"},
		}},
	}
	n := 0
	newID := func() string { n++; return fmt.Sprintf("uuid-%d", n) }
	p, err := plan.Compute(desired, plan.Observed{}, plan.Options{NewID: newID})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(p)
	for _, b := range p.Groups[0].Batches {
		fmt.Println(b.Kind, b.Instances)
	}
	// Output:
	// Deployment demo
	//
	//   web (canaries 1, max_in_flight 1, serial)
	//   + web/0 (uuid-1) az=z1 default=10.244.0.10 bootstrap: create
	//   + web/1 (uuid-2) az=z1 default=10.244.0.11: create
	//
	// Order: [web]
	// canary [uuid-1]
	// update [uuid-2]
}
