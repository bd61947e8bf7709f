package plan

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFreshDeploy(t *testing.T) {
	web := testGroup("web", 3)
	web.Disk = Disk{Size: 1024, Type: "default"}
	p := mustCompute(t, deployment(web), Observed{}, Options{NewID: ids()})
	want := []string{
		"web/0 id-1 z1 create disk=create 10.0.1.10 *",
		"web/1 id-2 z2 create disk=create 10.0.2.10",
		"web/2 id-3 z3 create disk=create 10.0.3.10",
	}
	if diff := cmp.Diff(want, summary(p)); diff != "" {
		t.Errorf("instances (-want +got):\n%s", diff)
	}
	wantBatches := []Batch{
		{Kind: BatchCanary, AZ: "z1", Instances: []string{"id-1"}},
		{Kind: BatchUpdate, AZ: "z2", Instances: []string{"id-2"}},
		{Kind: BatchUpdate, AZ: "z3", Instances: []string{"id-3"}},
	}
	if diff := cmp.Diff(wantBatches, p.Groups[0].Batches); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
	if p.Empty() {
		t.Error("Empty() = true for a fresh deploy")
	}
	// Converging the plan and planning again finds nothing to do.
	again := mustCompute(t, deployment(web), apply(p), Options{})
	if !again.Empty() {
		t.Errorf("re-plan after converge is not empty:\n%s", again)
	}
	if diff := cmp.Diff(all(p)[0][:11], all(again)[0][:11]); diff != "" {
		t.Errorf("ids moved: %s", diff)
	}
}

