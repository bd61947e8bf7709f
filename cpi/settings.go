package cpi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Networks maps a network name to its settings, as create_vm takes them and as the
// agent's settings.json holds them.
type Networks map[string]Network

// Network is one network of a VM (bosh-spec §7.3, §8.8). create_vm fills Type, IP
// (manual only), Netmask, Gateway, DNS, Default and CloudProperties; the rest are
// settings-only keys a CPI may add.
type Network struct {
	Type            string          `json:"type,omitempty"` // manual, dynamic or vip
	IP              string          `json:"ip,omitempty"`
	Netmask         string          `json:"netmask,omitempty"`
	Gateway         string          `json:"gateway,omitempty"`
	Prefix          string          `json:"prefix,omitempty"`
	DNS             []string        `json:"dns,omitempty"`
	Default         []string        `json:"default,omitempty"` // "dns", "gateway"
	CloudProperties json.RawMessage `json:"cloud_properties,omitempty"`
	MAC             string          `json:"mac,omitempty"`
	Preconfigured   bool            `json:"preconfigured,omitempty"`
	UseDHCP         bool            `json:"use_dhcp,omitempty"`
	Resolved        bool            `json:"resolved,omitempty"`
	Alias           string          `json:"alias,omitempty"`
	Routes          json.RawMessage `json:"routes,omitempty"`
}

// AgentSettings is BOSH's settings.json (bosh-spec §8.8), what a v2 CPI hands the
// agent through the IaaS metadata. Mbus carries the agent's own NATS credentials, so
// an AgentSettings value is a secret: never log it.
type AgentSettings struct {
	AgentID   string          `json:"agent_id"`
	Blobstore Blobstore       `json:"blobstore"`
	Disks     Disks           `json:"disks"`
	Env       json.RawMessage `json:"env,omitempty"`
	Networks  Networks        `json:"networks"`
	NTP       []string        `json:"ntp"`
	Mbus      string          `json:"mbus"`
	VM        SettingsVM      `json:"vm"`
}

// Blobstore says where the agent fetches and puts blobs.
type Blobstore struct {
	Provider string         `json:"provider"`
	Options  map[string]any `json:"options,omitempty"`
}

// Disks says where the agent finds its disks.
type Disks struct {
	System string `json:"system,omitempty"`
	// Ephemeral is a device path string or a hint object, as in BOSH.
	Ephemeral    json.RawMessage      `json:"ephemeral,omitempty"`
	RawEphemeral json.RawMessage      `json:"raw_ephemeral,omitempty"`
	Persistent   map[DiskCID]DiskHint `json:"persistent"`
}

// SettingsVM names the VM in the IaaS.
type SettingsVM struct {
	Name string `json:"name"`
}

// BootstrapSettings returns spec.Settings completed from the spec: agent id, networks
// and env where the director left them empty, and an empty persistent-disk map.
func (spec VMSpec) BootstrapSettings() AgentSettings {
	s := spec.Settings
	if s.AgentID == "" {
		s.AgentID = spec.AgentID
	}
	if s.Networks == nil {
		s.Networks = spec.Networks
	}
	if len(s.Env) == 0 {
		s.Env = spec.Env
	}
	if s.Disks.Persistent == nil {
		s.Disks.Persistent = map[DiskCID]DiskHint{}
	}
	if s.NTP == nil {
		s.NTP = []string{}
	}
	return s
}

// DiskHint tells the agent how to find an attached disk. On the wire it is a device
// path string or an object ({path}, {volume_id}, {lun, host_device_id}, …).
type DiskHint struct {
	Path         string `json:"path,omitempty"`
	VolumeID     string `json:"volume_id,omitempty"`
	ID           string `json:"id,omitempty"`
	LUN          string `json:"lun,omitempty"`
	HostDeviceID string `json:"host_device_id,omitempty"`
}

// IsZero reports whether the hint says nothing (BOSH treats that as an error).
func (h DiskHint) IsZero() bool { return h == DiskHint{} }

type diskHintObject DiskHint

// UnmarshalJSON accepts a device path string or an object.
func (h *DiskHint) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*h = DiskHint{}
		return json.Unmarshal(b, &h.Path)
	}
	var o diskHintObject
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("disk hint must be a device path or an object: %w", err)
	}
	*h = DiskHint(o)
	return nil
}

// DecodeCloudProperties decodes a cloud_properties object strictly into v, a pointer to
// the CPI's own struct. Empty or null decodes to the zero value; an unknown key, a
// value of the wrong type or anything but an object is an error naming the key.
func DecodeCloudProperties(raw json.RawMessage, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if raw[0] != '{' {
		return fmt.Errorf("cloud_properties must be an object, got %s", describeJSON(raw))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("cloud property %q must be %s, got %s", te.Field, te.Type, te.Value)
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("cloud_properties are not valid JSON at byte %d: %w", se.Offset, err)
		}
		if key, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return fmt.Errorf("unknown cloud property %s", key)
		}
		return fmt.Errorf("cloud_properties: %w", err)
	}
	if dec.More() {
		return errors.New("cloud_properties: trailing data after the object")
	}
	return nil
}

func describeJSON(raw []byte) string {
	switch raw[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	}
	return "a number or invalid JSON"
}
