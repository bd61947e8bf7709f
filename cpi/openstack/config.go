package openstack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/cpi/internal/wait"
)

// Config is the CPI's global configuration, with the keys of BOSH's OpenStack CPI
// (`openstack:` in its cpi.json). APIKey and ApplicationCredentialSecret are secrets.
type Config struct {
	// Name is how errors and logs name this CPI (default "openstack").
	Name string `json:"name,omitempty"`

	AuthURL  string `json:"auth_url"`
	Username string `json:"username,omitempty"`
	APIKey   string `json:"api_key,omitempty"`
	// Domain is the user's and the project's domain (BOSH has one key for both).
	Domain  string `json:"domain,omitempty"`
	Project string `json:"project,omitempty"`
	// Tenant is Project's older name.
	Tenant                      string `json:"tenant,omitempty"`
	ApplicationCredentialID     string `json:"application_credential_id,omitempty"`
	ApplicationCredentialSecret string `json:"application_credential_secret,omitempty"`
	Region                      string `json:"region,omitempty"`
	// EndpointType is the catalog interface: public (default), internal or admin.
	EndpointType string `json:"endpoint_type,omitempty"`

	DefaultKeyName        string   `json:"default_key_name,omitempty"`
	DefaultSecurityGroups []string `json:"default_security_groups,omitempty"`
	DefaultVolumeType     string   `json:"default_volume_type,omitempty"`

	BootFromVolume bool `json:"boot_from_volume,omitempty"`
	// ConfigDrive is "cdrom" or "disk" to ask Nova for a config drive, "" for none.
	ConfigDrive string `json:"config_drive,omitempty"`
	// UseDHCP (default true) lets the agent configure networks by DHCP; a VM with
	// more than one manual network always gets static settings.
	UseDHCP                      *bool `json:"use_dhcp,omitempty"`
	IgnoreServerAvailabilityZone bool  `json:"ignore_server_availability_zone,omitempty"`
	HumanReadableVMNames         bool  `json:"human_readable_vm_names,omitempty"`
	StemcellPublicVisibility     bool  `json:"stemcell_public_visibility,omitempty"`
	// StateTimeout bounds each wait for a resource to reach a state, in seconds
	// (default 300).
	StateTimeout float64 `json:"state_timeout,omitempty"`
	// WaitResourcePollInterval is the pause between polls, in seconds (default 5).
	WaitResourcePollInterval float64 `json:"wait_resource_poll_interval,omitempty"`

	RetryConfig       RetryConfig       `json:"retry_config,omitzero"`
	ConnectionOptions ConnectionOptions `json:"connection_options,omitzero"`
}

// RetryConfig bounds retries of rate-limited and failed idempotent requests.
type RetryConfig struct {
	// MaxAttempts is how many retries one request gets (default 10).
	MaxAttempts int `json:"max_attempts,omitempty"`
	// SleepDuration is the first backoff in seconds, doubled per retry up to 30
	// times it, when the cloud gives no Retry-After (default 1).
	SleepDuration float64 `json:"sleep_duration,omitempty"`
	// MaxRetryAfter caps a Retry-After the cloud asks for, in seconds (default 60).
	MaxRetryAfter float64 `json:"max_retry_after,omitempty"`
}

// ConnectionOptions tune the HTTP client.
type ConnectionOptions struct {
	// ReadTimeout is how long to wait for a response's headers, in seconds
	// (default 120); it never cuts off a streaming upload.
	ReadTimeout float64 `json:"read_timeout,omitempty"`
	// ConnectTimeout bounds dialing, in seconds (default 30).
	ConnectTimeout float64 `json:"connect_timeout,omitempty"`
	SSLVerifyPeer  *bool   `json:"ssl_verify_peer,omitempty"`
	// CACert is PEM text of extra CAs to trust.
	CACert string `json:"ca_cert,omitempty"`
}

// LogValue keeps the credentials out of any log the config is handed to.
func (c Config) LogValue() slog.Value {
	return slog.StringValue(c.String())
}

// String is the config with its secrets replaced, safe to print.
func (c Config) String() string {
	if c.APIKey != "" {
		c.APIKey = "(redacted)"
	}
	if c.ApplicationCredentialSecret != "" {
		c.ApplicationCredentialSecret = "(redacted)"
	}
	b, _ := json.Marshal(configJSON(c))
	return string(b)
}

// configJSON marshals without Config's methods (String would recurse).
type configJSON Config

// ParseConfig decodes a JSON config strictly (an unknown key is an error naming it)
// and checks it. The error never holds a credential.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Config{}, fmt.Errorf("config key %q must be %s, got %s", te.Field, te.Type, te.Value)
		}
		if key, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return Config{}, fmt.Errorf("unknown config key %s", key)
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return Config{}, fmt.Errorf("config is not valid JSON at byte %d", se.Offset)
		}
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if dec.More() {
		return Config{}, errors.New("config: trailing data after the object")
	}
	return c, c.check()
}

