package alicloud_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/alicloud"
	"github.com/bosun-gitops/bosun/cpi/alicloud/fakealicloud"
	"github.com/bosun-gitops/bosun/cpi/cpitest"
)

type env struct {
	cloud *fakealicloud.Cloud
	cpi   *alicloud.CPI
	logs  *cpitest.Log
}

func baseConfig(cloud *fakealicloud.Cloud) alicloud.Config {
	return alicloud.Config{
		Region: fakealicloud.Region, AccessKeyID: fakealicloud.AccessKeyID, AccessKeySecret: fakealicloud.AccessKeySecret,
		ECSEndpoint: cloud.URL(), VPCEndpoint: cloud.URL(), SLBEndpoint: cloud.URL(), NLBEndpoint: cloud.URL(), OSSEndpoint: cloud.URL(),
		StateTimeout: 10, WaitResourcePollInterval: 0.001,
		RetryConfig:       alicloud.RetryConfig{MaxAttempts: 4, SleepDuration: 0.001, MaxSleep: 0.01},
		ConnectionOptions: alicloud.ConnectionOptions{ReadTimeout: 2},
	}
}

// mbusSecret is in the agent settings the CPI hands over: never to be logged.
const mbusSecret = "agent-nats-password-Tz8"

// secrets must never appear in the CPI's log or errors.
var secrets = []string{fakealicloud.AccessKeySecret, mbusSecret}

var settings = cpi.AgentSettings{Mbus: "nats://agent:" + mbusSecret + "@10.0.0.2:4222", Blobstore: cpi.Blobstore{Provider: "local"}}

func newEnv(t testing.TB, opts fakealicloud.Options, mod func(*alicloud.Config)) env {
	t.Helper()
	cloud := fakealicloud.New(t, opts)
	cfg := baseConfig(cloud)
	if mod != nil {
		mod(&cfg)
	}
	log, logs := cpitest.NewLog(t, secrets...)
	c, err := alicloud.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, r := range cloud.Requests() {
			if fmt.Sprint(r.Params) != "" && strings.Contains(fmt.Sprint(r.Params), mbusSecret) {
				t.Errorf("the fake logged user data: %+v", r)
			}
		}
	})
	return env{cloud: cloud, cpi: c, logs: logs}
}

const stemcellProps = `{"name":"bosh-alicloud-kvm-ubuntu-noble-go_agent","version":1.5,"infrastructure":"alicloud","hypervisor":"kvm","disk":5120,"disk_format":"raw","container_format":"bare","os_type":"linux","os_distro":"ubuntu","architecture":"x86_64","oss_bucket":"` +
	fakealicloud.OSSBucket + `","oss_object":"` + fakealicloud.OSSObject + `"}`

func manualNet(ip string) cpi.Network {
	return cpi.Network{Type: "manual", IP: ip, Netmask: "255.255.255.0", Gateway: "10.0.0.253", Default: []string{"dns", "gateway"},
		CloudProperties: json.RawMessage(`{"vswitch_id":"` + fakealicloud.VSwitchA + `","security_group_ids":["` + fakealicloud.SecurityGroup + `"]}`)}
}

func dynamicNet(vsw string) cpi.Network {
	return cpi.Network{Type: "dynamic", CloudProperties: json.RawMessage(`{"vswitch_id":"` + vsw + `","security_group_id":"` + fakealicloud.SecurityGroup + `"}`)}
}

func TestConformance(t *testing.T) {
	start := time.Now()
	cpitest.RunConformance(t, func(t *testing.T) cpitest.Setup {
		e := newEnv(t, fakealicloud.Options{}, func(c *alicloud.Config) { c.AvailabilityZone = fakealicloud.ZoneA })
		return cpitest.Setup{CPI: e.cpi, StemcellProps: json.RawMessage(stemcellProps),
			VMProps:   json.RawMessage(`{"instance_type":"ecs.g6.large","availability_zone":"` + fakealicloud.ZoneA + `","system_disk":{"size":51200,"category":"cloud_essd"},"ephemeral_disk":{"size":"30_720","category":"cloud_efficiency"}}`),
			DiskProps: json.RawMessage(`{"category":"cloud_ssd","tags":{"team":"platform"}}`),
			Networks:  cpi.Networks{"default": manualNet("10.0.0.10"), "public": {Type: "vip", IP: fakealicloud.EIP}},
			Settings:  settings, Timeout: 30 * time.Second}
	})
	t.Logf("conformance against the fake cloud took %s", time.Since(start))
}

func TestConformanceLightStemcellDynamicNetwork(t *testing.T) {
	cpitest.RunConformance(t, func(t *testing.T) cpitest.Setup {
		e := newEnv(t, fakealicloud.Options{Polls: 1}, func(c *alicloud.Config) { c.AvailabilityZone = fakealicloud.ZoneB })
		light := e.cloud.AddImage("shared-stemcell", "Available")
		return cpitest.Setup{CPI: e.cpi,
			StemcellProps: json.RawMessage(`{"name":"s","version":"1","image_id":{"` + fakealicloud.Region + `":"` + light + `","cn-hangzhou":"m-elsewhere"}}`),
			VMProps:       json.RawMessage(`{"instance_type":"` + fakealicloud.InstanceTypeNVMe + `","key_pair_name":"` + fakealicloud.KeyPair + `"}`),
			Networks:      cpi.Networks{"default": dynamicNet(fakealicloud.VSwitchB)}, Settings: settings, Timeout: 30 * time.Second}
	})
}

