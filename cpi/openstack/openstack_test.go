package openstack_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/cpitest"
	"github.com/bosun-gitops/bosun/cpi/openstack"
	"github.com/bosun-gitops/bosun/cpi/openstack/fakeopenstack"
)

type env struct {
	cloud *fakeopenstack.Cloud
	cpi   *openstack.CPI
	logs  *cpitest.Log
}

func baseConfig(cloud *fakeopenstack.Cloud) openstack.Config {
	return openstack.Config{
		AuthURL: cloud.AuthURL(), Username: fakeopenstack.Username, APIKey: fakeopenstack.Password,
		Domain: fakeopenstack.Domain, Project: fakeopenstack.Project, Region: fakeopenstack.Region,
		DefaultKeyName: fakeopenstack.KeyPair, DefaultSecurityGroups: []string{"bosh"},
		StateTimeout: 5, WaitResourcePollInterval: 0.001,
		RetryConfig:       openstack.RetryConfig{MaxAttempts: 5, SleepDuration: 0.001, MaxRetryAfter: 0.05},
		ConnectionOptions: openstack.ConnectionOptions{ReadTimeout: 2},
	}
}

func newEnv(t *testing.T, opts fakeopenstack.Options, mod func(*openstack.Config)) env {
	t.Helper()
	cloud := fakeopenstack.New(t, opts)
	cfg := baseConfig(cloud)
	if mod != nil {
		mod(&cfg)
	}
	log, logs := cpitest.NewLog(t, secrets...)
	c, err := openstack.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return env{cloud: cloud, cpi: c, logs: logs}
}

// secrets must never appear in the CPI's log or errors.
var secrets = []string{fakeopenstack.Password, fakeopenstack.AppCredKey}

