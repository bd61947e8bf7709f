package plan

import (
	"fmt"
	"strings"
	"testing"
)

// testCloud has three AZs, each with one /24 subnet of the "default" network: gateway .1,
// .2-.9 reserved, .200-.250 static. A dynamic "dyn" network serves all three AZs.
func testCloud() Cloud {
	c := Cloud{Networks: []Network{{Name: "default", Type: Manual}, {Name: "dyn", Type: Dynamic}}}
	for i := 1; i <= 3; i++ {
		az := fmt.Sprintf("z%d", i)
		c.AZs = append(c.AZs, AZ{Name: az, CloudPropertiesHash: "az" + az})
		c.Networks[0].Subnets = append(c.Networks[0].Subnets, Subnet{
			Range:    fmt.Sprintf("10.0.%d.0/24", i),
			Gateway:  fmt.Sprintf("10.0.%d.1", i),
			Reserved: []string{fmt.Sprintf("10.0.%d.2-10.0.%d.9", i, i)},
			Static:   []string{fmt.Sprintf("10.0.%d.200-10.0.%d.250", i, i)},
			AZs:      []string{az},
		})
		c.Networks[1].Subnets = append(c.Networks[1].Subnets, Subnet{AZs: []string{az}})
	}
	return c
}

func testGroup(name string, instances int, azs ...string) Group {
	if len(azs) == 0 {
		azs = []string{"z1", "z2", "z3"}
	}
	return Group{
		Name:                name,
		Instances:           instances,
		AZs:                 azs,
		Networks:            []GroupNetwork{{Name: "default"}},
		VMType:              "small",
		CloudPropertiesHash: "small-v1",
		Stemcell:            Stemcell{OS: "ubuntu-jammy", Version: "1.10"},
		EnvHash:             "env-v1",
		Jobs:                []Job{{Name: "web", Release: "demo", Version: "0.1", Hash: "web-v1"}},
		Update:              UpdateBlock{Canaries: "1", MaxInFlight: "2", Serial: true, CanaryWatchTime: "1000-30000", UpdateWatchTime: "1000-30000"},
	}
}

func deployment(groups ...Group) Desired {
	return Desired{Name: "demo", Groups: groups, Cloud: testCloud()}
}

// ids returns a generator of id-1, id-2, ...
func ids() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("id-%d", n) }
}

// idsFrom continues numbering after start, so successive plans in a test never reuse ids.
func idsFrom(start int) func() string {
	n := start
	return func() string { n++; return fmt.Sprintf("id-%d", n) }
}

// apply is what a successful converge leaves behind.
func apply(p Plan) Observed {
	var o Observed
	for _, g := range p.Groups {
		for _, in := range g.Instances {
			if in.Action == Delete {
				continue
			}
			ips := map[string]string{}
			for _, a := range in.IPs {
				if a.IP != "" {
					ips[a.Network] = a.IP
				}
			}
			o.Instances = append(o.Instances, Instance{ID: in.ID, Group: in.Group, Index: in.Index, AZ: in.AZ,
				Bootstrap: in.Bootstrap, VMCID: "vm-" + in.ID, State: "started", IPs: ips, Applied: in.Applied})
		}
	}
	return o
}

// summary reduces a plan to one line per instance that changes:
// "name id az action [disk=…] [ips] [*bootstrap] (reasons)".
func summary(p Plan) []string {
	var out []string
	for _, g := range p.Groups {
		for _, in := range g.Instances {
			if in.Action == Keep && in.Disk == DiskKeep {
				continue
			}
			out = append(out, line(in))
		}
	}
	return out
}

// all reduces every instance, changed or not.
func all(p Plan) []string {
	var out []string
	for _, g := range p.Groups {
		for _, in := range g.Instances {
			out = append(out, line(in))
		}
	}
	return out
}

func line(in InstancePlan) string {
	s := fmt.Sprintf("%s %s %s %s", in.Name(), in.ID, in.AZ, in.Action)
	if in.Disk != DiskKeep {
		s += " disk=" + string(in.Disk)
	}
	for _, a := range in.IPs {
		if a.IP != "" {
			s += " " + a.IP
		}
	}
	if in.Bootstrap {
		s += " *"
	}
	if len(in.Reasons) > 0 {
		rs := make([]string, len(in.Reasons))
		for i, r := range in.Reasons {
			rs[i] = r.String()
		}
		s += " (" + strings.Join(rs, "; ") + ")"
	}
	return s
}

func mustCompute(t *testing.T, d Desired, o Observed, opts Options) Plan {
	t.Helper()
	p, err := Compute(d, o, opts)
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	return p
}