func mustStemcell(t testing.TB, e env) cpi.StemcellCID {
	t.Helper()
	sc, err := e.cpi.CreateStemcell(context.Background(), "", json.RawMessage(stemcellProps))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func spec(sc cpi.StemcellCID, props string, nets cpi.Networks) cpi.VMSpec {
	s := settings
	s.AgentID = "agent-1"
	return cpi.VMSpec{AgentID: "agent-1", Stemcell: sc, CloudProperties: json.RawMessage(props), Networks: nets, Settings: s,
		Env: json.RawMessage(`{"bosh":{"group":"web"}}`)}
}

func TestCreateVMWritesAgentSettingsAndNetworks(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fakealicloud.Options{}, nil)
	sc := mustStemcell(t, e)
	vm, nets, err := e.cpi.CreateVM(ctx, spec(sc, `{"instance_type":"ecs.g6.large","security_group_ids":["`+fakealicloud.SecurityGroup+`","`+fakealicloud.SecurityGroup2+`"],"key_pair_name":"bosh","ephemeral_disk":{"size":10240,"tags":{"kind":"ephemeral"}},"system_disk":{"tags":{"kind":"system"}},"tags":{"team":"platform"}}`,
		cpi.Networks{"default": manualNet("10.0.0.20"), "public": {Type: "vip", IP: fakealicloud.EIP}}))
	if err != nil {
		t.Fatal(err)
	}
	insts := e.cloud.Instances()
	if len(insts) != 1 || insts[0].ID != string(vm) {
		t.Fatalf("instances = %+v", insts)
	}
	i := insts[0]
	if i.Status != "Running" || i.IP != "10.0.0.20" || i.Zone != fakealicloud.ZoneA || i.KeyPair != "bosh" ||
		!cmp.Equal(i.SecurityGroups, []string{fakealicloud.SecurityGroup, fakealicloud.SecurityGroup2}) ||
		i.Tags["bosun_agent_id"] != "agent-1" || i.Tags["team"] != "platform" {
		t.Errorf("instance = %+v", i)
	}
	var ud cpi.AgentSettings
	if err := json.Unmarshal(i.UserData, &ud); err != nil {
		t.Fatalf("user data: %v\n%s", err, i.UserData)
	}
	want := cpi.Networks{"default": manualNet("10.0.0.20"), "public": {Type: "vip", IP: fakealicloud.EIP}}
	if diff := cmp.Diff(want, ud.Networks); diff != "" {
		t.Errorf("user data networks (-want +got)\n%s", diff)
	}
	if ud.AgentID != "agent-1" || ud.Mbus != settings.Mbus || ud.VM.Name != string(vm) || ud.Disks.System != "/dev/vda" ||
		string(ud.Disks.Ephemeral) != `"/dev/vdb"` || string(ud.Env) != `{"bosh":{"group":"web"}}` {
		t.Errorf("user data = %+v", ud)
	}
	if diff := cmp.Diff(want, nets); diff != "" {
		t.Errorf("networks (-want +got)\n%s", diff)
	}
	for _, eip := range e.cloud.EIPs() {
		if eip.IP == fakealicloud.EIP && (eip.Instance != string(vm) || eip.Status != "InUse") {
			t.Errorf("EIP = %+v", eip)
		}
	}
	// Ephemeral (20 GiB at least) and system disk belong to the instance.
	var eph fakealicloud.Disk
	for _, d := range e.cloud.Disks() {
		if d.Instance == string(vm) && d.Type == "data" {
			eph = d
		}
	}
	if eph.Size != 20 || !eph.DeleteWithInstance || eph.Device != "/dev/xvdb" || eph.Tags["kind"] != "ephemeral" {
		t.Errorf("ephemeral disk = %+v", eph)
	}
	for _, d := range e.cloud.Disks() {
		if d.Instance == string(vm) && d.Type == "system" && (d.Tags["kind"] != "system" || d.Size != 20) {
			t.Errorf("system disk = %+v", d)
		}
	}

	disk, err := e.cpi.CreateDisk(ctx, 30*1024, json.RawMessage(`{"category":"cloud_essd","performance_level":"PL1"}`), vm)
	if err != nil {
		t.Fatal(err)
	}
	hint, err := e.cpi.AttachDisk(ctx, vm, disk)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cpi.DiskHint{Path: "/dev/vdc", VolumeID: string(disk)}, hint); diff != "" {
		t.Errorf("hint (-want +got)\n%s", diff)
	}
	if again, err := e.cpi.AttachDisk(ctx, vm, disk); err != nil || again != hint {
		t.Errorf("attaching again = %v, %v; want the same hint", again, err)
	}
	if got, err := e.cpi.GetDisks(ctx, vm); err != nil || !cmp.Equal(got, []cpi.DiskCID{disk}) {
		t.Errorf("get_disks = %v, %v (the ephemeral disk is not persistent)", got, err)
	}
	if err := e.cpi.ResizeDisk(ctx, disk, 40*1024); err == nil || !strings.Contains(err.Error(), "detach it") {
		t.Errorf("resize of an attached disk = %v", err)
	}
	if err := e.cpi.DeleteDisk(ctx, disk); err == nil || !strings.Contains(err.Error(), "attached") {
		t.Errorf("delete of an attached disk = %v", err)
	}
	if err := e.cpi.DeleteVM(ctx, vm); err != nil {
		t.Fatal(err)
	}
	// The persistent disk survives its VM, detached; system and ephemeral disks go;
	// the EIP is free.
	disks := e.cloud.Disks()
	if len(disks) != 1 || disks[0].ID != string(disk) || disks[0].Status != "Available" || disks[0].Instance != "" || disks[0].Size != 30 {
		t.Errorf("disks after delete_vm = %+v", disks)
	}
	for _, eip := range e.cloud.EIPs() {
		if eip.Instance != "" {
			t.Errorf("EIP still bound: %+v", eip)
		}
	}
	if err := e.cpi.ResizeDisk(ctx, disk, 1024); !errors.Is(err, cpi.ErrNotSupported) {
		t.Errorf("shrinking = %v, want NotSupported", err)
	}
	if err := e.cpi.ResizeDisk(ctx, disk, 50*1024); err != nil {
		t.Fatal(err)
	}
	if d := e.cloud.Disks()[0]; d.Size != 50 {
		t.Errorf("size after resize = %d GiB, want 50", d.Size)
	}
}

