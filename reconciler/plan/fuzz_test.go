package plan

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// bytesReader hands out the fuzz input a byte at a time, zeros once it runs out, so any
// input decodes to some deployment.
type bytesReader struct{ b []byte }

func (r *bytesReader) next() int {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return int(c)
}

func pick[T any](r *bytesReader, pool ...T) T { return pool[r.next()%len(pool)] }

// choose picks from good, or from bad when the next byte is high: invalid input stays
// reachable while most inputs get far enough into the planner to test it.
func choose[T any](r *bytesReader, good []T, bad ...T) T {
	if len(bad) > 0 && r.next() >= 240 {
		return pick(r, bad...)
	}
	return pick(r, good...)
}

func list[T any](v ...T) []T { return v }

// decodeInput turns bytes into a small deployment, cloud-config and observed state drawn
// from pools of mostly valid values.
func decodeInput(data []byte) (Desired, Observed, Options) {
	r := &bytesReader{b: data}
	var d Desired
	d.Name = "fuzz"
	nAZ := choose(r, list(3, 3, 2), 0, 1)
	for i := 1; i <= nAZ; i++ {
		d.Cloud.AZs = append(d.Cloud.AZs, AZ{Name: fmt.Sprintf("z%d", i), CloudPropertiesHash: pick(r, "", "a", "b")})
	}
	azName := func() string { return choose(r, list("z1", "z2", "z3"), "", "zz") }
	manual := Network{Name: "m", Type: choose(r, list(Manual, NetworkType("")), NetworkType("weird"))}
	for i := 0; i < 1+r.next()%3; i++ {
		n := i + 1
		sub := Subnet{
			Range:    choose(r, list(fmt.Sprintf("10.0.%d.0/28", n), fmt.Sprintf("10.0.%d.0/29", n), fmt.Sprintf("10.0.%d.0/24", n), fmt.Sprintf("fd00::%d:0/124", n)), "bogus", "10.0.0.0/16", "10.0.1.0/32"),
			Gateway:  choose(r, list(fmt.Sprintf("10.0.%d.1", n), "", fmt.Sprintf("fd00::%d:1", n)), "junk", "10.9.9.9"),
			Reserved: choose(r, list([]string(nil), []string{fmt.Sprintf("10.0.%d.2-10.0.%d.4", n, n)}), []string{"x-y"}, []string{fmt.Sprintf("10.0.%d.9-10.0.%d.3", n, n)}),
			Static:   choose(r, list([]string(nil), []string{fmt.Sprintf("10.0.%d.10-10.0.%d.13", n, n)}, []string{fmt.Sprintf("10.0.%d.5", n)}), []string{fmt.Sprintf("10.0.%d.3", n)}),
			AZs:      choose(r, list([]string{fmt.Sprintf("z%d", n)}, []string{"z1", "z2", "z3"}), nil, []string{"zz"}),
		}
		manual.Subnets = append(manual.Subnets, sub)
	}
	vip := Network{Name: "v", Type: VIP}
	if r.next()%2 == 1 {
		vip.Subnets = []Subnet{{Static: []string{"192.0.2.1-192.0.2.3"}, AZs: pick(r, []string(nil), []string{"z1"})}}
	}
	d.Cloud.Networks = []Network{manual, {Name: "d", Type: Dynamic}, vip}
	if r.next() >= 250 {
		d.Cloud.Networks = append(d.Cloud.Networks, manual) // a duplicate name
	}

	ipPool := []string{"10.0.1.5", "10.0.1.10", "10.0.1.11", "10.0.2.10", "10.0.2.12", "10.0.1.6", "10.0.3.13", "192.0.2.1", "10.0.1.10-10.0.1.12"}
	for i := 0; i < r.next()%4; i++ {
		g := Group{
			Name:      choose(r, list(fmt.Sprintf("g%d", i)), "g0", ""),
			Instances: choose(r, list(0, 1, 2, 3, 5), -1, maxInstances+1),
			VMType:    pick(r, "s", "l"),
			Stemcell:  Stemcell{OS: "os", Version: pick(r, "1", "2")},
			Disk:      Disk{Size: choose(r, list(0, 10, 20), -5), Type: pick(r, "", "ssd")},
			EnvHash:   pick(r, "", "e"),
			Jobs:      choose(r, list([]Job(nil), []Job{{Name: "j", Hash: "1"}}), []Job{{Name: "j"}, {Name: "j"}}),
			Update: UpdateBlock{
				Canaries:        choose(r, list("1", "0", "50%", "3"), "200%", "x", ""),
				MaxInFlight:     choose(r, list("1", "2", "25%", "100%"), "0", "-3"),
				Serial:          r.next()%2 == 1,
				CanaryWatchTime: choose(r, list("1000", "1-2"), "5-1", ""),
				UpdateWatchTime: "1000",
				VMStrategy:      choose(r, list("", DeleteCreate, CreateSwapDelete), "bad"),
			},
			Lifecycle: choose(r, list(Lifecycle(""), Service, Errand), Lifecycle("odd")),
		}
		for j := 0; j < 1+r.next()%3; j++ {
			if az := azName(); !slices.Contains(g.AZs, az) || r.next() >= 250 {
				g.AZs = append(g.AZs, az)
			}
		}
		nets := choose(r, list(list("m"), list("m"), list("d"), list("m", "d"), list("v", "m")), list("x"), list("m", "m"), list[string]())
		for j, name := range nets {
			gn := GroupNetwork{Name: name}
			if len(nets) > 1 && j == 0 {
				gn.Default = []string{"dns", "gateway"}
			}
			if r.next()%4 == 0 {
				for k := 0; k < g.Instances && k < 6; k++ {
					gn.StaticIPs = append(gn.StaticIPs, pick(r, ipPool...))
				}
			}
			g.Networks = append(g.Networks, gn)
		}
		if r.next()%4 == 0 {
			g.MigratedFrom = []Migration{{Name: choose(r, list("old"), "g0", "g1"), AZ: azName()}}
		}
		d.Groups = append(d.Groups, g)
	}

	var o Observed
	for i := 0; i < r.next()%7; i++ {
		in := Instance{
			ID:           choose(r, list(fmt.Sprintf("o%d", i)), "", "o0"),
			Group:        choose(r, list("g0", "g1", "old"), ""),
			Index:        choose(r, list(i, i+3, 0, 1), -1),
			AZ:           azName(),
			Bootstrap:    r.next()%3 == 0,
			VMCID:        pick(r, "vm", "vm", ""),
			VMMissing:    r.next()%5 == 0,
			Unresponsive: r.next()%7 == 0,
			Applied:      Fingerprint{Stemcell: pick(r, "", "os/1"), Disk: Disk{Size: pick(r, 0, 10)}},
		}
		if r.next()%2 == 1 {
			in.IPs = map[string]string{pick(r, "m", "d", "v", "x"): choose(r, ipPool[:8], "nope")}
		}
		o.Instances = append(o.Instances, in)
	}
	if r.next()%3 == 0 {
		o.IPsInUse = map[string][]string{"m": {choose(r, ipPool[:8], "nope")}}
	}
	d.Deleted = r.next() >= 245
	opts := Options{Fix: r.next()%2 == 1, Recreate: r.next()%5 == 0}
	if r.next() < 250 {
		opts.NewID = idsFrom(100)
	}
	return d, o, opts
}