func (c *Config) check() error {
	u, err := url.Parse(c.AuthURL)
	if c.AuthURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("openstack config: auth_url must be an http(s) URL of Keystone")
	}
	if u.User != nil {
		return errors.New("openstack config: auth_url must not carry credentials; use username/api_key")
	}
	appCred := c.ApplicationCredentialID != "" || c.ApplicationCredentialSecret != ""
	password := c.Username != "" || c.APIKey != ""
	switch {
	case appCred && password:
		return errors.New("openstack config: give either username/api_key or application_credential_id/_secret, not both")
	case appCred && (c.ApplicationCredentialID == "" || c.ApplicationCredentialSecret == ""):
		return errors.New("openstack config: application_credential_id and application_credential_secret go together")
	case password && (c.Username == "" || c.APIKey == ""):
		return errors.New("openstack config: username and api_key go together")
	case !appCred && !password:
		return errors.New("openstack config: no credentials: set username/api_key or application_credential_id/_secret")
	case password && c.project() == "":
		return errors.New("openstack config: project (or tenant) is required with username/api_key")
	case c.Project != "" && c.Tenant != "" && c.Project != c.Tenant:
		return errors.New("openstack config: project and tenant differ; set one")
	}
	switch c.EndpointType {
	case "", "public", "publicURL", "internal", "internalURL", "admin", "adminURL":
	default:
		return fmt.Errorf("openstack config: endpoint_type %q must be public, internal or admin", c.EndpointType)
	}
	switch c.ConfigDrive {
	case "", "cdrom", "disk":
	default:
		return fmt.Errorf("openstack config: config_drive %q must be cdrom or disk", c.ConfigDrive)
	}
	for k, v := range map[string]float64{"state_timeout": c.StateTimeout, "wait_resource_poll_interval": c.WaitResourcePollInterval,
		"retry_config.sleep_duration": c.RetryConfig.SleepDuration, "retry_config.max_retry_after": c.RetryConfig.MaxRetryAfter,
		"connection_options.read_timeout": c.ConnectionOptions.ReadTimeout, "connection_options.connect_timeout": c.ConnectionOptions.ConnectTimeout} {
		if v < 0 {
			return fmt.Errorf("openstack config: %s must not be negative", k)
		}
	}
	if c.RetryConfig.MaxAttempts < 0 {
		return errors.New("openstack config: retry_config.max_attempts must not be negative")
	}
	return nil
}

func (c *Config) project() string {
	if c.Project != "" {
		return c.Project
	}
	return c.Tenant
}

func (c *Config) useDHCP() bool { return c.UseDHCP == nil || *c.UseDHCP }

func (c *Config) stateTimeout() time.Duration { return wait.Seconds(c.StateTimeout, 300) }
func (c *Config) pollInterval() time.Duration { return wait.Seconds(c.WaitResourcePollInterval, 5) }

// vmProps are a vm_type's (and its AZ's) cloud_properties.
type vmProps struct {
	InstanceType      string   `json:"instance_type,omitempty"`
	AvailabilityZone  string   `json:"availability_zone,omitempty"`
	AvailabilityZones []string `json:"availability_zones,omitempty"`
	BootFromVolume    *bool    `json:"boot_from_volume,omitempty"`
	RootDisk          *struct {
		Size int `json:"size"` // GiB
	} `json:"root_disk,omitempty"`
	EphemeralDisk       *ephemeralDisk `json:"ephemeral_disk,omitempty"`
	KeyName             string         `json:"key_name,omitempty"`
	SecurityGroups      []string       `json:"security_groups,omitempty"`
	SchedulerHints      *hints         `json:"scheduler_hints,omitempty"`
	AllowedAddressPairs string         `json:"allowed_address_pairs,omitempty"`
}

// ephemeralDisk is a blank local disk Nova adds for the agent's ephemeral data.
type ephemeralDisk struct {
	Size int    `json:"size"` // GiB
	Type string `json:"type,omitempty"`
}

// hints are Nova scheduler hints; group places the VM in a server group.
type hints struct {
	Group string `json:"group"`
}

// diskProps are a disk_type's cloud_properties.
type diskProps struct {
	Type string `json:"type"`
}

// netProps are a network subnet's cloud_properties.
type netProps struct {
	NetID          string   `json:"net_id"`
	SecurityGroups []string `json:"security_groups,omitempty"`
}

// stemcellProps are stemcell.MF's cloud_properties for OpenStack stemcells.
type stemcellProps struct {
	Name            string `json:"name"`
	Version         string `json:"version"`
	Infrastructure  string `json:"infrastructure"`
	Hypervisor      string `json:"hypervisor"`
	Architecture    string `json:"architecture"`
	OSType          string `json:"os_type"`
	OSDistro        string `json:"os_distro"`
	Disk            int    `json:"disk"`
	DiskFormat      string `json:"disk_format"`
	ContainerFormat string `json:"container_format"`
	AutoDiskConfig  bool   `json:"auto_disk_config"`
	RootDeviceName  string `json:"root_device_name"`
	// ImageID makes a light stemcell: an image already in Glance.
	ImageID string `json:"image_id"`
}
