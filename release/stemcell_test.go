package release

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const stemcellMF = `---
name: bosh-openstack-kvm-ubuntu-jammy-go_agent
version: '1.181'
bosh_protocol: '1'
api_version: 3
sha1: 6ba94fd5a1b5c4e06c2f7f3ecbd0e8d2e8f5a6b7
operating_system: ubuntu-jammy
stemcell_formats:
- openstack-qcow2
cloud_properties:
  name: bosh-openstack-kvm-ubuntu-jammy-go_agent
  version: '1.181'
  infrastructure: openstack
  disk: 5120
`

func TestReadStemcell(t *testing.T) {
	want := &Stemcell{
		Name: "bosh-openstack-kvm-ubuntu-jammy-go_agent", OperatingSystem: "ubuntu-jammy", Version: "1.181",
		SHA1: "6ba94fd5a1b5c4e06c2f7f3ecbd0e8d2e8f5a6b7", APIVersion: 3, StemcellFormats: []string{"openstack-qcow2"},
		CloudProperties: map[string]any{"name": "bosh-openstack-kvm-ubuntu-jammy-go_agent", "version": "1.181", "infrastructure": "openstack", "disk": 5120},
	}
	tarball, err := tgz([]file{{Path: "./image", Data: bytes.Repeat([]byte{0}, 4096)}, {Path: "./stemcell.MF", Data: []byte(stemcellMF)}})
	if err != nil {
		t.Fatal(err)
	}
	for name, input := range map[string][]byte{"bare manifest": []byte(stemcellMF), "tarball": tarball} {
		got, err := ReadStemcell(context.Background(), bytes.NewReader(input))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	// Old stemcells write the version as a number; api_version defaults to 1.
	got, err := ParseStemcellManifest([]byte("name: s\noperating_system: ubuntu-xenial\nversion: 621.5\n"))
	if err != nil || got.Version != "621.5" || got.APIVersion != 1 {
		t.Errorf("numeric version: %+v, %v", got, err)
	}
}

func TestReadStemcellErrors(t *testing.T) {
	noMF, _ := tgz([]file{{Path: "image", Data: []byte("x")}})
	tests := map[string]struct {
		input []byte
		want  string
	}{
		"no os":                    {[]byte("name: s\nversion: '1'\n"), "stemcell.MF: operating_system is missing"},
		"not yaml map":             {[]byte("- a\n"), "stemcell.MF: line 1: want a map of keys, got a list"},
		"bad type":                 {[]byte("name: s\noperating_system: o\nversion: '1'\napi_version: many\n"), "stemcell.MF: line 4: cannot unmarshal"},
		"path in os":               {[]byte("name: s\noperating_system: ../o\nversion: '1'\n"), "must be plain names"},
		"tarball without manifest": {noMF, "no stemcell.MF in it"},
		"truncated tarball":        {noMF[:20], "read stemcell tarball"},
	}
	for name, tt := range tests {
		_, err := ReadStemcell(context.Background(), bytes.NewReader(tt.input))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want it to contain %q", name, err, tt.want)
		}
	}
}