// stemcellImage writes a stemcell `image` file: a gzipped tarball holding root.img.
func stemcellImage(t testing.TB, size int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755})
	if err := tw.WriteHeader(&tar.Header{Name: "./root.img", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(size)}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, zeros{}, int64(size)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []io.Closer{tw, zw, f} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

const stemcellProps = `{"name":"bosh-openstack-kvm-ubuntu-noble","version":"1.5","infrastructure":"openstack","hypervisor":"kvm","disk":5120,"disk_format":"qcow2","container_format":"bare","os_type":"linux","os_distro":"ubuntu","architecture":"x86_64","auto_disk_config":true}`

func manualNet(ip string) cpi.Network {
	return cpi.Network{Type: "manual", IP: ip, Netmask: "255.255.255.0", Gateway: "10.0.0.1", Default: []string{"dns", "gateway"},
		CloudProperties: json.RawMessage(`{"net_id":"` + fakeopenstack.NetPrivate + `"}`)}
}

func dynamicNet(netID string) cpi.Network {
	return cpi.Network{Type: "dynamic", CloudProperties: json.RawMessage(`{"net_id":"` + netID + `"}`)}
}

var settings = cpi.AgentSettings{Mbus: "nats://agent:secret@10.0.0.2:4222", Blobstore: cpi.Blobstore{Provider: "local"}}

func TestConformance(t *testing.T) {
	start := time.Now()
	cpitest.RunConformance(t, func(t *testing.T) cpitest.Setup {
		e := newEnv(t, fakeopenstack.Options{}, nil)
		return cpitest.Setup{CPI: e.cpi, StemcellImage: stemcellImage(t, 1<<20), StemcellProps: json.RawMessage(stemcellProps),
			VMProps: json.RawMessage(`{"instance_type":"m1.small","availability_zone":"z2"}`), DiskProps: json.RawMessage(`{"type":"ssd"}`),
			Networks: cpi.Networks{"default": manualNet("10.0.0.10"), "dyn": dynamicNet(fakeopenstack.NetPrivate), "public": {Type: "vip", IP: fakeopenstack.FloatingIP}},
			Settings: settings, Timeout: 30 * time.Second}
	})
	t.Logf("conformance against the fake cloud took %s", time.Since(start))
}

func TestConformanceApplicationCredential(t *testing.T) {
	cpitest.RunConformance(t, func(t *testing.T) cpitest.Setup {
		e := newEnv(t, fakeopenstack.Options{Polls: 1}, func(c *openstack.Config) {
			c.Username, c.APIKey, c.Project = "", "", ""
			c.ApplicationCredentialID, c.ApplicationCredentialSecret = fakeopenstack.AppCredID, fakeopenstack.AppCredKey
		})
		light := e.cloud.AddImage("shared-stemcell", "active")
		return cpitest.Setup{CPI: e.cpi, StemcellProps: json.RawMessage(`{"name":"s","version":"1","image_id":"` + light + `"}`),
			VMProps:  json.RawMessage(`{"instance_type":"m1.large","boot_from_volume":true,"root_disk":{"size":20}}`),
			Networks: cpi.Networks{"default": dynamicNet(fakeopenstack.NetPrivate)}, Settings: settings, Timeout: 30 * time.Second}
	})
}

func mustStemcell(t *testing.T, e env) cpi.StemcellCID {
	t.Helper()
	sc, err := e.cpi.CreateStemcell(context.Background(), stemcellImage(t, 4096), json.RawMessage(stemcellProps))
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

// ourPorts counts the ports the CPI made that are left.
func ourPorts(c *fakeopenstack.Cloud) int {
	n := 0
	for _, p := range c.Ports() {
		if strings.HasPrefix(p.Name, "bosun-") {
			n++
		}
	}
	return n
}

func countCalls(c *fakeopenstack.Cloud, method, pathSuffix string, status int) int {
	n := 0
	for _, r := range c.Requests() {
		if r.Method == method && strings.HasSuffix(r.Path, pathSuffix) && (status == 0 || r.Status == status) {
			n++
		}
	}
	return n
}

func TestCreateVMWritesAgentSettingsAndNetworks(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fakeopenstack.Options{}, func(c *openstack.Config) { c.ConfigDrive = "disk" })
	sc := mustStemcell(t, e)
	vm, nets, err := e.cpi.CreateVM(ctx, spec(sc, `{"instance_type":"m1.large","security_groups":["default"],"scheduler_hints":{"group":"6b1e4a6c-4a52-4b43-9a55-2f5e8a4b9c01"}}`,
		cpi.Networks{"default": manualNet("10.0.0.20"), "public": {Type: "vip", IP: fakeopenstack.FloatingIP}}))
	if err != nil {
		t.Fatal(err)
	}
	servers := e.cloud.Servers()
	if len(servers) != 1 || servers[0].ID != string(vm) {
		t.Fatalf("servers = %+v", servers)
	}
	s := servers[0]
	if !s.ConfigDrive || s.Group != "6b1e4a6c-4a52-4b43-9a55-2f5e8a4b9c01" || s.KeyName != fakeopenstack.KeyPair || s.Metadata["bosun_agent_id"] != "agent-1" {
		t.Errorf("server = config drive %v, group %q, key %q, metadata %v", s.ConfigDrive, s.Group, s.KeyName, s.Metadata)
	}
	var ud openstack.UserData
	if err := json.Unmarshal(s.UserData, &ud); err != nil {
		t.Fatalf("user_data: %v\n%s", err, s.UserData)
	}
	var port fakeopenstack.Port
	for _, p := range e.cloud.Ports() {
		if p.DeviceID == s.ID {
			port = p
		}
	}
	want := cpi.Networks{"default": {Type: "manual", IP: "10.0.0.20", Netmask: "255.255.255.0", Gateway: "10.0.0.1",
		Default: []string{"dns", "gateway"}, CloudProperties: json.RawMessage(`{"net_id":"` + fakeopenstack.NetPrivate + `"}`),
		MAC: port.MAC, UseDHCP: true}, "public": {Type: "vip", IP: fakeopenstack.FloatingIP}}
	if diff := cmp.Diff(want, ud.Networks); diff != "" {
		t.Errorf("user_data networks (-want +got)\n%s", diff)
	}
	if ud.AgentID != "agent-1" || ud.Mbus != settings.Mbus || ud.VM.Name != s.Name || ud.Server.Name != s.Name ||
		ud.Disks.System != "/dev/sda" || string(ud.Disks.Ephemeral) != `"/dev/sdb"` || string(ud.Env) != `{"bosh":{"group":"web"}}` {
		t.Errorf("user_data = %+v", ud)
	}
	if port.SecurityGroups[0] != "sg-0001" {
		t.Errorf("port security groups = %v, want the vm_type's (default)", port.SecurityGroups)
	}
	if got := e.cloud.FloatingIPPort(fakeopenstack.FloatingIP); got != port.ID {
		t.Errorf("floating IP on port %q, want %q", got, port.ID)
	}
	if nets["public"].IP != fakeopenstack.FloatingIP || nets["default"].IP != "10.0.0.20" {
		t.Errorf("networks = %+v", nets)
	}

	// The flavor has ephemeral and swap disks and the config drive is a disk: the
	// first persistent disk asks for /dev/sde, and the hint is what Nova answered.
	disk, err := e.cpi.CreateDisk(ctx, 1500, nil, vm)
	if err != nil {
		t.Fatal(err)
	}
	hint, err := e.cpi.AttachDisk(ctx, vm, disk)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cpi.DiskHint{Path: "/dev/vde", VolumeID: string(disk)}, hint); diff != "" {
		t.Errorf("hint (-want +got)\n%s", diff)
	}
	if again, err := e.cpi.AttachDisk(ctx, vm, disk); err != nil || again != hint {
		t.Errorf("attaching again = %v, %v; want the same hint", again, err)
	}
	vols := e.cloud.Volumes()
	if len(vols) != 1 || vols[0].Size != 2 || vols[0].AZ != s.AZ || vols[0].Type != "standard" {
		t.Errorf("volumes = %+v (want 2 GiB in the VM's zone)", vols)
	}
	if err := e.cpi.ResizeDisk(ctx, disk, 4096); err == nil || !strings.Contains(err.Error(), "detach it") {
		t.Errorf("resize of an attached disk = %v", err)
	}
	if err := e.cpi.DeleteDisk(ctx, disk); err == nil || !strings.Contains(err.Error(), "attached") {
		t.Errorf("delete of an attached disk = %v", err)
	}
	if err := e.cpi.DeleteVM(ctx, vm); err != nil {
		t.Fatal(err)
	}
	// The disk survives its VM, detached; our port is gone; the floating IP is free.
	vols = e.cloud.Volumes()
	if len(vols) != 1 || vols[0].Status != "available" || vols[0].Server != "" {
		t.Errorf("volumes after delete_vm = %+v", vols)
	}
	if n := ourPorts(e.cloud); n != 0 {
		t.Errorf("%d ports left after delete_vm", n)
	}
	if err := e.cpi.ResizeDisk(ctx, disk, 1024); !errors.Is(err, cpi.ErrNotSupported) {
		t.Errorf("shrinking = %v, want NotSupported", err)
	}
	if err := e.cpi.ResizeDisk(ctx, disk, 5000); err != nil {
		t.Fatal(err)
	}
	if v := e.cloud.Volumes()[0]; v.Size != 5 {
		t.Errorf("size after resize = %d GiB, want 5", v.Size)
	}
}