func FuzzCompute(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 0, 0, 0, 0, 3, 2, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0})
	f.Add([]byte{2, 1, 2, 0, 2, 2, 0, 1, 1, 0, 2, 1, 1, 0, 1, 1, 2, 2, 1, 1, 1, 1, 1, 3, 1, 1, 1, 2, 1, 1, 1, 2, 0, 1, 1, 3, 4, 2, 1, 0, 1, 1})
	f.Add([]byte("a fuzz seed that is mostly printable bytes and so decodes to something odd"))
	f.Add([]byte{1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 2, 1, 0, 1, 2, 3, 6, 1, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 1, 1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		d, o, opts := decodeInput(data)
		before, _ := json.Marshal([]any{d, o})
		p, err := Compute(d, o, opts)
		if after, _ := json.Marshal([]any{d, o}); string(after) != string(before) {
			t.Fatalf("Compute modified its inputs:\n%s\n%s", before, after)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), `plan deployment "fuzz": `) {
				t.Fatalf("error does not name the deployment: %v", err)
			}
			return
		}
		checkInvariants(t, d, o, p)
		if d.Deleted {
			return
		}
		// What converging the plan leaves behind needs no further change.
		after := apply(p)
		after.IPsInUse = o.IPsInUse
		again, err := Compute(d, after, Options{})
		if err != nil {
			t.Fatalf("re-plan after converge: %v\nplan:\n%s", err, p)
		}
		if !again.Empty() {
			t.Fatalf("re-plan after converge is not empty:\n%s\nfirst plan:\n%s", again, p)
		}
	})
}

func checkInvariants(t *testing.T, d Desired, o Observed, p Plan) {
	t.Helper()
	seen := map[string]bool{}
	ips := map[string]bool{}
	want := map[string]int{}
	for _, g := range d.Groups {
		want[g.Name] = g.Instances
	}
	for _, g := range p.Groups {
		indexes := map[int]bool{}
		kept := 0
		for _, in := range g.Instances {
			if seen[in.ID] {
				t.Fatalf("id %s planned twice", in.ID)
			}
			seen[in.ID] = true
			if in.Action == Delete {
				continue
			}
			kept++
			if indexes[in.Index] {
				t.Fatalf("index %s planned twice", in.Name())
			}
			indexes[in.Index] = true
			for _, a := range in.IPs {
				key := a.Network + " " + a.IP
				if a.IP != "" && a.Network != "d" && ips[key] {
					t.Fatalf("%s: address %s given twice", in.Name(), key)
				}
				ips[key] = true
			}
		}
		if !g.Removed && !d.Deleted && kept != want[g.Name] {
			t.Fatalf("group %s: %d instances planned, want %d", g.Name, kept, want[g.Name])
		}
	}
	for _, in := range o.Instances {
		if !seen[in.ID] {
			t.Fatalf("observed instance %s (%s/%d) is missing from the plan", in.ID, in.Group, in.Index)
		}
	}
	if _, err := json.Marshal(p); err != nil {
		t.Fatal(err)
	}
	_ = p.String()
}