func TestNVMeDiskHint(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fakealicloud.Options{Polls: 1}, nil)
	vm, nets, err := e.cpi.CreateVM(ctx, spec(mustStemcell(t, e), `{"instance_type":"`+fakealicloud.InstanceTypeNVMe+`"}`, cpi.Networks{"d": dynamicNet(fakealicloud.VSwitchA)}))
	if err != nil {
		t.Fatal(err)
	}
	if n := nets["d"]; n.IP != "10.0.0.1" || !n.UseDHCP {
		t.Errorf("dynamic network = %+v, want the VSwitch's first address by DHCP", n)
	}
	disk, err := e.cpi.CreateDisk(ctx, 100, nil, vm)
	if err != nil {
		t.Fatal(err)
	}
	hint, err := e.cpi.AttachDisk(ctx, vm, disk)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/dev/disk/by-id/nvme-Alibaba_Cloud_Elastic_Block_Storage_" + strings.TrimPrefix(string(disk), "d-"); hint.Path != want {
		t.Errorf("hint path %q, want %q", hint.Path, want)
	}
}

func TestMetadataAndListVMs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fakealicloud.Options{Polls: 1}, nil)
	sc := mustStemcell(t, e)
	var vms []cpi.VMCID
	// More than ECS's default page of 10: list_vms pages.
	for n := range 12 {
		s := spec(sc, `{"instance_type":"ecs.g6.large"}`, cpi.Networks{"d": dynamicNet(fakealicloud.VSwitchA)})
		s.AgentID = fmt.Sprintf("agent-%02d", n)
		vm, _, err := e.cpi.CreateVM(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		vms = append(vms, vm)
	}
	if err := e.cpi.SetVMMetadata(ctx, vms[0], cpi.Metadata{"name": "web/0f3a", "deployment": "demo", "bosun_agent_id": "forged", "aliyun-x": "refused"}); err != nil {
		t.Fatal(err)
	}
	for _, i := range e.cloud.Instances() {
		if i.ID == string(vms[0]) && (i.Name != "web_0f3a" || i.Tags["deployment"] != "demo" || i.Tags["bosun_agent_id"] != "agent-00") {
			t.Errorf("instance name %q tags %v", i.Name, i.Tags)
		}
	}
	// ECS keeps 20 tags: the instance has 2 of the CPI's and 2 set above; of 20
	// more keys the first 16 fit and the rest are dropped, with a warning.
	many := cpi.Metadata{"deployment": "demo2"}
	for n := range 20 {
		many[fmt.Sprintf("k%02d", n)] = "v"
	}
	if err := e.cpi.SetVMMetadata(ctx, vms[0], many); err != nil {
		t.Fatal(err)
	}
	for _, i := range e.cloud.Instances() {
		if i.ID == string(vms[0]) && (len(i.Tags) != 20 || i.Tags["deployment"] != "demo2" || i.Tags["k15"] != "v" || i.Tags["k16"] != "") {
			t.Errorf("tags = %v", i.Tags)
		}
	}
	if !strings.Contains(e.logs.String(), "dropped=k16,k17,k18,k19") {
		t.Errorf("no warning of the dropped keys:\n%s", e.logs)
	}
	list, err := e.cpi.ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 12 {
		t.Fatalf("list_vms found %d VMs, want 12", len(list))
	}
	for _, v := range list {
		if v.CID == vms[0] {
			if v.AgentID != "agent-00" || v.Metadata["name"] != "web/0f3a" || v.Metadata["deployment"] != "demo2" || len(v.Metadata) != 18 {
				t.Errorf("list_vms entry = %+v", v)
			}
		}
	}
}

func wantCPIError(t *testing.T, err error, kind cpi.Kind, retry bool, contains ...string) {
	t.Helper()
	cpitest.WantError(t, err, kind, retry, contains, secrets...)
}

