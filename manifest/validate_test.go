package manifest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const cloudConfigYAML = `azs:
- name: z1
- name: z2
vm_types:
- name: small
disk_types:
- name: ssd
  disk_size: 1024
networks:
- name: default
  type: manual
  subnets:
  - range: 10.0.0.0/24
    gateway: 10.0.0.1
    azs: [z1, z2]
    reserved: [10.0.0.2-10.0.0.9]
    static: [10.0.0.10-10.0.0.20]
- name: dyn
  type: dynamic
compilation:
  workers: 2
  network: default
  az: z1
  vm_type: small
`

const deploymentYAML = `name: app
releases:
- {name: app, version: 1.0}
stemcells:
- {alias: default, os: ubuntu-jammy, version: latest}
update:
  canaries: 1
  max_in_flight: 25%
  canary_watch_time: 1000-30000
  update_watch_time: 5000
instance_groups:
- name: web
  instances: 2
  azs: [z1]
  vm_type: small
  stemcell: default
  persistent_disk_type: ssd
  update: {max_in_flight: 1, serial: false}
  networks:
  - name: default
    static_ips: [10.0.0.10, 10.0.0.11]
  jobs:
  - {name: web, release: app, properties: {port: 80}}
`

func load(t *testing.T, dep, cc string) (*Deployment, *CloudConfig) {
	t.Helper()
	d, err := LoadDeployment(mustParseFile(t, "manifest.yml", dep))
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadCloudConfig(mustParseFile(t, "cloud.yml", cc))
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}

func mustParseFile(t *testing.T, name, s string) *Node {
	t.Helper()
	n, err := Parse(name, []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestValidDeployment(t *testing.T) {
	d, cc := load(t, deploymentYAML, cloudConfigYAML)
	if err := Validate(d, cc, nil); err != nil {
		t.Fatal(err)
	}
	web := d.InstanceGroups[0]
	got := []any{web.Update.Canaries.Canaries(5), web.Update.MaxInFlight.MaxInFlight(5), d.Update.MaxInFlight.MaxInFlight(10),
		d.Update.MaxInFlight.MaxInFlight(2), *web.Update.CanaryWatchTime, *web.Update.UpdateWatchTime, web.Update.IsSerial(), d.Update.IsSerial(),
		web.Jobs[0].Properties["port"], d.Releases[0].Version}
	want := []any{1, 1, 2, 1, WatchTime{1000, 30000}, WatchTime{5000, 5000}, false, true, 80, "1.0"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
	pct := Amount{Value: 10, Percent: true}
	if pct.Canaries(5) != 0 || pct.MaxInFlight(5) != 1 || (Amount{Value: 150, Percent: true}).Canaries(4) != 4 {
		t.Error("percentage arithmetic differs from BOSH's")
	}
}

func TestValidateReportsEverythingWithLocations(t *testing.T) {
	bad := strings.NewReplacer(
		"azs: [z1]", "azs: [z1, z9]",
		"vm_type: small", "vm_type: huge",
		"_disk_type: ssd", "_disk_type: hdd",
		"static_ips: [10.0.0.10, 10.0.0.11]", "static_ips: [10.0.0.10, 10.0.0.5, 10.1.0.1]",
		"release: app, properties", "release: nope, properties",
		"stemcell: default\n  persistent", "stemcell: trusty\n  persistent",
	).Replace(deploymentYAML)
	d, cc := load(t, bad, cloudConfigYAML)
	err := Validate(d, cc, nil)
	if err == nil {
		t.Fatal("no errors")
	}
	want := []string{
		`manifest.yml:14:13: instance_groups/name=web/azs/1: AZ "z9" is not defined in the cloud-config`,
		`manifest.yml:15:12: instance_groups/name=web/vm_type: vm_type "huge" is not defined in the cloud-config`,
		`manifest.yml:16:13: instance_groups/name=web/stemcell: stemcell alias "trusty" is not in stemcells`,
		`manifest.yml:17:25: instance_groups/name=web/persistent_disk_type: disk_type "hdd" is not defined in the cloud-config`,
		`manifest.yml:23:26: instance_groups/name=web/jobs/name=web/release: release "nope" is not in releases`,
		`manifest.yml:21:17: instance_groups/name=web/networks/name=default/static_ips: 3 static IPs for 2 instances: there must be one per instance`,
		`manifest.yml:21:29: instance_groups/name=web/networks/name=default/static_ips/1: 10.0.0.5 is in a reserved range of network "default"`,
		`manifest.yml:21:39: instance_groups/name=web/networks/name=default/static_ips/2: 10.1.0.1 is outside every subnet of network "default"`,
	}
	var got []string
	for _, e := range err.(Errors) {
		got = append(got, e.Error())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s\n%s", diff, strings.Join(got, "\n"))
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"name: x\njobs: []\nreleases: []\nstemcells: []\nupdate: {canaries: 1, max_in_flight: 1, canary_watch_time: 1, update_watch_time: 1}",
			"manifest.yml:2:7: jobs: this is a v1 manifest key"},
		{"name: x\nreleases: []\nstemcells: []\nupdate: {canaries: x, max_in_flight: 1, canary_watch_time: 9-1, update_watch_time: 1}",
			"manifest.yml:4:20: update/canaries: expected a non-negative integer or percentage"},
		{"name: x\nreleases: []\nstemcells: []\nupdate: {canaries: 1, max_in_flight: 1, canary_watch_time: 9-1, update_watch_time: 1}",
			"update/canary_watch_time: minimum 9 is greater than maximum 1"},
		{"name: x\nreleases: []\nstemcells: []\nupdate: {canaries: 1, max_in_flight: 1, canary_watch_time: 1, update_watch_time: 1}\ninstance_groups:\n- name: a\n  instances: two\n",
			"manifest.yml:7:14: instance_groups/name=a/instances: expected an integer"},
		{"name: x\nreleases: []\nstemcells: []\nupdate: {canaries: 1, max_in_flight: 1, canary_watch_time: 1, update_watch_time: 1}\nfeatures: {use_dns_addresses: maybe}",
			"features/use_dns_addresses: expected true or false"},
	}
	for _, tt := range tests {
		_, err := LoadDeployment(mustParseFile(t, "manifest.yml", tt.doc))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %v, want it to contain %q", err, tt.want)
		}
	}
}

func TestCloudConfigErrorsAndMerge(t *testing.T) {
	bad := strings.NewReplacer("gateway: 10.0.0.1", "gateway: 10.0.1.1", "static: [10.0.0.10-10.0.0.20]", "static: [10.0.0.5-10.0.0.20]").Replace(cloudConfigYAML)
	_, err := LoadCloudConfig(mustParseFile(t, "cloud.yml", bad))
	for _, want := range []string{
		"cloud.yml:14:14: networks/name=default/subnets/0/gateway: gateway 10.0.1.1 is outside range 10.0.0.0/24",
		"networks/name=default/subnets/0/static/0: static 10.0.0.5-10.0.0.20 overlaps reserved 10.0.0.2-10.0.0.9",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to contain %q", err, want)
		}
	}
	a, _ := LoadCloudConfig(mustParseFile(t, "a.yml", cloudConfigYAML))
	b, _ := LoadCloudConfig(mustParseFile(t, "b.yml", "vm_types: [{name: small}, {name: large}]\ncompilation: {workers: 1, network: default}\n"))
	merged, err := MergeCloudConfigs(a, b)
	if err == nil || !strings.Contains(err.Error(), "b.yml:2:14: compilation: compilation is already set by cloud-config a.yml") {
		t.Errorf("merge error %v", err)
	}
	errs := ValidateCloudConfig(merged, nil)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `b.yml:1:12: vm_types/name=small: vm_type "small" is defined twice (first at a.yml:5:3)`) {
		t.Errorf("duplicate check: %v", errs)
	}
}

