package policy

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

func manifest(t testing.TB, src string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(src), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

const webV1 = `
name: web
releases: [{name: nginx, version: "1.21.0"}, {name: bpm, version: "1.2.3"}]
stemcells: [{alias: default, os: ubuntu-jammy, version: "1.500"}]
update: {canaries: 1, max_in_flight: 2, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
- name: web
  instances: 3
  jobs:
  - {name: nginx, release: nginx, properties: {port: 80, tls: {enabled: false}}}
  - {name: bpm, release: bpm}
- name: worker
  instances: 2
  jobs: [{name: worker, release: nginx}]
`

const webV2 = `
name: web
releases: [{name: nginx, version: "1.20.9"}, {name: bpm, version: "1.10.0"}]
stemcells: [{alias: default, os: ubuntu-jammy, version: "1.400"}]
update: {canaries: 1, max_in_flight: "50%", canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
- name: web
  instances: 1
  update: {serial: false}
  jobs:
  - {name: nginx, release: nginx, properties: {port: 8080, tls: {enabled: false, cert: x}}}
  - {name: metrics, release: bpm}
- name: api
  instances: 2
  jobs: [{name: api, release: nginx}]
`

func TestDiff(t *testing.T) {
	prev := Snapshot{
		Deployments:    map[string]any{"web": manifest(t, webV1), "old": manifest(t, "name: old\ninstance_groups: [{name: a, instances: 1, jobs: [{name: j, release: r}]}]")},
		CloudConfig:    map[string]any{"azs": []any{"z1"}},
		RuntimeConfigs: map[string]any{"dns": map[string]any{"addons": []any{}}},
	}
	next := Snapshot{
		Deployments:    map[string]any{"web": manifest(t, webV2), "new": manifest(t, "name: new\ninstance_groups: [{name: b, instances: 2, jobs: []}]")},
		CloudConfig:    map[string]any{"azs": []any{"z1"}},
		RuntimeConfigs: map[string]any{"dns": map[string]any{"addons": []any{}}, "syslog": map[string]any{}},
	}
	want := Changes{
		Deployments: map[string]DeploymentChange{
			"web": {
				Added:   []string{"api"},
				Removed: []string{"worker"},
				Scaled:  []Scale{{InstanceGroup: "web", From: 3, To: 1}},
				JobsAdded: []JobRef{
					{InstanceGroup: "api", Job: "api", Release: "nginx"},
					{InstanceGroup: "web", Job: "metrics", Release: "bpm"},
				},
				JobsRemoved: []JobRef{
					{InstanceGroup: "web", Job: "bpm", Release: "bpm"},
					{InstanceGroup: "worker", Job: "worker", Release: "nginx"},
				},
				PropertiesChanged: []PropertyChange{
					{InstanceGroup: "web", Job: "nginx", Path: "port"},
					{InstanceGroup: "web", Job: "nginx", Path: "tls.cert"},
				},
				Stemcells: []VersionMove{{Name: "default", OS: "ubuntu-jammy", From: "1.500", To: "1.400", Direction: "down"}},
				Releases: []VersionMove{
					{Name: "bpm", From: "1.2.3", To: "1.10.0", Direction: "up"},
					{Name: "nginx", From: "1.21.0", To: "1.20.9", Direction: "down"},
				},
				UpdateChanged: []UpdateChange{
					{InstanceGroup: "web", Key: "serial", To: false},
					{Key: "max_in_flight", From: 2, To: "50%"},
				},
			},
			"old": {Deleted: true, Removed: []string{"a"}, JobsRemoved: []JobRef{{InstanceGroup: "a", Job: "j", Release: "r"}}},
			"new": {Created: true, Added: []string{"b"}},
		},
		Created:               []string{"new"},
		Deleted:               []string{"old"},
		RuntimeConfigsChanged: []string{"syslog"},
	}
	if diff := cmp.Diff(want, Diff(prev, next)); diff != "" {
		t.Errorf("Diff (-want +got):\n%s", diff)
	}
	if got := Diff(next, next); len(got.Deployments) != 0 || got.CloudConfigChanged {
		t.Errorf("Diff of a snapshot with itself: %+v", got)
	}
	if !Diff(Snapshot{}, Snapshot{CloudConfig: map[string]any{"vm_types": []any{}}}).CloudConfigChanged {
		t.Error("a new cloud-config is not reported as a change")
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.2.3", "1.10.0", -1},
		{"621.125", "621.99", 1},
		{"1.0", "1.0.1", -1},
		{"1.0.0-rc.1", "1.0.0", -1},
		{"0+dev.4", "0+dev.10", -1},
		{"007", "7", 0},
		{"1.0", "1.0", 0},
		{"2", "10", -1},
		{"1.a", "1.b", -1},
	}
	for _, tt := range tests {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := CompareVersions(tt.b, tt.a); got != -tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
	for _, tt := range []struct{ from, to, want string }{{"1", "2", "up"}, {"2", "1", "down"}, {"latest", "2", "unknown"}, {"", "1", "unknown"}} {
		if got := direction(tt.from, tt.to); got != tt.want {
			t.Errorf("direction(%q, %q) = %q, want %q", tt.from, tt.to, got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	in := map[string]any{
		"properties": map[any]any{
			"uaa": map[string]any{"clients": map[string]any{"admin": map[string]any{"secret": "s", "scope": "x"}}},
			"tls": map[string]any{"certificate": "C", "key": "K", "ca": "CA"},
			"db":  map[string]any{"Admin-Password": []any{"p"}, "url": "from-a-variable", "pem": "x -----BEGIN RSA PRIVATE KEY----- y"},
			"n":   3,
		},
		"api_token": "t",
	}
	want := map[string]any{
		"properties": map[string]any{
			"uaa": map[string]any{"clients": map[string]any{"admin": map[string]any{"secret": Redacted, "scope": "x"}}},
			"tls": map[string]any{"certificate": "C", "key": Redacted, "ca": "CA"},
			"db":  map[string]any{"Admin-Password": Redacted, "url": Redacted, "pem": Redacted},
			"n":   json.Number("3"),
		},
		"api_token": Redacted,
	}
	got := Redact(in, "from-a-variable")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Redact (-want +got):\n%s", diff)
	}
}

// TestStringKeysDeterministic: YAML keys that read alike (1 and "1") give one input key,
// the same one every time, whatever Go's map order.
func TestStringKeysDeterministic(t *testing.T) {
	want := map[string]any{"1": "string", "true": "string too", "2.5": "float"}
	for range 50 {
		got := stringKeys(map[any]any{1: "int", "1": "string", true: "bool", "true": "string too", 2.5: "float"})
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("stringKeys (-want +got):\n%s", diff)
		}
	}
}