func TestCreateVMFailures(t *testing.T) {
	nets := cpi.Networks{"default": manualNet("10.0.0.30")}
	tests := []struct {
		name     string
		props    string
		nets     cpi.Networks
		setup    func(e env)
		mod      func(*alicloud.Config)
		retry    bool
		contains []string
		// creates is how many CreateInstance calls the cloud must have seen.
		creates int
		// left is how many instances the failure leaves (ECS cannot release them).
		left int
	}{
		{name: "never runs", setup: func(e env) { e.cloud.SetInstanceFate("Starting") }, mod: func(c *alicloud.Config) { c.StateTimeout = 0.3 },
			retry: true, contains: []string{"still Starting after 300ms"}, creates: 1},
		{name: "stuck pending cannot be released", setup: func(e env) { e.cloud.SetInstanceFate("Pending") }, mod: func(c *alicloud.Config) { c.StateTimeout = 0.3 },
			contains: []string{"still Pending after 300ms"}, creates: 1, left: 1},
		{name: "quota", setup: func(e env) { e.cloud.SetQuota(0, 10) },
			contains: []string{"ecs CreateInstance answered 403 QuotaExceed.PostPaidInstance (request ", "quota"}, creates: 1},
		{name: "unknown instance type", props: `{"instance_type":"ecs.nope"}`, contains: []string{"answered 404 InvalidInstanceType.NotFound", "ecs.nope"}, creates: 1},
		{name: "unknown key pair", props: `{"instance_type":"ecs.g6.large","key_pair_name":"nope"}`, contains: []string{"InvalidKeyPairName.NotFound"}, creates: 1},
		{name: "unknown security group", props: `{"instance_type":"ecs.g6.large","security_group_ids":["sg-nope"]}`, contains: []string{"InvalidSecurityGroupId.NotFound"}, creates: 1},
		{name: "extra security group unknown", props: `{"instance_type":"ecs.g6.large","security_group_ids":["` + fakealicloud.SecurityGroup + `","sg-nope"]}`,
			retry: true, contains: []string{"security group sg-nope", "ecs JoinSecurityGroup answered 404"}, creates: 1},
		{name: "zone not the vswitch's", props: `{"instance_type":"ecs.g6.large","availability_zone":"` + fakealicloud.ZoneB + `"}`,
			contains: []string{"vswitch vsw-bosun-a is in zone cn-beijing-a, but the VM is asked for zone cn-beijing-b"}},
		{name: "unknown vswitch", nets: cpi.Networks{"default": {Type: "manual", IP: "10.0.0.5", CloudProperties: json.RawMessage(`{"vswitch_id":"vsw-nope","security_group_id":"sg-bosun"}`)}},
			contains: []string{`network "default": vswitch vsw-nope not found in region cn-beijing`}},
		{name: "address in use", setup: func(e env) {
			if _, _, err := e.cpi.CreateVM(context.Background(), spec(mustStemcell(t, e), `{"instance_type":"ecs.g6.large"}`, nets)); err != nil {
				t.Fatal(err)
			}
		}, contains: []string{"InvalidPrivateIpAddress.Duplicated", "10.0.0.30"}, creates: 2},
		{name: "address outside the vswitch", nets: cpi.Networks{"default": manualNet("10.7.0.1")}, contains: []string{"InvalidPrivateIpAddress.Malformed"}, creates: 1},
		{name: "vswitch out of addresses", setup: func(e env) {
			for range 4 {
				if _, _, err := e.cpi.CreateVM(context.Background(), spec(mustStemcell(t, e), `{"instance_type":"ecs.g6.large"}`, cpi.Networks{"t": dynamicNet(fakealicloud.VSwitchTiny)})); err != nil {
					t.Fatal(err)
				}
			}
		}, nets: cpi.Networks{"t": dynamicNet(fakealicloud.VSwitchTiny)}, contains: []string{"vswitch vsw-bosun-tiny has no free address"}, creates: 4},
		{name: "EIP not allocated", nets: cpi.Networks{"default": manualNet("10.0.0.31"), "public": {Type: "vip", IP: "1.2.3.4"}},
			retry: true, contains: []string{`vip network "public": EIP 1.2.3.4 is not allocated in region cn-beijing`}, creates: 1},
		{name: "two private networks", nets: cpi.Networks{"a": manualNet("10.0.0.32"), "b": manualNet("10.0.0.33")},
			contains: []string{`networks "a" and "b": an ECS instance takes one manual or dynamic network`}},
		{name: "no vswitch_id", nets: cpi.Networks{"default": {Type: "manual", IP: "10.0.0.5"}}, contains: []string{`network "default" has no vswitch_id`}},
		{name: "no security group", nets: cpi.Networks{"default": {Type: "manual", IP: "10.0.0.5", CloudProperties: json.RawMessage(`{"vswitch_id":"vsw-bosun-a"}`)}},
			contains: []string{"no security group"}},
		{name: "manual network without ip", nets: cpi.Networks{"default": {Type: "manual", CloudProperties: json.RawMessage(`{"vswitch_id":"vsw-bosun-a","security_group_id":"sg-bosun"}`)}},
			contains: []string{`manual network "default" has no ip`}},
		{name: "encrypted system disk", props: `{"instance_type":"ecs.g6.large","system_disk":{"encrypted":true}}`, contains: []string{"cannot encrypt it"}},
		{name: "bad charge type", props: `{"instance_type":"ecs.g6.large","charge_type":"Free"}`, contains: []string{`charge_type "Free"`}},
		{name: "user data too big", setup: nil, props: `{"instance_type":"ecs.g6.large"}`, contains: []string{"ECS UserData holds at most 32768"}},
		{name: "throttled until the retries run out", setup: func(e env) {
			e.cloud.Inject(fakealicloud.Fault{Action: "CreateInstance", Status: 400, Code: "Throttling.User", Message: "Request was denied due to user flow control."})
		}, retry: true, contains: []string{"answered 400 Throttling.User", "flow control"}, creates: 5},
		{name: "create answer lost every time", setup: func(e env) {
			e.cloud.Inject(fakealicloud.Fault{Action: "CreateInstance", After: true, Drop: true})
		}, contains: []string{"ecs CreateInstance failed", "EOF"}, creates: 5},
		{name: "create 500 after acting every time", setup: func(e env) {
			e.cloud.Inject(fakealicloud.Fault{Action: "CreateInstance", After: true, Status: 500})
		}, contains: []string{"answered 500 InternalError"}, creates: 5},
		{name: "settings cannot be written", setup: func(e env) {
			e.cloud.Inject(fakealicloud.Fault{Action: "ModifyInstanceAttribute", Status: 403, Code: "Forbidden.RAM", Message: "User not authorized"})
		}, retry: true, contains: []string{"write agent settings", "Forbidden.RAM"}, creates: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fakealicloud.Options{Polls: 1}, tt.mod)
			sc := mustStemcell(t, e)
			if tt.setup != nil {
				tt.setup(e)
			}
			before := len(e.cloud.Instances())
			props := tt.props
			if props == "" {
				props = `{"instance_type":"ecs.g6.large"}`
			}
			n := tt.nets
			if n == nil {
				n = nets
			}
			s := spec(sc, props, n)
			s.AgentID = "agent-2"
			if tt.name == "user data too big" {
				s.Env = json.RawMessage(`{"bosh":{"blob":"` + strings.Repeat("x", 33000) + `"}}`)
			}
			_, _, err := e.cpi.CreateVM(context.Background(), s)
			wantCPIError(t, err, cpi.VMCreationFailed, tt.retry, tt.contains...)
			if got := len(e.cloud.Instances()); got != before+tt.left {
				t.Errorf("%d instances left behind, want %d", got-before, tt.left)
			}
			if got := e.cloud.Calls("CreateInstance", 0); got != tt.creates {
				t.Errorf("CreateInstance seen %d times, want %d", got, tt.creates)
			}
		})
	}
}