func TestMetadataAndHumanReadableNames(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fakeopenstack.Options{}, func(c *openstack.Config) { c.HumanReadableVMNames = true })
	vm, _, err := e.cpi.CreateVM(ctx, spec(mustStemcell(t, e), `{"instance_type":"m1.small"}`, cpi.Networks{"d": dynamicNet(fakeopenstack.NetPrivate)}))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cpi.SetVMMetadata(ctx, vm, cpi.Metadata{"name": "web/0f3a", "deployment": "demo", "bosun_agent_id": "forged"}); err != nil {
		t.Fatal(err)
	}
	s := e.cloud.Servers()[0]
	if s.Name != "web_0f3a" || s.Metadata["deployment"] != "demo" || s.Metadata["bosun_agent_id"] != "agent-1" {
		t.Errorf("server name %q metadata %v", s.Name, s.Metadata)
	}
	vms, err := e.cpi.ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []cpi.VMInfo{{CID: vm, AgentID: "agent-1", Metadata: cpi.Metadata{"name": "web/0f3a", "deployment": "demo"}}}
	if diff := cmp.Diff(want, vms); diff != "" {
		t.Errorf("list_vms (-want +got)\n%s", diff)
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
		mod      func(*openstack.Config)
		retry    bool
		contains []string
		// calls is how many POST /servers the cloud must have seen.
		calls int
	}{
		{name: "never active", setup: func(e env) { e.cloud.SetServerFate("BUILD") }, mod: func(c *openstack.Config) { c.StateTimeout = 0.2 },
			retry: true, contains: []string{"still BUILD after 200ms"}, calls: 1},
		{name: "error state", setup: func(e env) { e.cloud.SetServerFate("ERROR") }, retry: true, contains: []string{"went to ERROR", "No valid host"}, calls: 1},
		{name: "quota", setup: func(e env) { e.cloud.SetQuota(0, 10) }, contains: []string{"POST /compute/v2.1/servers answered 403", "(request req-", "Quota exceeded for instances"}, calls: 1},
		{name: "unknown flavor", props: `{"instance_type":"m9.huge"}`, contains: []string{`instance_type "m9.huge": no such flavor (there are: m1.large, m1.small)`}},
		{name: "unknown zone", props: `{"instance_type":"m1.small","availability_zone":"mars"}`, retry: true, contains: []string{"answered 400", "availability zone is not available"}, calls: 1},
		{name: "unknown key pair", props: `{"instance_type":"m1.small","key_name":"nope"}`, contains: []string{`key pair "nope" not found`}},
		{name: "unknown security group", props: `{"instance_type":"m1.small","security_groups":["nope"]}`, contains: []string{`security group "nope" not found`}},
		{name: "address in use", setup: func(e env) {
			if _, _, err := e.cpi.CreateVM(context.Background(), spec(mustStemcell(t, e), `{"instance_type":"m1.small"}`, nets)); err != nil {
				t.Fatal(err)
			}
		}, retry: true, contains: []string{"neutron create port for 10.0.0.30", "answered 409", "IpAddressAlreadyAllocated"}, calls: 1},
		{name: "network out of addresses", setup: func(e env) {
			tiny := cpi.Networks{"t": dynamicNet(fakeopenstack.NetTiny)}
			if _, _, err := e.cpi.CreateVM(context.Background(), spec(mustStemcell(t, e), `{"instance_type":"m1.small"}`, tiny)); err != nil {
				t.Fatal(err)
			}
		}, nets: cpi.Networks{"t": dynamicNet(fakeopenstack.NetTiny)}, retry: true, contains: []string{"No more IP addresses available"}, calls: 2},
		{name: "two manual networks without config drive", nets: cpi.Networks{"a": manualNet("10.0.0.31"), "b": manualNet("10.0.0.32")},
			contains: []string{"2 manual networks need config_drive"}},
		{name: "no net_id", nets: cpi.Networks{"default": {Type: "manual", IP: "10.0.0.5"}}, contains: []string{`network "default" has no net_id`}},
		{name: "create answer lost", setup: func(e env) {
			e.cloud.Inject(fakeopenstack.Fault{Method: "POST", Path: "/servers", Times: 1, After: true, Drop: true})
		}, contains: []string{"nova create server", "POST /compute/v2.1/servers", "EOF"}, calls: 1},
		{name: "create 500 after acting", setup: func(e env) {
			e.cloud.Inject(fakeopenstack.Fault{Method: "POST", Path: "/servers", Times: 1, After: true, Status: 500})
		}, contains: []string{"answered 500"}, calls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fakeopenstack.Options{}, tt.mod)
			sc := mustStemcell(t, e)
			if tt.setup != nil {
				tt.setup(e)
			}
			before := len(e.cloud.Servers())
			beforePorts := ourPorts(e.cloud)
			props := tt.props
			if props == "" {
				props = `{"instance_type":"m1.small"}`
			}
			n := tt.nets
			if n == nil {
				n = nets
			}
			s := spec(sc, props, n)
			s.AgentID = "agent-2"
			_, _, err := e.cpi.CreateVM(context.Background(), s)
			wantCPIError(t, err, cpi.VMCreationFailed, tt.retry, tt.contains...)
			if got := len(e.cloud.Servers()); got != before {
				t.Errorf("%d servers left behind", got-before)
			}
			if got := ourPorts(e.cloud); got != beforePorts {
				t.Errorf("%d ports left behind", got-beforePorts)
			}
			if got := countCalls(e.cloud, "POST", "/servers", 0); got != tt.calls {
				t.Errorf("POST /servers seen %d times, want %d (a create is never repeated)", got, tt.calls)
			}
		})
	}
}

