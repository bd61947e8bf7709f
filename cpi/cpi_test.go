package cpi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/google/go-cmp/cmp"
)

type vmProps struct {
	InstanceType string `json:"instance_type"`
	RootDisk     struct {
		Size int `json:"size"`
	} `json:"root_disk"`
}

func TestDecodeCloudProperties(t *testing.T) {
	tests := []struct {
		raw     string
		want    vmProps
		wantErr string
	}{
		{raw: ``, want: vmProps{}},
		{raw: `null`, want: vmProps{}},
		{raw: `{"instance_type":"m1.small","root_disk":{"size":10}}`, want: vmProps{InstanceType: "m1.small", RootDisk: struct {
			Size int `json:"size"`
		}{10}}},
		{raw: `{"instance_typo":"m1"}`, wantErr: `unknown cloud property "instance_typo"`},
		{raw: `{"root_disk":{"sise":1}}`, wantErr: `unknown cloud property "sise"`},
		{raw: `{"instance_type":3}`, wantErr: `cloud property "instance_type" must be string, got number`},
		{raw: `[1]`, wantErr: `must be an object, got an array`},
		{raw: `{"instance_type":"a"} {}`, wantErr: `trailing data`},
		{raw: `{"instance_type":`, wantErr: `cloud_properties`},
	}
	for _, tt := range tests {
		var got vmProps
		err := cpi.DecodeCloudProperties(json.RawMessage(tt.raw), &got)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want it to contain %q", tt.raw, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.raw, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: (-want +got)\n%s", tt.raw, diff)
		}
	}
}

func FuzzDecodeCloudProperties(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"instance_type":"x"}`, `{"a":1}`, `[`, `"s"`, `{"root_disk":{"size":"1"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v vmProps
		_ = cpi.DecodeCloudProperties(b, &v)
	})
}

func TestDiskHintJSON(t *testing.T) {
	tests := []struct {
		in   string
		want cpi.DiskHint
		err  bool
	}{
		{in: `"/dev/sdf"`, want: cpi.DiskHint{Path: "/dev/sdf"}},
		{in: `{"path":"/var/vcap/store","volume_id":"v1"}`, want: cpi.DiskHint{Path: "/var/vcap/store", VolumeID: "v1"}},
		{in: `{"lun":"0","host_device_id":"abc"}`, want: cpi.DiskHint{LUN: "0", HostDeviceID: "abc"}},
		{in: `7`, err: true},
	}
	for _, tt := range tests {
		var got cpi.DiskHint
		err := json.Unmarshal([]byte(tt.in), &got)
		if (err != nil) != tt.err {
			t.Errorf("%s: err %v, want error %v", tt.in, err, tt.err)
		}
		if diff := cmp.Diff(tt.want, got); !tt.err && diff != "" {
			t.Errorf("%s: (-want +got)\n%s", tt.in, diff)
		}
	}
}

func FuzzDiskHint(f *testing.F) {
	for _, s := range []string{`"/dev/sdb"`, `{"path":"x"}`, `null`, `[]`, `{"lun":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h cpi.DiskHint
		_ = json.Unmarshal(b, &h)
	})
}

func TestErrorKinds(t *testing.T) {
	base := &cpi.Error{CPI: "local", Method: "delete_vm", Instance: "web/0", Subject: "vm-1", Kind: cpi.VMNotFound, Msg: "no such VM"}
	wrapped := fmt.Errorf("delete web/0: %w", base)
	if !errors.Is(wrapped, cpi.ErrVMNotFound) {
		t.Error("errors.Is(VMNotFound) = false")
	}
	if errors.Is(wrapped, cpi.ErrDiskNotFound) {
		t.Error("errors.Is(DiskNotFound) = true for a VMNotFound")
	}
	if got := cpi.KindOf(wrapped); got != cpi.VMNotFound {
		t.Errorf("KindOf = %s", got)
	}
	if got := cpi.KindOf(errors.New("x")); got != cpi.CloudError {
		t.Errorf("KindOf(plain) = %s", got)
	}
	if cpi.OkToRetry(errors.New("x")) || cpi.OkToRetry(base) {
		t.Error("OkToRetry true for an error nobody vouched for")
	}
	if !cpi.OkToRetry(fmt.Errorf("w: %w", &cpi.Error{Kind: cpi.VMCreationFailed, OkToRetry: true})) {
		t.Error("OkToRetry false for a retriable create")
	}
	want := "cpi local delete_vm for web/0 (vm-1): no such VM [VMNotFound, not safe to retry]"
	if base.Error() != want {
		t.Errorf("Error() = %q, want %q", base.Error(), want)
	}
	for _, tt := range []struct {
		wire string
		kind cpi.Kind
		ok   bool
	}{
		{"Bosh::Clouds::DiskNotFound", cpi.DiskNotFound, true},
		{"Bosh::Clouds::Banana", cpi.CloudError, false},
		{"InvalidCall", cpi.CloudError, false},
	} {
		k, ok := cpi.ParseKind(tt.wire)
		if k != tt.kind || ok != tt.ok {
			t.Errorf("ParseKind(%q) = %s, %v", tt.wire, k, ok)
		}
	}
}

type bare struct{ cpi.CPI }

func TestOptionalCapabilities(t *testing.T) {
	ctx := cpi.WithInstance(context.Background(), "web/1")
	err := cpi.RebootVM(ctx, bare{}, "vm-9")
	var e *cpi.Error
	if !errors.As(err, &e) || e.Kind != cpi.NotImplemented || e.Method != "reboot_vm" || e.Instance != "web/1" || e.Subject != "vm-9" {
		t.Errorf("RebootVM on a CPI without it = %#v", err)
	}
	if err := cpi.ResizeDisk(ctx, bare{}, "d", 10); !errors.Is(err, cpi.ErrNotSupported) {
		t.Errorf("ResizeDisk without it = %v, want NotSupported", err)
	}
}

func TestBootstrapSettingsJSON(t *testing.T) {
	spec := cpi.VMSpec{AgentID: "a1", Networks: cpi.Networks{"default": {Type: "manual", IP: "127.0.0.5", Default: []string{"dns", "gateway"}}},
		Env: json.RawMessage(`{"bosh":{}}`), Settings: cpi.AgentSettings{Mbus: "nats://a1:p@127.0.0.1:4222", Blobstore: cpi.Blobstore{Provider: "local"}}}
	b, err := json.Marshal(spec.BootstrapSettings())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"agent_id":"a1","blobstore":{"provider":"local"},"disks":{"persistent":{}},"env":{"bosh":{}},"networks":{"default":{"type":"manual","ip":"127.0.0.5","default":["dns","gateway"]}},"ntp":[],"mbus":"nats://a1:p@127.0.0.1:4222","vm":{"name":""}}`
	if string(b) != want {
		t.Errorf("settings JSON\n got %s\nwant %s", b, want)
	}
}