// TestCreateRetriedWithItsClientToken: a 5xx after ECS made the instance is retried
// with the same ClientToken, which ECS answers with the same instance: one VM.
func TestCreateRetriedWithItsClientToken(t *testing.T) {
	e := newEnv(t, fakealicloud.Options{Polls: 1}, nil)
	sc := mustStemcell(t, e)
	e.cloud.Inject(fakealicloud.Fault{Action: "CreateInstance", After: true, Status: 500, Times: 1})
	e.cloud.Inject(fakealicloud.Fault{Action: "DescribeInstances", Status: 503, Times: 2})
	vm, _, err := e.cpi.CreateVM(context.Background(), spec(sc, `{"instance_type":"ecs.g6.large"}`, cpi.Networks{"d": dynamicNet(fakealicloud.VSwitchA)}))
	if err != nil {
		t.Fatal(err)
	}
	if insts := e.cloud.Instances(); len(insts) != 1 || insts[0].ID != string(vm) {
		t.Errorf("instances = %+v, want just %s", insts, vm)
	}
	var tokens []string
	for _, r := range e.cloud.Requests() {
		if r.Action == "CreateInstance" {
			tokens = append(tokens, r.Params["ClientToken"])
		}
	}
	if len(tokens) != 2 || tokens[0] != tokens[1] || tokens[0] == "" {
		t.Errorf("CreateInstance tokens = %q, want the same one twice", tokens)
	}
}

func TestRetries(t *testing.T) {
	ctx := context.Background()
	t.Run("throttling is retried, with backoff", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{Polls: 1}, nil)
		e.cloud.Inject(fakealicloud.Fault{Action: "CreateDisk", Times: 3, Status: 400, Code: "Throttling.User"})
		e.cloud.Inject(fakealicloud.Fault{Action: "DescribeDisks", Times: 1, Status: 503, Code: "ServiceUnavailable"})
		if _, err := e.cpi.CreateDisk(ctx, 1024, nil, ""); err == nil || !strings.Contains(err.Error(), "no zone") {
			t.Fatalf("create_disk with no zone = %v", err)
		}
		e2 := newEnv(t, fakealicloud.Options{Polls: 1}, func(c *alicloud.Config) { c.AvailabilityZone = fakealicloud.ZoneA })
		e2.cloud.Inject(fakealicloud.Fault{Action: "CreateDisk", Times: 3, Status: 400, Code: "Throttling.User"})
		e2.cloud.Inject(fakealicloud.Fault{Action: "DescribeDisks", Times: 1, Status: 503, Code: "ServiceUnavailable"})
		if _, err := e2.cpi.CreateDisk(ctx, 1024, nil, ""); err != nil {
			t.Fatal(err)
		}
		if got := e2.cloud.Calls("CreateDisk", 0); got != 4 {
			t.Errorf("CreateDisk tries = %d, want 3 throttled + 1", got)
		}
		if len(e2.cloud.Disks()) != 1 {
			t.Errorf("disks = %+v", e2.cloud.Disks())
		}
		if !strings.Contains(e2.logs.String(), "retrying") || !strings.Contains(e2.logs.String(), "code=Throttling.User") {
			t.Errorf("no log of the retries:\n%s", e2.logs)
		}
	})
	t.Run("5xx is bounded", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{}, nil)
		e.cloud.Inject(fakealicloud.Fault{Action: "DescribeInstances", Status: 500})
		_, err := e.cpi.HasVM(ctx, "i-1")
		wantCPIError(t, err, cpi.CloudError, false, "ecs DescribeInstances answered 500 InternalError (request ")
		if got := e.cloud.Calls("DescribeInstances", 0); got != 5 {
			t.Errorf("tries = %d, want 1 + 4 retries", got)
		}
	})
	t.Run("5xx on a request that is not idempotent is not repeated", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{Polls: 1}, nil)
		vm, _, err := e.cpi.CreateVM(ctx, spec(mustStemcell(t, e), `{"instance_type":"ecs.g6.large"}`, cpi.Networks{"d": dynamicNet(fakealicloud.VSwitchA)}))
		if err != nil {
			t.Fatal(err)
		}
		e.cloud.Inject(fakealicloud.Fault{Action: "RebootInstance", Status: 500, Times: 1})
		err = e.cpi.RebootVM(ctx, vm)
		wantCPIError(t, err, cpi.CloudError, false, "ecs RebootInstance answered 500")
		if got := e.cloud.Calls("RebootInstance", 0); got != 1 {
			t.Errorf("tries = %d, want 1", got)
		}
	})
	t.Run("a slow answer times out and is retried when idempotent", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{}, func(c *alicloud.Config) { c.ConnectionOptions.ReadTimeout = 0.5 })
		e.cloud.Inject(fakealicloud.Fault{Action: "DescribeDisks", Times: 1, Delay: 3 * time.Second})
		if ok, err := e.cpi.HasDisk(ctx, "d-nope"); err != nil || ok {
			t.Fatalf("has_disk = %v, %v", ok, err)
		}
		if got := e.cloud.Calls("DescribeDisks", 0); got != 2 {
			t.Errorf("tries = %d, want 2", got)
		}
	})
	t.Run("cancelled context stops the request", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{}, nil)
		e.cloud.Inject(fakealicloud.Fault{Action: "DescribeDisks", Delay: time.Minute})
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := e.cpi.HasDisk(cctx, "d-nope")
		if err == nil || !errors.Is(err, context.Canceled) {
			t.Errorf("has_disk after cancel = %v", err)
		}
		if time.Since(start) > 30*time.Second {
			t.Errorf("cancel took %s", time.Since(start))
		}
	})
}