func TestStalePortIsReclaimed(t *testing.T) {
	e := newEnv(t, fakeopenstack.Options{}, nil)
	stale := e.cloud.AddPort(fakeopenstack.NetPrivate, "bosun-agent-1-default", "10.0.0.70")
	foreign := e.cloud.AddPort(fakeopenstack.NetPrivate, "someone-elses", "10.0.0.71")
	if _, _, err := e.cpi.CreateVM(context.Background(), spec(mustStemcell(t, e), `{"instance_type":"m1.small"}`, cpi.Networks{"default": manualNet("10.0.0.70")})); err != nil {
		t.Fatal(err)
	}
	_, _, err := e.cpi.CreateVM(context.Background(), spec(mustStemcell(t, e), `{"instance_type":"m1.small"}`, cpi.Networks{"default": manualNet("10.0.0.71")}))
	wantCPIError(t, err, cpi.VMCreationFailed, true, "10.0.0.71 already allocated")
	ids := map[string]bool{}
	for _, p := range e.cloud.Ports() {
		ids[p.ID] = true
	}
	if ids[stale] || !ids[foreign] {
		t.Errorf("ports = %v: want the stale one of ours gone and the foreign one kept", ids)
	}
}

func TestNextAvailabilityZone(t *testing.T) {
	e := newEnv(t, fakeopenstack.Options{}, nil)
	vm, _, err := e.cpi.CreateVM(context.Background(), spec(mustStemcell(t, e), `{"instance_type":"m1.small","availability_zones":["mars","z2"]}`,
		cpi.Networks{"default": manualNet("10.0.0.40")}))
	if err != nil {
		t.Fatal(err)
	}
	if s := e.cloud.Servers(); len(s) != 1 || s[0].ID != string(vm) || s[0].AZ != "z2" {
		t.Errorf("servers = %+v, want one in z2", s)
	}
}