func TestRuntimeConfigAndAddonFilters(t *testing.T) {
	rcA, err := LoadRuntimeConfig(mustParseFile(t, "rc-a.yml", `releases: [{name: dns, version: "1.2"}, {name: app, version: "2.0"}]
addons:
- name: dns
  jobs: [{name: bosh-dns, release: dns}]
  include: {stemcell: [{os: ubuntu-jammy}]}
  exclude: {instance_groups: [db]}
tags: {team: a}
`))
	if err != nil {
		t.Fatal(err)
	}
	rcB, err := LoadRuntimeConfig(mustParseFile(t, "rc-b.yml", "releases: [{name: x, version: latest}]\ntags: {team: b}\n"))
	if err == nil || !strings.Contains(err.Error(), `rc-b.yml:1:31: releases/name=x/version: a runtime-config must pin release versions, not "latest"`) {
		t.Errorf("latest in runtime-config: %v", err)
	}
	if _, err := MergeRuntimeConfigs(rcA, rcB); err == nil || !strings.Contains(err.Error(), "tags are already set by runtime-config rc-a.yml") {
		t.Errorf("tags twice: %v", err)
	}
	d, cc := load(t, deploymentYAML, cloudConfigYAML)
	err = Validate(d, cc, rcA)
	if err == nil || !strings.Contains(err.Error(), "rc-a.yml:1:41: releases/name=app/version: runtime-config wants release app version 2.0 but the deployment uses 1.0") {
		t.Errorf("release version clash: %v", err)
	}
	addon := rcA.Addons[0]
	web := d.InstanceGroups[0]
	db := web
	db.Name = "db"
	if !addon.Applies("app", web, "ubuntu-jammy", nil) || addon.Applies("app", db, "ubuntu-jammy", nil) || addon.Applies("app", web, "windows", nil) {
		t.Error("addon filter evaluation differs from BOSH's")
	}
}

func TestCPIConfig(t *testing.T) {
	_, err := LoadCPIConfig(mustParseFile(t, "cpi.yml", "cpis:\n- {name: a, type: openstack}\n- {name: b, type: aws, migrated_from: [{name: a}]}\n"))
	if err == nil || !strings.Contains(err.Error(), `cpi.yml:3:3: cpis/name=b: CPI name "a" is already used by cpis/name=a`) {
		t.Errorf("error %v", err)
	}
}