func TestBadCredentialsAndRegion(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		mod      func(*alicloud.Config)
		contains []string
	}{
		{"wrong secret", func(c *alicloud.Config) { c.AccessKeySecret = "wrong-" + fakealicloud.AccessKeySecret },
			[]string{"ecs DescribeInstances answered 400 SignatureDoesNotMatch (request ", "string to sign is: (withheld)"}},
		{"unknown key", func(c *alicloud.Config) { c.AccessKeyID = "LTAI-nope" }, []string{"answered 404 InvalidAccessKeyId.NotFound"}},
		{"unknown region", func(c *alicloud.Config) { c.Region = "mars-north-1" }, []string{"InvalidRegionId.NotFound", "mars-north-1"}},
		{"expired STS token", func(c *alicloud.Config) { c.SecurityToken = "wrong-" + fakealicloud.SecurityToken }, []string{"answered 400 InvalidSecurityToken.Expired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fakealicloud.Options{}, tt.mod)
			_, err := e.cpi.HasVM(ctx, "i-1")
			wantCPIError(t, err, cpi.CloudError, false, tt.contains...)
			if strings.Contains(err.Error(), "wrong-") || strings.Contains(err.Error(), "Timestamp") {
				t.Errorf("error holds the credential or the signed request: %v", err)
			}
			if got := e.cloud.Calls("DescribeInstances", 0); got != 1 {
				t.Errorf("tries = %d: an authentication failure is not retried", got)
			}
		})
	}
}

func TestSTSCredentials(t *testing.T) {
	e := newEnv(t, fakealicloud.Options{}, func(c *alicloud.Config) { c.SecurityToken = fakealicloud.SecurityToken })
	if ok, err := e.cpi.HasVM(context.Background(), "i-1"); err != nil || ok {
		t.Fatalf("has_vm with an STS token = %v, %v", ok, err)
	}
	if strings.Contains(e.logs.String(), fakealicloud.SecurityToken) {
		t.Error("the STS token was logged")
	}
}