func TestVMFollowsItsDisks(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fakeopenstack.Options{}, nil)
	sc := mustStemcell(t, e)
	first, _, err := e.cpi.CreateVM(ctx, spec(sc, `{"instance_type":"m1.small","availability_zone":"z2"}`, cpi.Networks{"d": dynamicNet(fakeopenstack.NetPrivate)}))
	if err != nil {
		t.Fatal(err)
	}
	disk, err := e.cpi.CreateDisk(ctx, 1024, nil, first)
	if err != nil {
		t.Fatal(err)
	}
	s := spec(sc, `{"instance_type":"m1.small"}`, cpi.Networks{"d": dynamicNet(fakeopenstack.NetPrivate)})
	s.DiskCIDs = []cpi.DiskCID{disk}
	vm, _, err := e.cpi.CreateVM(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range e.cloud.Servers() {
		if srv.ID == string(vm) && srv.AZ != "z2" {
			t.Errorf("VM in %s, want z2 where its disk is", srv.AZ)
		}
	}
	s.CloudProperties = json.RawMessage(`{"instance_type":"m1.small","availability_zone":"nova"}`)
	_, _, err = e.cpi.CreateVM(ctx, s)
	wantCPIError(t, err, cpi.VMCreationFailed, false, `persistent disks are in availability zone "z2", but its cloud_properties ask for "nova"`)
}

func TestBootFromVolume(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fakeopenstack.Options{}, func(c *openstack.Config) { c.BootFromVolume = true })
	vm, _, err := e.cpi.CreateVM(ctx, spec(mustStemcell(t, e), `{"instance_type":"m1.small","root_disk":{"size":25},"ephemeral_disk":{"size":8}}`,
		cpi.Networks{"d": dynamicNet(fakeopenstack.NetPrivate)}))
	if err != nil {
		t.Fatal(err)
	}
	s := e.cloud.Servers()[0]
	if s.Image != "" || len(s.BlockDevices) != 2 || s.BlockDevices[0]["destination_type"] != "volume" || s.BlockDevices[0]["volume_size"] != 25.0 ||
		s.BlockDevices[1]["source_type"] != "blank" || s.BlockDevices[1]["volume_size"] != 8.0 {
		t.Errorf("server image %q, block devices %v", s.Image, s.BlockDevices)
	}
	if v := e.cloud.Volumes(); len(v) != 1 || v[0].Size != 25 || v[0].Server != s.ID {
		t.Fatalf("volumes = %+v, want the 25 GiB root volume", v)
	}
	// The root volume is the VM's, not a persistent disk.
	if disks, err := e.cpi.GetDisks(ctx, vm); err != nil || len(disks) != 0 {
		t.Errorf("get_disks = %v, %v", disks, err)
	}
	if err := e.cpi.DeleteVM(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if v := e.cloud.Volumes(); len(v) != 0 {
		t.Errorf("root volume left after delete_vm: %+v", v)
	}
}