func TestScaleKeepsIDs(t *testing.T) {
	newID := ids()
	p2 := mustCompute(t, deployment(testGroup("web", 2)), Observed{}, Options{NewID: newID})
	p3 := mustCompute(t, deployment(testGroup("web", 3)), apply(p2), Options{NewID: newID})
	if diff := cmp.Diff([]string{"web/2 id-3 z3 create 10.0.3.10"}, summary(p3)); diff != "" {
		t.Errorf("2 -> 3 (-want +got):\n%s", diff)
	}
	p1 := mustCompute(t, deployment(testGroup("web", 1)), apply(p3), Options{NewID: newID})
	want := []string{
		"web/1 id-2 z2 delete 10.0.2.10 (scaled down to 1 instances)",
		"web/2 id-3 z3 delete 10.0.3.10 (scaled down to 1 instances)",
	}
	if diff := cmp.Diff(want, summary(p1)); diff != "" {
		t.Errorf("3 -> 1 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"web/0 id-1 z1 unchanged 10.0.1.10 *"}, all(p1)[:1]); diff != "" {
		t.Errorf("kept instance (-want +got):\n%s", diff)
	}
	wantBatches := []Batch{{Kind: BatchDelete, Instances: []string{"id-2", "id-3"}}}
	if diff := cmp.Diff(wantBatches, p1.Groups[0].Batches); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
}

func TestScaleDownRemovesFromMostUsedAZHighestIndexFirst(t *testing.T) {
	p4 := mustCompute(t, deployment(testGroup("web", 4, "z1", "z2")), Observed{}, Options{NewID: ids()})
	// z1 holds web/0 and web/2, z2 holds web/1 and web/3; make z1 the most used.
	o := apply(p4)
	o.Instances[3].AZ, o.Instances[3].IPs["default"] = "z1", "10.0.1.12"
	p := mustCompute(t, deployment(testGroup("web", 3, "z1", "z2")), o, Options{})
	want := []string{"web/3 id-4 z1 delete 10.0.1.12 (scaled down to 3 instances)"}
	if diff := cmp.Diff(want, summary(p)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestAZRemovedRebalances(t *testing.T) {
	newID := ids()
	p := mustCompute(t, deployment(testGroup("web", 3)), Observed{}, Options{NewID: newID})
	p = mustCompute(t, deployment(testGroup("web", 3, "z1", "z2")), apply(p), Options{NewID: newID})
	// BOSH never reuses the index of an instance being deleted in the same deploy.
	want := []string{
		"web/3 id-4 z1 create 10.0.1.11",
		"web/2 id-3 z3 delete 10.0.3.10 (az removed z3)",
	}
	if diff := cmp.Diff(want, summary(p)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestStaticIPs(t *testing.T) {
	static := func(ips ...string) Desired {
		g := testGroup("db", len(ips), "z1", "z2")
		g.Networks[0].StaticIPs = ips
		g.Update.VMStrategy = CreateSwapDelete
		return deployment(g)
	}
	newID := ids()
	steps := []struct {
		name string
		d    Desired
		want []string
	}{
		{"fresh", static("10.0.1.200", "10.0.2.200"), []string{
			"db/0 id-1 z1 create 10.0.1.200 *",
			"db/1 id-2 z2 create 10.0.2.200",
		}},
		{"one address changes", static("10.0.1.200", "10.0.2.201"), []string{
			"db/1 id-2 z2 recreate 10.0.2.201 (network default 10.0.2.200 -> 10.0.2.201)",
		}},
		{"reordering the list moves nothing", static("10.0.2.201", "10.0.1.200"), nil},
		{"an instance in the address's az takes it", static("10.0.2.201", "10.0.1.201"), []string{
			"db/0 id-1 z1 recreate 10.0.1.201 * (network default 10.0.1.200 -> 10.0.1.201)",
		}},
		{"an address moves to another az", static("10.0.1.201", "10.0.1.202"), []string{
			"db/2 id-3 z1 create 10.0.1.202",
			"db/1 id-2 z2 delete 10.0.2.201 (static IP removed 10.0.2.201)",
		}},
	}
	var o Observed
	for _, s := range steps {
		p, err := Compute(s.d, o, Options{NewID: newID})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if diff := cmp.Diff(s.want, summary(p)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, diff)
		}
		for _, in := range p.Groups[0].Instances {
			if in.Action != Delete && in.VMStrategy != DeleteCreate {
				t.Errorf("%s: %s vm_strategy %s, want delete-create for a static IP", s.name, in.Name(), in.VMStrategy)
			}
		}
		o = apply(p)
	}
}

func TestRecreateAndUpdateReasons(t *testing.T) {
	base := deployment(testGroup("web", 1, "z1"))
	base.Groups[0].Disk = Disk{Size: 1024, Type: "ssd"}
	deployed := apply(mustCompute(t, base, Observed{}, Options{NewID: ids()}))
	tests := []struct {
		name    string
		desired func(d *Desired)
		obs     func(o *Observed)
		opts    Options
		want    string
	}{
		{name: "stemcell", desired: func(d *Desired) { d.Groups[0].Stemcell.Version = "1.11" },
			want: "recreate 10.0.1.10 * (stemcell ubuntu-jammy/1.10 -> ubuntu-jammy/1.11)"},
		{name: "vm_type", desired: func(d *Desired) { d.Groups[0].VMType = "large" },
			want: "recreate 10.0.1.10 * (vm_type or cloud properties changed)"},
		{name: "vm cloud properties", desired: func(d *Desired) { d.Groups[0].CloudPropertiesHash = "small-v2" },
			want: "recreate 10.0.1.10 * (vm_type or cloud properties changed)"},
		{name: "az cloud properties", desired: func(d *Desired) { d.Cloud.AZs[0].CloudPropertiesHash = "z1-v2" },
			want: "recreate 10.0.1.10 * (vm_type or cloud properties changed)"},
		{name: "vm extension", desired: func(d *Desired) { d.Groups[0].VMExtensions = []string{"lb"} },
			want: "recreate 10.0.1.10 * (vm_type or cloud properties changed)"},
		{name: "subnet cloud properties", desired: func(d *Desired) { d.Cloud.Networks[0].Subnets[0].CloudPropertiesHash = "vlan-2" },
			want: "recreate 10.0.1.10 * (network settings changed)"},
		{name: "network added", desired: func(d *Desired) {
			d.Groups[0].Networks = []GroupNetwork{{Name: "default", Default: []string{"dns", "gateway"}}, {Name: "dyn"}}
		}, want: "recreate 10.0.1.10 * (network settings changed)"},
		{name: "env", desired: func(d *Desired) { d.Groups[0].EnvHash = "env-v2" },
			want: "recreate 10.0.1.10 * (env changed)"},
		{name: "vm missing", obs: func(o *Observed) { o.Instances[0].VMMissing = true },
			want: "recreate 10.0.1.10 * (vm missing vm-id-1)"},
		{name: "unresponsive with fix", obs: func(o *Observed) { o.Instances[0].Unresponsive = true }, opts: Options{Fix: true},
			want: "recreate 10.0.1.10 * (unresponsive)"},
		{name: "recreate requested", opts: Options{Recreate: true},
			want: "recreate 10.0.1.10 * (recreate requested)"},
		{name: "jobs", desired: func(d *Desired) { d.Groups[0].Jobs[0].Hash = "web-v2" },
			want: "update 10.0.1.10 * (jobs changed)"},
		{name: "stemcell and jobs", desired: func(d *Desired) { d.Groups[0].Jobs[0].Hash = "web-v2"; d.Groups[0].Stemcell.Version = "2" },
			want: "recreate 10.0.1.10 * (stemcell ubuntu-jammy/1.10 -> ubuntu-jammy/2; jobs changed)"},
		{name: "disk grows", desired: func(d *Desired) { d.Groups[0].Disk.Size = 2048 },
			want: "update disk=resize 10.0.1.10 * (persistent disk resize 1024 MB ssd -> 2048 MB ssd)"},
		{name: "disk shrinks", desired: func(d *Desired) { d.Groups[0].Disk.Size = 512 },
			want: "update disk=migrate 10.0.1.10 * (persistent disk migrate 1024 MB ssd -> 512 MB ssd)"},
		{name: "disk type", desired: func(d *Desired) { d.Groups[0].Disk.Type = "hdd" },
			want: "update disk=migrate 10.0.1.10 * (persistent disk migrate 1024 MB ssd -> 1024 MB hdd)"},
		{name: "disk removed", desired: func(d *Desired) { d.Groups[0].Disk = Disk{} },
			want: "update disk=delete 10.0.1.10 * (persistent disk delete 1024 MB ssd -> none)"},
		{name: "bootstrap elected", obs: func(o *Observed) { o.Instances[0].Bootstrap = false },
			want: "update 10.0.1.10 * (bootstrap elected)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := deployment(testGroup("web", 1, "z1"))
			d.Groups[0].Disk = Disk{Size: 1024, Type: "ssd"}
			if tt.desired != nil {
				tt.desired(&d)
			}
			o := Observed{Instances: append([]Instance(nil), deployed.Instances...)}
			if tt.obs != nil {
				tt.obs(&o)
			}
			p := mustCompute(t, d, o, tt.opts)
			if diff := cmp.Diff([]string{"web/0 id-1 z1 " + tt.want}, summary(p)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	t.Run("disk added", func(t *testing.T) {
		d := deployment(testGroup("web", 1, "z1"))
		o := apply(mustCompute(t, d, Observed{}, Options{NewID: ids()}))
		d.Groups[0].Disk = Disk{Size: 100}
		want := []string{"web/0 id-1 z1 update disk=create 10.0.1.10 * (persistent disk create none -> 100 MB)"}
		if diff := cmp.Diff(want, summary(mustCompute(t, d, o, Options{}))); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("unresponsive without fix", func(t *testing.T) {
		o := Observed{Instances: append([]Instance(nil), deployed.Instances...)}
		o.Instances[0].Unresponsive = true
		_, err := Compute(base, o, Options{})
		if err == nil || !strings.Contains(err.Error(), "web/0 (id-1) is unresponsive") {
			t.Errorf("err = %v, want it to name the unresponsive instance", err)
		}
	})
}

func TestUpdateArithmetic(t *testing.T) {
	tests := []struct {
		name        string
		canaries    string
		maxInFlight string
		azs         []string
		instances   int
		want        [][]string // kind:az:count per batch
	}{
		{"percentage of changed instances", "1", "25%", []string{"z1"}, 10,
			[][]string{{"canary", "z1", "1"}, {"update", "z1", "2"}, {"update", "z1", "2"}, {"update", "z1", "2"}, {"update", "z1", "2"}, {"update", "z1", "1"}}},
		{"percentage floors at one", "0", "10%", []string{"z1"}, 3,
			[][]string{{"update", "z1", "1"}, {"update", "z1", "1"}, {"update", "z1", "1"}}},
		{"canary percentage floors to zero", "10%", "100%", []string{"z1"}, 5,
			[][]string{{"update", "z1", "5"}}},
		{"canaries capped at size and split by max_in_flight", "4", "2", []string{"z1"}, 3,
			[][]string{{"canary", "z1", "2"}, {"canary", "z1", "1"}}},
		{"canaries only from the first az, each az its own max_in_flight", "2", "50%", []string{"z1", "z2"}, 8,
			[][]string{{"canary", "z1", "2"}, {"update", "z1", "2"}, {"update", "z2", "2"}, {"update", "z2", "2"}}},
		{"max_in_flight percentage of each az's changes", "1", "50%", []string{"z1", "z2"}, 6,
			[][]string{{"canary", "z1", "1"}, {"update", "z1", "1"}, {"update", "z1", "1"}, {"update", "z2", "1"}, {"update", "z2", "1"}, {"update", "z2", "1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := testGroup("web", tt.instances, tt.azs...)
			g.Update.Canaries, g.Update.MaxInFlight = tt.canaries, tt.maxInFlight
			p := mustCompute(t, deployment(g), Observed{}, Options{NewID: ids()})
			var got [][]string
			for _, b := range p.Groups[0].Batches {
				got = append(got, []string{string(b.Kind), b.AZ, itoa(len(b.Instances))})
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("batches (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpdateOverridesAndParallelAZs(t *testing.T) {
	g := testGroup("web", 6, "z1", "z2")
	g.Update.InitialDeployAZUpdateStrategy = "parallel"
	batches := func(p Plan) [][]string {
		var out [][]string
		for _, b := range p.Groups[0].Batches {
			out = append(out, []string{string(b.Kind), b.AZ, itoa(len(b.Instances))})
		}
		return out
	}
	p := mustCompute(t, deployment(g), Observed{}, Options{NewID: ids(), Canaries: "2", MaxInFlight: "50%"})
	want := [][]string{{"canary", "", "2"}, {"update", "", "3"}, {"update", "", "1"}}
	if diff := cmp.Diff(want, batches(p)); diff != "" {
		t.Errorf("first deploy, azs in parallel (-want +got):\n%s", diff)
	}
	g.Jobs[0].Hash = "web-v2"
	p = mustCompute(t, deployment(g), apply(p), Options{Canaries: "2", MaxInFlight: "50%"})
	want = [][]string{{"canary", "z1", "1"}, {"canary", "z1", "1"}, {"update", "z1", "1"}, {"update", "z2", "1"}, {"update", "z2", "1"}, {"update", "z2", "1"}}
	if diff := cmp.Diff(want, batches(p)); diff != "" {
		t.Errorf("later deploys go one az at a time (-want +got):\n%s", diff)
	}
}

func TestStagesFollowSerial(t *testing.T) {
	var groups []Group
	for _, g := range []struct {
		name   string
		serial bool
	}{{"a", true}, {"b", false}, {"c", false}, {"d", true}, {"e", false}, {"f", true}, {"g", true}} {
		gr := testGroup(g.name, 1)
		gr.Update.Serial = g.serial
		groups = append(groups, gr)
	}
	old := Instance{ID: "old-0", Group: "legacy", Index: 0, AZ: "z1", VMCID: "vm-old"}
	p := mustCompute(t, deployment(groups...), Observed{Instances: []Instance{old}}, Options{NewID: ids()})
	want := [][]string{{"legacy"}, {"a"}, {"b", "c"}, {"d"}, {"e"}, {"f"}, {"g"}}
	if diff := cmp.Diff(want, p.Stages); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
}

func TestGroupRemoved(t *testing.T) {
	newID := ids()
	web, db := testGroup("web", 1), testGroup("db", 2)
	db.Disk = Disk{Size: 10}
	p := mustCompute(t, deployment(web, db), Observed{}, Options{NewID: newID})
	p = mustCompute(t, deployment(web), apply(p), Options{NewID: newID})
	want := []string{
		"db/0 id-2 z1 delete disk=delete 10.0.1.11 * (instance group removed)",
		"db/1 id-3 z2 delete disk=delete 10.0.2.10 (instance group removed)",
	}
	if diff := cmp.Diff(want, summary(p)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]string{{"db"}, {"web"}}, p.Stages); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
}

func TestDeploymentDeleted(t *testing.T) {
	d := deployment(testGroup("web", 2), testGroup("db", 1))
	o := apply(mustCompute(t, d, Observed{}, Options{NewID: ids()}))
	d.Deleted = true
	d.Cloud = Cloud{} // a broken cloud-config must not block deleting
	p := mustCompute(t, d, o, Options{})
	want := []string{
		"db/0 id-3 z1 delete 10.0.1.11 * (deployment deleted)",
		"web/0 id-1 z1 delete 10.0.1.10 * (deployment deleted)",
		"web/1 id-2 z2 delete 10.0.2.10 (deployment deleted)",
	}
	if diff := cmp.Diff(want, summary(p)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]string{{"db", "web"}}, p.Stages); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
}

func TestMigratedFrom(t *testing.T) {
	old := testGroup("web_old", 2, "z1")
	o := apply(mustCompute(t, deployment(old), Observed{}, Options{NewID: ids()}))
	for i := range o.Instances {
		o.Instances[i].AZ = "" // instances from before azs existed
	}
	web := testGroup("web", 2, "z1")
	web.MigratedFrom = []Migration{{Name: "web_old", AZ: "z1"}}
	p := mustCompute(t, deployment(web), o, Options{NewID: idsFrom(2)})
	want := []string{
		"web/0 id-1 z1 update 10.0.1.10 * (migrated from web_old/0)",
		"web/1 id-2 z1 update 10.0.1.11 (migrated from web_old/1)",
	}
	if diff := cmp.Diff(want, summary(p)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestErrandGroup(t *testing.T) {
	newID := ids()
	smoke := testGroup("smoke", 3, "z1")
	smoke.Lifecycle = Errand
	p := mustCompute(t, deployment(smoke), Observed{}, Options{NewID: newID})
	if len(p.Groups[0].Batches) != 0 {
		t.Errorf("errand batches = %v, want none: errand VMs exist only while it runs", p.Groups[0].Batches)
	}
	o := apply(p)
	for i := range o.Instances {
		o.Instances[i].VMCID = "" // no VM between runs is not a missing VM
	}
	if again := mustCompute(t, deployment(smoke), o, Options{}); !again.Empty() {
		t.Errorf("errand re-plan is not empty:\n%s", again)
	}
	smoke.Instances = 1
	p = mustCompute(t, deployment(smoke), o, Options{})
	want := []Batch{{Kind: BatchDelete, Instances: []string{"id-2", "id-3"}}}
	if diff := cmp.Diff(want, p.Groups[0].Batches); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
}

func TestIPAllocationSkipsTakenAddresses(t *testing.T) {
	d := deployment(testGroup("web", 3, "z1"))
	d.Cloud.Networks[0].Subnets[0].Reserved = []string{"10.0.1.2-10.0.1.9", "10.0.1.11"}
	o := Observed{IPsInUse: map[string][]string{"default": {"10.0.1.10", "10.0.1.13"}}}
	p := mustCompute(t, d, o, Options{NewID: ids()})
	want := []string{
		"web/0 id-1 z1 create 10.0.1.12 *",
		"web/1 id-2 z1 create 10.0.1.14",
		"web/2 id-3 z1 create 10.0.1.15",
	}
	if diff := cmp.Diff(want, summary(p)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestIPExhaustion(t *testing.T) {
	d := deployment(testGroup("web", 5, "z1"))
	d.Cloud.Networks[0].Subnets[0] = Subnet{Range: "10.0.9.0/29", Gateway: "10.0.9.1", Reserved: []string{"10.0.9.2"}, AZs: []string{"z1"}}
	_, err := Compute(d, Observed{}, Options{NewID: ids()})
	want := `plan deployment "demo": instance_groups[web]: networks[default]: allocate IP for web/4: network "default" has no free IP in az z1: subnet 10.0.9.0/29 exhausted`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant  %s", err, want)
	}
}

func TestInvalidInput(t *testing.T) {
	tests := []struct {
		name   string
		modify func(d *Desired, o *Observed, opts *Options)
		want   string
	}{
		{"no deployment name", func(d *Desired, _ *Observed, _ *Options) { d.Name = "" }, "name: a deployment needs a name"},
		{"unknown az", func(d *Desired, _ *Observed, _ *Options) { d.Groups[0].AZs = []string{"z9"} }, `azs: "z9" is not a cloud-config az`},
		{"no azs", func(d *Desired, _ *Observed, _ *Options) { d.Groups[0].AZs = nil }, "azs: required"},
		{"unknown network", func(d *Desired, _ *Observed, _ *Options) { d.Groups[0].Networks[0].Name = "nope" }, "networks[nope]: not a cloud-config network"},
		{"no networks", func(d *Desired, _ *Observed, _ *Options) { d.Groups[0].Networks = nil }, "at least one network"},
		{"negative instances", func(d *Desired, _ *Observed, _ *Options) { d.Groups[0].Instances = -1 }, "instances: -1 is negative"},
		{"too many static IPs", func(d *Desired, _ *Observed, _ *Options) {
			d.Groups[0].Networks[0].StaticIPs = []string{"10.0.1.200-10.0.1.210"}
		}, "more static IPs than the 2 instances"},
		{"too few static IPs", func(d *Desired, _ *Observed, _ *Options) {
			d.Groups[0].Networks[0].StaticIPs = []string{"10.0.1.200"}
		}, "1 static IPs for 2 instances"},
		{"static IP outside static range", func(d *Desired, _ *Observed, _ *Options) {
			d.Groups[0].Networks[0].StaticIPs = []string{"10.0.1.200", "10.0.1.20"}
		}, "static IP 10.0.1.20 is not in a static range of network default"},
		{"static IP in the wrong az", func(d *Desired, _ *Observed, _ *Options) {
			d.Groups[0].AZs = []string{"z1"}
			d.Groups[0].Networks[0].StaticIPs = []string{"10.0.1.200", "10.0.2.200"}
		}, "static IP 10.0.2.200 is in subnet 10.0.2.0/24, whose azs [z2] are none of the instance group's"},
		{"static IP on two groups", func(d *Desired, _ *Observed, _ *Options) {
			d.Groups = append(d.Groups, testGroup("db", 1))
			d.Groups[0].Networks[0].StaticIPs = []string{"10.0.1.200", "10.0.2.200"}
			d.Groups[1].Networks[0].StaticIPs = []string{"10.0.2.200"}
		}, "10.0.2.200 is also a static IP of instance group web"},
		{"static IP held by another deployment", func(d *Desired, o *Observed, _ *Options) {
			d.Groups[0].Networks[0].StaticIPs = []string{"10.0.1.200", "10.0.2.200"}
			o.IPsInUse = map[string][]string{"default": {"10.0.2.200"}}
		}, "10.0.2.200 is in use by another deployment"},
		{"static IP on dynamic network", func(d *Desired, _ *Observed, _ *Options) {
			d.Groups[0].Networks[0] = GroupNetwork{Name: "dyn", StaticIPs: []string{"10.0.1.200", "10.0.2.200"}}
		}, "a dynamic network takes no static IPs"},
		{"bad max_in_flight", func(d *Desired, _ *Observed, _ *Options) { d.Groups[0].Update.MaxInFlight = "lots" }, `update.max_in_flight: "lots" is neither`},
		{"bad watch time", func(d *Desired, _ *Observed, _ *Options) { d.Groups[0].Update.CanaryWatchTime = "5000-1000" }, "min must not exceed max"},
		{"bad vm_strategy", func(d *Desired, _ *Observed, _ *Options) { d.Groups[0].Update.VMStrategy = "yolo" }, "update.vm_strategy"},
		{"duplicate group", func(d *Desired, _ *Observed, _ *Options) { d.Groups = append(d.Groups, d.Groups[0]) }, "instance_groups[web]: name is used twice"},
		{"duplicate job", func(d *Desired, _ *Observed, _ *Options) {
			d.Groups[0].Jobs = append(d.Groups[0].Jobs, d.Groups[0].Jobs[0])
		}, `jobs: "web" is listed twice`},
		{"two default gateways", func(d *Desired, _ *Observed, _ *Options) {
			d.Groups[0].Networks = []GroupNetwork{{Name: "default", Default: []string{"dns", "gateway"}}, {Name: "dyn", Default: []string{"gateway"}}}
		}, "exactly one network must be default for gateway, 2 are"},
		{"bad subnet range", func(d *Desired, _ *Observed, _ *Options) { d.Cloud.Networks[0].Subnets[1].Range = "10.0.2.0/33" }, `cloud-config networks[default].subnets[1]: range: "10.0.2.0/33" is not a CIDR`},
		{"gateway outside range", func(d *Desired, _ *Observed, _ *Options) { d.Cloud.Networks[0].Subnets[0].Gateway = "10.0.2.1" }, "gateway: 10.0.2.1 is not a usable address of 10.0.1.0/24"},
		{"overlapping subnets", func(d *Desired, _ *Observed, _ *Options) {
			d.Cloud.Networks[0].Subnets[1].Range, d.Cloud.Networks[0].Subnets[1].Gateway = "10.0.1.128/25", "10.0.1.129"
			d.Cloud.Networks[0].Subnets[1].Reserved, d.Cloud.Networks[0].Subnets[1].Static = nil, nil
		}, "overlaps subnet 10.0.1.0/24"},
		{"static overlaps reserved", func(d *Desired, _ *Observed, _ *Options) {
			d.Cloud.Networks[0].Subnets[0].Static = []string{"10.0.1.5-10.0.1.20"}
		}, "static: 10.0.1.5-10.0.1.20 overlaps a reserved range"},
		{"no subnet in az", func(d *Desired, _ *Observed, _ *Options) {
			d.Cloud.Networks[0].Subnets = d.Cloud.Networks[0].Subnets[:2]
		}, `network has no subnet in az "z3"`},
		{"no id generator", func(_ *Desired, _ *Observed, opts *Options) { opts.NewID = nil }, "needs an instance id generator"},
		{"id generator repeats", func(_ *Desired, _ *Observed, opts *Options) { opts.NewID = func() string { return "same" } }, `returned "same", which is empty or already used`},
		{"observed duplicate id", func(_ *Desired, o *Observed, _ *Options) {
			o.Instances = []Instance{{ID: "a", Group: "web", Index: 0}, {ID: "a", Group: "web", Index: 1}}
		}, "observed instance id a is used twice"},
		{"observed duplicate index", func(_ *Desired, o *Observed, _ *Options) {
			o.Instances = []Instance{{ID: "a", Group: "web", Index: 0}, {ID: "b", Group: "web", Index: 0}}
		}, "observed instances a and b are both web/0"},
		{"observed bad IP", func(_ *Desired, o *Observed, _ *Options) {
			o.Instances = []Instance{{ID: "a", Group: "web", IPs: map[string]string{"default": "10.0.1"}}}
		}, `network default: "10.0.1" is not an IP address`},
		{"migrated_from az outside the group", func(d *Desired, _ *Observed, _ *Options) {
			d.Groups[0].AZs = []string{"z1"}
			d.Groups[0].MigratedFrom = []Migration{{Name: "old", AZ: "z2"}}
		}, `migrated_from[old].az: "z2" is not one of the instance group's azs`},
		{"migrated from a live group", func(d *Desired, _ *Observed, _ *Options) {
			d.Groups = append(d.Groups, testGroup("db", 1))
			d.Groups[0].MigratedFrom = []Migration{{Name: "db"}}
		}, `migrated_from: "db" is still an instance group`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := deployment(testGroup("web", 2))
			var o Observed
			opts := Options{NewID: ids()}
			tt.modify(&d, &o, &opts)
			p, err := Compute(d, o, opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
			if err != nil && (len(p.Groups) != 0 || p.Deployment != "") {
				t.Errorf("a failed Compute returned a partial plan: %+v", p)
			}
		})
	}
}

func TestRenderAndJSON(t *testing.T) {
	newID := ids()
	web := testGroup("web", 2, "z1")
	p := mustCompute(t, deployment(web), Observed{}, Options{NewID: newID})
	web.Instances = 1
	web.Stemcell.Version = "1.11"
	p = mustCompute(t, deployment(web), apply(p), Options{NewID: newID})
	want := `Deployment demo

  web (canaries 1, max_in_flight 2, serial)
  ~ web/0 (id-1) az=z1 default=10.0.1.10 bootstrap: recreate (stemcell ubuntu-jammy/1.10 -> ubuntu-jammy/1.11)
  - web/1 (id-2) az=z1 default=10.0.1.11: delete (scaled down to 1 instances)

Order: [web]
`
	if diff := cmp.Diff(want, p.String()); diff != "" {
		t.Errorf("text (-want +got):\n%s", diff)
	}
	a, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := json.Unmarshal(a, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	b, _ := json.Marshal(back)
	if string(a) != string(b) {
		t.Errorf("JSON is not stable:\n%s\n%s", a, b)
	}
	empty := mustCompute(t, deployment(web), apply(p), Options{})
	if got := empty.String(); got != "Deployment demo: no changes\n" {
		t.Errorf("empty plan renders %q", got)
	}
}

func TestCreateSwapDeleteTakesNewAddresses(t *testing.T) {
	csd := func(stemcell string, nets ...GroupNetwork) Desired {
		g := testGroup("web", 2, "z1")
		g.Networks = nets
		g.Stemcell.Version = stemcell
		g.Update.VMStrategy = CreateSwapDelete
		return deployment(g)
	}
	manual := GroupNetwork{Name: "default", Default: []string{"dns", "gateway"}}
	newID := ids()
	p := mustCompute(t, csd("1.10", manual), Observed{}, Options{NewID: newID})
	o := apply(p)
	// A new stemcell recreates both; each new VM gets a free address while the old VMs
	// hold theirs, and re-planning what converged finds nothing to do.
	p = mustCompute(t, csd("1.11", manual), o, Options{NewID: newID})
	want := []string{
		"web/0 id-1 z1 recreate 10.0.1.12 * (stemcell ubuntu-jammy/1.10 -> ubuntu-jammy/1.11)",
		"web/1 id-2 z1 recreate 10.0.1.13 (stemcell ubuntu-jammy/1.10 -> ubuntu-jammy/1.11)",
	}
	if diff := cmp.Diff(want, summary(p)); diff != "" {
		t.Errorf("recreate (-want +got):\n%s", diff)
	}
	for _, in := range p.Groups[0].Instances {
		if in.VMStrategy != CreateSwapDelete {
			t.Errorf("%s vm_strategy %s, want %s", in.Name(), in.VMStrategy, CreateSwapDelete)
		}
	}
	if txt := p.String(); !strings.Contains(txt, "web/1 (id-2) az=z1 default=10.0.1.13: recreate, new VM first (stemcell") {
		t.Errorf("text does not say the new VM comes first:\n%s", txt)
	}
	if again := mustCompute(t, csd("1.11", manual), apply(p), Options{}); !again.Empty() {
		t.Errorf("re-plan after converge is not empty:\n%s", summary(again))
	}

	// A dynamic network needs no second address; an update in place keeps its address.
	dyn := GroupNetwork{Name: "dyn", Default: []string{"dns", "gateway"}}
	p = mustCompute(t, csd("1.10", dyn), Observed{}, Options{NewID: ids()})
	p = mustCompute(t, csd("1.11", dyn), apply(p), Options{})
	for _, in := range p.Groups[0].Instances {
		if in.Action != Recreate || in.VMStrategy != CreateSwapDelete || in.IPs[0].IP != "" {
			t.Errorf("dynamic: %s %s %s ip %q", in.Name(), in.Action, in.VMStrategy, in.IPs[0].IP)
		}
	}
}

func TestCreateSwapDeleteFallsBackWhenNoAddressIsFree(t *testing.T) {
	g := testGroup("web", 2, "z1")
	g.Update.VMStrategy = CreateSwapDelete
	d := deployment(g)
	// z1's subnet hands out 10.0.1.10-199 and .251-254 dynamically: leave one free.
	var held []string
	for i := 12; i < 255; i++ {
		if i != 150 && (i < 200 || i > 250) {
			held = append(held, fmt.Sprintf("10.0.1.%d", i))
		}
	}
	p := mustCompute(t, d, Observed{}, Options{NewID: ids()})
	o := apply(p)
	o.IPsInUse = map[string][]string{"default": held}
	d.Groups[0].Stemcell.Version = "1.11"
	p = mustCompute(t, d, o, Options{})
	got := []string{}
	for _, in := range p.Groups[0].Instances {
		got = append(got, fmt.Sprintf("%s %s %s", in.Name(), in.VMStrategy, in.IPs[0].IP))
	}
	want := []string{"web/0 create-swap-delete 10.0.1.150", "web/1 delete-create 10.0.1.11"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestLinkChangesUpdateConsumers(t *testing.T) {
	deploy := func(dbInstances int, dbNet, shared string) Desired {
		db := testGroup("db", dbInstances, "z1")
		db.Networks = []GroupNetwork{{Name: dbNet}}
		web := testGroup("web", 2, "z1")
		web.Links, web.LinkHash = []string{"db"}, shared
		return deployment(web, db) // the consumer first: links are settled once all are placed
	}
	newID := ids()
	p := mustCompute(t, deploy(1, "default", "port=5432"), Observed{}, Options{NewID: newID})
	links := p.Groups[0].Instances[0].Applied.Links
	if links == "" || p.Groups[1].Instances[0].Applied.Links != "" {
		t.Fatalf("link fingerprints: web %q, db %q", links, p.Groups[1].Instances[0].Applied.Links)
	}
	o := apply(p)
	// Instances recorded before links were fingerprinted adopt the fingerprint quietly.
	old := apply(p)
	for i := range old.Instances {
		old.Instances[i].Applied.Links = ""
	}
	if adopted := mustCompute(t, deploy(1, "default", "port=5432"), old, Options{}); !adopted.Empty() || adopted.Groups[0].Instances[0].Applied.Links != links {
		t.Errorf("records without links fingerprints: %v, links %q", summary(adopted), adopted.Groups[0].Instances[0].Applied.Links)
	}
	steps := []struct {
		name string
		d    Desired
		want []string
	}{
		{"nothing moved", deploy(1, "default", "port=5432"), nil},
		{"the provider scales: consumers update after it is placed", deploy(2, "default", "port=5432"), []string{
			"web/0 id-1 z1 update 10.0.1.10 * (links changed)",
			"web/1 id-2 z1 update 10.0.1.11 (links changed)",
			"db/1 id-4 z1 create 10.0.1.13",
		}},
		{"what the provider shares changes", deploy(2, "default", "port=6432"), []string{
			"web/0 id-1 z1 update 10.0.1.10 * (links changed)",
			"web/1 id-2 z1 update 10.0.1.11 (links changed)",
		}},
	}
	for _, s := range steps {
		p := mustCompute(t, s.d, o, Options{NewID: newID})
		if diff := cmp.Diff(s.want, summary(p)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, diff)
		}
		if s.want != nil && (len(p.Groups[0].Batches) == 0 || p.Groups[0].Batches[0].Kind != BatchCanary) {
			t.Errorf("%s: consumers updated without a canary: %+v", s.name, p.Groups[0].Batches)
		}
		o = apply(p)
	}
	// On a dynamic network the provider's address is the cloud's, learnt after boot: it
	// is not part of the fingerprint, or every re-plan would update the consumers.
	p = mustCompute(t, deploy(1, "dyn", "x"), Observed{}, Options{NewID: ids()})
	o = apply(p)
	for i := range o.Instances {
		if o.Instances[i].Group == "db" {
			o.Instances[i].IPs = map[string]string{"dyn": "192.168.7.7"}
		}
	}
	if again := mustCompute(t, deploy(1, "dyn", "x"), o, Options{}); !again.Empty() {
		t.Errorf("a dynamic address learnt after boot changed the links:\n%s", summary(again))
	}
}