func TestStemcells(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fakealicloud.Options{}, nil)
	t.Run("import from OSS, delete with its snapshot", func(t *testing.T) {
		sc, err := e.cpi.CreateStemcell(ctx, "/tmp/image", json.RawMessage(stemcellProps))
		if err != nil {
			t.Fatal(err)
		}
		imgs := e.cloud.Images()
		if len(imgs) != 1 || imgs[0].ID != string(sc) || imgs[0].Status != "Available" || imgs[0].Format != "RAW" || imgs[0].Size != 5 ||
			!strings.HasPrefix(imgs[0].Name, "bosh-alicloud-kvm-ubuntu-noble-go_agent-1.5-") {
			t.Errorf("images = %+v", imgs)
		}
		if len(e.cloud.Snapshots()) != 1 {
			t.Errorf("snapshots = %+v", e.cloud.Snapshots())
		}
		if err := e.cpi.DeleteStemcell(ctx, sc); err != nil {
			t.Fatal(err)
		}
		if len(e.cloud.Images()) != 0 || len(e.cloud.Snapshots()) != 0 {
			t.Errorf("left after delete_stemcell: %+v %+v", e.cloud.Images(), e.cloud.Snapshots())
		}
		if err := e.cpi.DeleteStemcell(ctx, sc); err != nil {
			t.Errorf("delete_stemcell twice: %v", err)
		}
	})
	t.Run("import that fails leaves no image", func(t *testing.T) {
		e.cloud.SetImageFate("CreateFailed")
		defer e.cloud.SetImageFate("")
		_, err := e.cpi.CreateStemcell(ctx, "", json.RawMessage(stemcellProps))
		wantCPIError(t, err, cpi.CloudError, false, "ECS could not import the image: it is CreateFailed")
		if len(e.cloud.Images()) != 0 {
			t.Errorf("images left: %+v", e.cloud.Images())
		}
	})
	t.Run("missing OSS object", func(t *testing.T) {
		_, err := e.cpi.CreateStemcell(ctx, "", json.RawMessage(`{"oss_bucket":"b","oss_object":"nope.raw"}`))
		wantCPIError(t, err, cpi.CloudError, false, "ecs ImportImage answered 404 InvalidOSSObject.NotFound", "b/nope.raw")
	})
	t.Run("light stemcell image survives", func(t *testing.T) {
		id := e.cloud.AddImage("shared", "Available")
		sc, err := e.cpi.CreateStemcell(ctx, "", json.RawMessage(`{"image_id":{"cn-beijing":"`+id+`"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if sc != cpi.StemcellCID(id+" light") {
			t.Errorf("cid = %q", sc)
		}
		if err := e.cpi.DeleteStemcell(ctx, sc); err != nil {
			t.Fatal(err)
		}
		if len(e.cloud.Images()) != 1 {
			t.Error("delete_stemcell of a light stemcell deleted the shared image")
		}
	})
	t.Run("light stemcell for another region, missing or not available", func(t *testing.T) {
		_, err := e.cpi.CreateStemcell(ctx, "", json.RawMessage(`{"image_id":{"cn-hangzhou":"m-1","cn-shanghai":"m-2"}}`))
		wantCPIError(t, err, cpi.CloudError, false, "no image for region cn-beijing (it has: cn-hangzhou, cn-shanghai)")
		_, err = e.cpi.CreateStemcell(ctx, "", json.RawMessage(`{"image_id":{"cn-beijing":"m-nope"}}`))
		wantCPIError(t, err, cpi.CloudError, false, "m-nope not found in region cn-beijing")
		id := e.cloud.AddImage("importing", "Creating")
		_, err = e.cpi.CreateStemcell(ctx, "", json.RawMessage(`{"image_id":{"cn-beijing":"`+id+`"}}`))
		wantCPIError(t, err, cpi.CloudError, false, "is Creating, not Available")
	})
}

func TestCalculateVMCloudProperties(t *testing.T) {
	e := newEnv(t, fakealicloud.Options{}, nil)
	tests := []struct {
		in   cpi.VMResources
		want string
	}{
		{cpi.VMResources{CPU: 1, RAM: 1024}, `{"instance_type":"ecs.t6-c1m1.large"}`},
		{cpi.VMResources{CPU: 2, RAM: 4096, EphemeralDiskSize: 3000}, `{"instance_type":"ecs.g6.large","ephemeral_disk":{"size":3000,"category":"cloud_efficiency"}}`},
		{cpi.VMResources{CPU: 3, RAM: 1024}, `{"instance_type":"ecs.g6.xlarge"}`},
	}
	for _, tt := range tests {
		got, err := e.cpi.CalculateVMCloudProperties(context.Background(), tt.in)
		if err != nil || string(got) != tt.want {
			t.Errorf("%+v: %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	_, err := e.cpi.CalculateVMCloudProperties(context.Background(), cpi.VMResources{CPU: 64, RAM: 1024})
	wantCPIError(t, err, cpi.CloudError, false, "no instance type has 64 CPUs")
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		in, err string
	}{
		{in: `{"region":"cn-beijing","access_key_id":"a","access_key_secret":"s"}`},
		{in: `{"region":"cn-beijing","access_key_id":"a","access_key_secret":"s","security_token":"t","ecs_endpoint":"ecs.cn-beijing.aliyuncs.com","vpc_endpoint":"http://127.0.0.1:9"}`},
		{in: `{"region":"cn-beijing","access_key_id":"a","access_key_secret":"hunter2","regoin":"x"}`, err: `unknown key "regoin"`},
		{in: `{"access_key_id":"a","access_key_secret":"hunter2"}`, err: "region is required"},
		{in: `{"region":"Beijing!","access_key_id":"a","access_key_secret":"hunter2"}`, err: `region "Beijing!" is not a region id`},
		{in: `{"region":"cn-beijing","access_key_id":"a"}`, err: "access_key_id and access_key_secret are required"},
		{in: `{"region":"cn-beijing","access_key_id":"a","access_key_secret":"hunter2","ecs_endpoint":"ftp://x"}`, err: "ecs_endpoint: must be a host or an http(s) URL"},
		{in: `{"region":"cn-beijing","access_key_id":"a","access_key_secret":"hunter2","ecs_endpoint":"http://u:hunter2@x"}`, err: "ecs_endpoint"},
		{in: `{"region":"cn-beijing","access_key_id":"a","access_key_secret":"s","oss_endpoint":"oss-cn-beijing-internal.aliyuncs.com"}`},
		{in: `{"region":"cn-beijing","access_key_id":"a","access_key_secret":"hunter2","oss_endpoint":"ftp://x"}`, err: "oss_endpoint: must be a host or an http(s) URL"},
		{in: `{"region":"cn-beijing","access_key_id":"a","access_key_secret":"hunter2","state_timeout":-1}`, err: "state_timeout must not be negative"},
		{in: `{"region":"cn-beijing","access_key_id":"a","access_key_secret":["hunter2"]}`, err: `key "access_key_secret" must be string, got array`},
		{in: `{"region":"cn-beijing","access_key_id":"a","access_key_secret":"hunter2"} {}`, err: "trailing data"},
		{in: `{"region":`, err: "alicloud config"},
	}
	for _, tt := range tests {
		_, err := alicloud.ParseConfig([]byte(tt.in))
		if tt.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: error %v, want %q", tt.in, err, tt.err)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error holds the secret: %v", tt.in, err)
		}
	}
}

func TestConfigRedacts(t *testing.T) {
	c := alicloud.Config{Region: "cn-beijing", AccessKeyID: "LTAI-id", AccessKeySecret: "hunter2", SecurityToken: "sts-s3cr3t"}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cfg", c)
	for _, out := range []string{c.String(), fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, &c, c, &c), logged.String()} {
		if strings.Contains(out, "hunter2") || strings.Contains(out, "sts-s3cr3t") || !strings.Contains(out, "LTAI-id") {
			t.Errorf("printed config: %s", out)
		}
	}
}

// FuzzVMCloudProperties: any cloud_properties are decoded or refused with a
// VMCreationFailed error before any request; never a panic, never a VM.
func FuzzVMCloudProperties(f *testing.F) {
	for _, s := range []string{`{}`, `{"instance_type":"ecs.g6.large"}`, `{"system_disk":{"size":"51_200"}}`, `{"ephemeral_disk":{"size":-1}}`,
		`{"tags":{"aliyun":"x"}}`, `{"charge_type":"PrePaid"}`, `[`, `null`, `{"instance_type":1}`, `{"spot_strategy":"SpotWithPriceLimit"}`} {
		f.Add([]byte(s))
	}
	cloud := fakealicloud.New(f, fakealicloud.Options{})
	cfg := baseConfig(cloud)
	cfg.ECSEndpoint, cfg.VPCEndpoint = "http://127.0.0.1:1", "http://127.0.0.1:1" // no cloud: decoding must fail first or the call fails fast
	cfg.RetryConfig.MaxAttempts = 1
	c, err := alicloud.New(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, err := c.CreateVM(context.Background(), spec("m-1", string(b), cpi.Networks{"d": dynamicNet(fakealicloud.VSwitchA)}))
		var e *cpi.Error
		if !errors.As(err, &e) || e.Kind != cpi.VMCreationFailed || e.OkToRetry {
			t.Errorf("create_vm(%q) = %v", b, err)
		}
		_, err = c.CreateDisk(context.Background(), 1024, b, "")
		if !errors.As(err, &e) || e.Kind != cpi.CloudError {
			t.Errorf("create_disk(%q) = %v", b, err)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{`{}`, `{"region":"cn-beijing","access_key_id":"a","access_key_secret":"s"}`, `[`, `{"retry_config":{"max_attempts":-1}}`, `{"ecs_endpoint":"http://[::1"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := alicloud.ParseConfig(b); err == nil {
			if _, err := alicloud.New(c, nil); err != nil {
				t.Errorf("ParseConfig accepted a config New refuses: %v", err)
			}
		} else if sec := c.AccessKeySecret; sec != "" && strings.Contains(err.Error(), sec) &&
			!strings.Contains(c.Region+c.ECSEndpoint+c.VPCEndpoint+c.AccessKeyID, sec) {
			// (A secret that is also another key's value may be quoted as that value.)
			t.Errorf("error holds the secret: %v", err)
		}
	})
}

// BenchmarkCreateDeleteVM is a VM's round trip through the CPI against the fake
// cloud (create stopped, write settings, start, wait, release, wait): the CPI's and
// the SDK's own cost plus local HTTP, with one poll per state change.
func BenchmarkCreateDeleteVM(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, fakealicloud.Options{Polls: 1}, nil)
	sc := mustStemcell(b, e)
	s := spec(sc, `{"instance_type":"ecs.g6.large"}`, cpi.Networks{"default": manualNet("10.0.0.60")})
	before := len(e.cloud.Requests())
	for b.Loop() {
		vm, _, err := e.cpi.CreateVM(ctx, s)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.cpi.DeleteVM(ctx, vm); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(e.cloud.Requests())-before)/float64(b.N), "requests/op")
}

// TestConcurrentCreates: the CPI is shared by the director's workers; VMs made at
// once get distinct addresses and none is lost (run with -race: the SDK's clients
// are per request).
func TestConcurrentCreates(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fakealicloud.Options{Polls: 1}, nil)
	sc := mustStemcell(t, e)
	const n = 6
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for k := range n {
		wg.Go(func() {
			s := spec(sc, `{"instance_type":"ecs.g6.large"}`, cpi.Networks{"d": dynamicNet(fakealicloud.VSwitchA)})
			s.AgentID = fmt.Sprintf("agent-c%d", k)
			vm, _, err := e.cpi.CreateVM(ctx, s)
			if err == nil {
				err = e.cpi.RebootVM(ctx, vm)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	ips := map[string]bool{}
	for _, i := range e.cloud.Instances() {
		if i.Status != "Running" || ips[i.IP] {
			t.Errorf("instance %+v", i)
		}
		ips[i.IP] = true
	}
	if len(ips) != n {
		t.Errorf("%d instances, want %d", len(ips), n)
	}
}

func TestUpdateDisk(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fakealicloud.Options{}, func(c *alicloud.Config) { c.AvailabilityZone = fakealicloud.ZoneA })
	disk, err := e.cpi.CreateDisk(ctx, 20*1024, json.RawMessage(`{"category":"cloud_efficiency"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.cpi.UpdateDisk(ctx, disk, 40*1024, json.RawMessage(`{"category":"cloud_essd","performance_level":"PL2","tags":{"tier":"gold"}}`))
	if err != nil || got != disk {
		t.Fatalf("update_disk = %s, %v; want the same disk", got, err)
	}
	d := e.cloud.Disks()[0]
	if d.Category != "cloud_essd" || d.PerformanceLevel != "PL2" || d.Size != 40 || d.Tags["tier"] != "gold" {
		t.Errorf("disk = %+v", d)
	}
	for _, tt := range []struct {
		size  int
		props string
		says  string
	}{
		{20 * 1024, `{"category":"cloud_essd"}`, "cannot shrink"},
		{40 * 1024, `{"category":"cloud"}`, "InvalidDiskCategory.Conversion"},
		{40 * 1024, `{"category":"cloud_essd","encrypted":true}`, "encryption"},
	} {
		_, err := e.cpi.UpdateDisk(ctx, disk, tt.size, json.RawMessage(tt.props))
		wantCPIError(t, err, cpi.NotSupported, false, tt.says)
	}
	_, err = e.cpi.UpdateDisk(ctx, disk, 40*1024, json.RawMessage(`{"categroy":"cloud"}`))
	wantCPIError(t, err, cpi.CloudError, false, `unknown cloud property "categroy"`)
}

func TestDiskFailures(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fakealicloud.Options{Polls: 1, MaxDisks: 1}, func(c *alicloud.Config) { c.AvailabilityZone = fakealicloud.ZoneB })
	vm, _, err := e.cpi.CreateVM(ctx, spec(mustStemcell(t, e), `{"instance_type":"ecs.g6.large","availability_zone":"`+fakealicloud.ZoneA+`"}`,
		cpi.Networks{"d": dynamicNet(fakealicloud.VSwitchA)}))
	if err != nil {
		t.Fatal(err)
	}
	far, err := e.cpi.CreateDisk(ctx, 1024, nil, "") // in the configured zone, B
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.cpi.CreateDisk(ctx, 1024, nil, vm)
	wantCPIError(t, err, cpi.CloudError, false, "ecs CreateDisk answered 403 QuotaExceed.Disk (request ")
	if got := e.cloud.Calls("CreateDisk", 0); got != 2 {
		t.Errorf("CreateDisk tries = %d: a quota error is not retried", got)
	}
	_, err = e.cpi.AttachDisk(ctx, vm, far)
	wantCPIError(t, err, cpi.CloudError, false, "ecs AttachDisk answered 403 InvalidDiskId.ZoneMismatch")
	_, err = e.cpi.CreateDisk(ctx, 1024, json.RawMessage(`{"category":"cloud_nvme"}`), vm)
	wantCPIError(t, err, cpi.CloudError, false, "InvalidDiskCategory.ValueNotSupported")
	_, err = e.cpi.CreateDisk(ctx, 1024, json.RawMessage(`{"delete_with_instance":true}`), vm)
	wantCPIError(t, err, cpi.CloudError, false, "a persistent disk outlives its VM")
	err = e.cpi.DetachDisk(ctx, "i-nope", far)
	wantCPIError(t, err, cpi.VMNotFound, false, "VM i-nope not found")
	if err := e.cpi.SetDiskMetadata(ctx, "d-nope", cpi.Metadata{"a": "b"}); !errors.Is(err, cpi.ErrDiskNotFound) {
		t.Errorf("set_disk_metadata(missing) = %v", err)
	}
	if _, err := e.cpi.SnapshotDisk(ctx, "d-nope", nil); !errors.Is(err, cpi.ErrDiskNotFound) {
		t.Errorf("snapshot_disk(missing) = %v", err)
	}
	if err := e.cpi.DeleteSnapshot(ctx, "s-nope"); err != nil {
		t.Errorf("delete_snapshot(missing) = %v", err)
	}
}