func TestCalculateVMCloudProperties(t *testing.T) {
	e := newEnv(t, fakeopenstack.Options{}, nil)
	tests := []struct {
		in   cpi.VMResources
		want string
	}{
		{cpi.VMResources{CPU: 1, RAM: 1024, EphemeralDiskSize: 0}, `{"instance_type":"m1.small"}`},
		{cpi.VMResources{CPU: 1, RAM: 1024, EphemeralDiskSize: 3000}, `{"instance_type":"m1.small","ephemeral_disk":{"size":3}}`},
		{cpi.VMResources{CPU: 2, RAM: 1024, EphemeralDiskSize: 10240}, `{"instance_type":"m1.large"}`},
	}
	for _, tt := range tests {
		got, err := e.cpi.CalculateVMCloudProperties(context.Background(), tt.in)
		if err != nil || string(got) != tt.want {
			t.Errorf("%+v: %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	_, err := e.cpi.CalculateVMCloudProperties(context.Background(), cpi.VMResources{CPU: 64, RAM: 1024})
	wantCPIError(t, err, cpi.CloudError, false, "no flavor has 64 CPUs")
}

func TestRetries(t *testing.T) {
	ctx := context.Background()
	t.Run("429 honours Retry-After, capped", func(t *testing.T) {
		e := newEnv(t, fakeopenstack.Options{}, nil)
		sc := mustStemcell(t, e)
		e.cloud.Inject(fakeopenstack.Fault{Method: "POST", Path: "/servers", Times: 2, Status: 429, RetryAfter: "3600"})
		start := time.Now()
		if _, _, err := e.cpi.CreateVM(ctx, spec(sc, `{"instance_type":"m1.small"}`, cpi.Networks{"d": dynamicNet(fakeopenstack.NetPrivate)})); err != nil {
			t.Fatal(err)
		}
		if got := countCalls(e.cloud, "POST", "/servers", 429); got != 2 {
			t.Errorf("429s seen = %d", got)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("took %s: Retry-After was not capped by max_retry_after", d)
		}
		if !strings.Contains(e.logs.String(), "rate limited") {
			t.Errorf("no log of the retry:\n%s", e.logs)
		}
	})
	t.Run("429 gives up after max_attempts", func(t *testing.T) {
		e := newEnv(t, fakeopenstack.Options{}, nil)
		e.cloud.Inject(fakeopenstack.Fault{Path: "/volumes", Status: 429, RetryAfter: "0"})
		_, err := e.cpi.CreateDisk(ctx, 1024, nil, "")
		wantCPIError(t, err, cpi.CloudError, false, "cinder create volume", "answered 429")
		if got := countCalls(e.cloud, "POST", "/volumes", 429); got != 6 {
			t.Errorf("tries = %d, want 1 + 5 retries", got)
		}
	})
	t.Run("5xx and dropped connections retried on GET", func(t *testing.T) {
		e := newEnv(t, fakeopenstack.Options{}, nil)
		sc := mustStemcell(t, e)
		e.cloud.Inject(fakeopenstack.Fault{Method: "GET", Path: "/flavors/detail", Times: 2, Status: 503})
		e.cloud.Inject(fakeopenstack.Fault{Method: "GET", Path: "/os-keypairs/", Times: 1, Drop: true})
		e.cloud.Inject(fakeopenstack.Fault{Method: "GET", Path: "/security-groups", Times: 1, Delay: 3 * time.Second})
		if _, _, err := e.cpi.CreateVM(ctx, spec(sc, `{"instance_type":"m1.small"}`, cpi.Networks{"d": dynamicNet(fakeopenstack.NetPrivate)})); err != nil {
			t.Fatal(err)
		}
		if got := countCalls(e.cloud, "GET", "/flavors/detail", 0); got != 3 {
			t.Errorf("flavor list tries = %d, want 3", got)
		}
	})
	t.Run("500 on POST not retried", func(t *testing.T) {
		e := newEnv(t, fakeopenstack.Options{}, nil)
		e.cloud.Inject(fakeopenstack.Fault{Method: "POST", Path: "/volumes", Times: 1, Status: 500})
		_, err := e.cpi.CreateDisk(ctx, 1024, nil, "")
		wantCPIError(t, err, cpi.CloudError, false, "answered 500", "(request req-")
		if got := countCalls(e.cloud, "POST", "/volumes", 0); got != 1 {
			t.Errorf("tries = %d, want 1", got)
		}
	})
	t.Run("volume quota not retried", func(t *testing.T) {
		e := newEnv(t, fakeopenstack.Options{MaxVolumes: 1}, nil)
		if _, err := e.cpi.CreateDisk(ctx, 1024, nil, ""); err != nil {
			t.Fatal(err)
		}
		_, err := e.cpi.CreateDisk(ctx, 1024, nil, "")
		wantCPIError(t, err, cpi.CloudError, false, "answered 413", "VolumeLimitExceeded")
		if got := countCalls(e.cloud, "POST", "/volumes", 413); got != 1 {
			t.Errorf("tries = %d, want 1", got)
		}
	})
	t.Run("expired token reauthenticates", func(t *testing.T) {
		e := newEnv(t, fakeopenstack.Options{}, nil)
		if ok, err := e.cpi.HasDisk(ctx, "nope"); err != nil || ok {
			t.Fatal(ok, err)
		}
		e.cloud.RevokeTokens()
		if ok, err := e.cpi.HasDisk(ctx, "nope"); err != nil || ok {
			t.Fatalf("after token revocation: %v, %v", ok, err)
		}
		if got := countCalls(e.cloud, "POST", "/auth/tokens", 201); got != 2 {
			t.Errorf("token requests = %d, want 2", got)
		}
	})
}

func TestBadCredentialsAndRegion(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		mod      func(*openstack.Config)
		contains []string
	}{
		{"wrong password", func(c *openstack.Config) { c.APIKey = "not-" + fakeopenstack.Password },
			[]string{"keystone authenticate", "POST /identity/v3/auth/tokens answered 401", "(request req-", "requires authentication"}},
		{"wrong application credential", func(c *openstack.Config) {
			c.Username, c.APIKey, c.Project = "", "", ""
			c.ApplicationCredentialID, c.ApplicationCredentialSecret = fakeopenstack.AppCredID, "wrong-"+fakeopenstack.AppCredKey
		}, []string{"answered 401"}},
		{"unknown region", func(c *openstack.Config) { c.Region = "Atlantis" },
			[]string{`keystone catalog has no compute (nova) endpoint of interface public in region "Atlantis"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fakeopenstack.Options{}, tt.mod)
			_, err := e.cpi.HasVM(ctx, "vm-1")
			wantCPIError(t, err, cpi.CloudError, false, tt.contains...)
			if strings.Contains(err.Error(), "wrong-") || strings.Contains(err.Error(), "not-") {
				t.Errorf("error holds the credential given: %v", err)
			}
		})
	}
}

func TestStemcells(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fakeopenstack.Options{}, func(c *openstack.Config) { c.StemcellPublicVisibility = true })
	t.Run("heavy upload streams", func(t *testing.T) {
		const size = 64 << 20
		path := stemcellImage(t, size)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		sc, err := e.cpi.CreateStemcell(ctx, path, json.RawMessage(stemcellProps))
		if err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		// Client and fake server together allocate a small fraction of the image:
		// neither holds it whole.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
			t.Errorf("uploading a %d MiB image allocated %d MiB", size>>20, alloc>>20)
		}
		var img fakeopenstack.Image
		for _, i := range e.cloud.Images() {
			if i.ID == string(sc) {
				img = i
			}
		}
		if img.Size != size || !img.Chunked || img.Status != "active" || img.Visibility != "public" ||
			img.Properties["os_distro"] != "ubuntu" || img.Properties["auto_disk_config"] != "true" || img.Name != "bosh-openstack-kvm-ubuntu-noble/1.5" {
			t.Errorf("image = %+v", img)
		}
		if err := e.cpi.DeleteStemcell(ctx, sc); err != nil {
			t.Fatal(err)
		}
		if len(e.cloud.Images()) != 0 {
			t.Error("image left after delete_stemcell")
		}
	})
	t.Run("failed upload is not repeated and leaves no image", func(t *testing.T) {
		e.cloud.Inject(fakeopenstack.Fault{Method: "PUT", Path: "/file", Times: 1, Status: 503})
		before := countCalls(e.cloud, "PUT", "/file", 0)
		_, err := e.cpi.CreateStemcell(ctx, stemcellImage(t, 1024), json.RawMessage(stemcellProps))
		wantCPIError(t, err, cpi.CloudError, false, "glance upload image data", "answered 503")
		if got := countCalls(e.cloud, "PUT", "/file", 0) - before; got != 1 {
			t.Errorf("uploads = %d, want 1", got)
		}
		if len(e.cloud.Images()) != 0 {
			t.Error("image left after a failed upload")
		}
	})
	t.Run("image glance cannot import", func(t *testing.T) {
		e.cloud.SetImageFate("killed")
		defer e.cloud.SetImageFate("")
		_, err := e.cpi.CreateStemcell(ctx, stemcellImage(t, 1024), json.RawMessage(stemcellProps))
		wantCPIError(t, err, cpi.CloudError, false, "did not become active", "glance rejected the image: it is killed")
		if len(e.cloud.Images()) != 0 {
			t.Error("killed image left behind")
		}
	})
	t.Run("light stemcell image survives", func(t *testing.T) {
		id := e.cloud.AddImage("shared", "active")
		sc, err := e.cpi.CreateStemcell(ctx, "", json.RawMessage(`{"name":"s","version":"1","image_id":"`+id+`"}`))
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
	t.Run("light stemcell image missing or not active", func(t *testing.T) {
		_, err := e.cpi.CreateStemcell(ctx, "", json.RawMessage(`{"image_id":"no-such-image"}`))
		wantCPIError(t, err, cpi.CloudError, false, "no-such-image", "answered 404")
		id := e.cloud.AddImage("queued", "queued")
		_, err = e.cpi.CreateStemcell(ctx, "", json.RawMessage(`{"image_id":"`+id+`"}`))
		wantCPIError(t, err, cpi.CloudError, false, "is queued, not active")
	})
	t.Run("not a stemcell", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "image")
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: "other", Size: 1, Mode: 0o644})
		tw.Write([]byte("x"))
		tw.Close()
		os.WriteFile(p, b.Bytes(), 0o644)
		_, err := e.cpi.CreateStemcell(ctx, p, json.RawMessage(stemcellProps))
		wantCPIError(t, err, cpi.CloudError, false, "holds no root.img")
	})
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		in, err string
	}{
		{in: `{"auth_url":"https://keystone:5000/v3","username":"u","api_key":"k","project":"p"}`},
		{in: `{"auth_url":"https://keystone/v3","application_credential_id":"i","application_credential_secret":"s"}`},
		{in: `{"auth_url":"https://k","username":"u","api_key":"k","project":"p","retry_config":{"max_attempts":3,"sleep_duration":0.5}}`},
		{in: `{"auth_url":"https://k","username":"u","api_key":"hunter2","project":"p","flavour":"x"}`, err: `unknown config key "flavour"`},
		{in: `{"auth_url":"https://k","username":"u","api_key":"hunter2"}`, err: "project (or tenant) is required"},
		{in: `{"auth_url":"https://k","username":"u","api_key":"hunter2","project":"p","application_credential_id":"i","application_credential_secret":"s"}`, err: "not both"},
		{in: `{"auth_url":"https://u:hunter2@k","username":"u","api_key":"k","project":"p"}`, err: "must not carry credentials"},
		{in: `{"auth_url":"keystone","username":"u","api_key":"hunter2","project":"p"}`, err: "auth_url must be an http(s) URL"},
		{in: `{"auth_url":"https://k","username":"u","api_key":"hunter2","project":"p","config_drive":"usb"}`, err: `config_drive "usb"`},
		{in: `{"auth_url":"https://k","username":"u","api_key":"hunter2","project":"p","state_timeout":"5"}`, err: `config key "state_timeout" must be float64`},
		{in: `{"auth_url":"https://k","username":"u","api_key":["hunter2"]}`, err: `config key "api_key" must be string, got array`},
		{in: `{"auth_url":`, err: "config"},
	}
	for _, tt := range tests {
		_, err := openstack.ParseConfig([]byte(tt.in))
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

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{`{}`, `{"auth_url":"https://k","username":"u","api_key":"k","project":"p"}`, `[`, `{"retry_config":{"max_attempts":-1}}`, `{"auth_url":"http://[::1"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := openstack.ParseConfig(b); err == nil {
			if _, err := openstack.New(c, nil); err != nil && !strings.Contains(err.Error(), "ca_cert") {
				t.Errorf("ParseConfig accepted a config New refuses: %v", err)
			}
		}
	})
}

// BenchmarkCreateDeleteVM is a VM's round trip through the CPI against the fake
// cloud: the CPI's own cost plus local HTTP, with one poll per state change.
func BenchmarkCreateDeleteVM(b *testing.B) {
	ctx := context.Background()
	cloud := fakeopenstack.New(b, fakeopenstack.Options{Polls: 1})
	cfg := baseConfig(cloud)
	c, err := openstack.New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	sc, err := c.CreateStemcell(ctx, stemcellImage(b, 4096), json.RawMessage(stemcellProps))
	if err != nil {
		b.Fatal(err)
	}
	s := spec(sc, `{"instance_type":"m1.small"}`, cpi.Networks{"default": manualNet("10.0.0.60")})
	for b.Loop() {
		vm, _, err := c.CreateVM(ctx, s)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.DeleteVM(ctx, vm); err != nil {
			b.Fatal(err)
		}
	}
}
