package alicloud

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/cpi/internal/wait"
)

// Config is the CPI's global configuration, with the keys of BOSH's Alibaba Cloud CPI
// (its cpi.json `alicloud:` block) plus Bosun's own tuning keys. AccessKeySecret and
// SecurityToken are secrets: String, GoString and LogValue replace them.
type Config struct {
	// Name is how errors and logs name this CPI (default "alicloud").
	Name string `json:"name,omitempty"`

	Region string `json:"region"`
	// AvailabilityZone is the zone VMs and disks go to when neither the AZ's nor the
	// vm_type's cloud_properties name one (and the VSwitch does not decide).
	AvailabilityZone string `json:"availability_zone,omitempty"`
	AccessKeyID      string `json:"access_key_id"`
	AccessKeySecret  string `json:"access_key_secret"`
	// SecurityToken is set with STS credentials.
	SecurityToken string `json:"security_token,omitempty"`

	// Encrypted and KMSKeyID are the defaults for every disk the CPI creates.
	Encrypted bool   `json:"encrypted,omitempty"`
	KMSKeyID  string `json:"kms_key_id,omitempty"`

	// ECSEndpoint, VPCEndpoint, SLBEndpoint and NLBEndpoint override the regional
	// endpoints: a host ("ecs.cn-beijing.aliyuncs.com", spoken over HTTPS) or a URL
	// ("http://127.0.0.1:8080" for a test cloud).
	ECSEndpoint string `json:"ecs_endpoint,omitempty"`
	VPCEndpoint string `json:"vpc_endpoint,omitempty"`
	SLBEndpoint string `json:"slb_endpoint,omitempty"`
	NLBEndpoint string `json:"nlb_endpoint,omitempty"`
	// OSSEndpoint is where a heavy stemcell's image is uploaded before ECS imports it
	// (default oss-<region>.aliyuncs.com over HTTPS), in the same forms. It must be
	// in the CPI's region: ECS imports only from buckets in its own.
	OSSEndpoint string `json:"oss_endpoint,omitempty"`

	// StateTimeout bounds each wait for a resource to reach a state, in seconds
	// (default 600: ECS imports and starts are slow).
	StateTimeout float64 `json:"state_timeout,omitempty"`
	// WaitResourcePollInterval is the pause between polls, in seconds (default 3).
	WaitResourcePollInterval float64 `json:"wait_resource_poll_interval,omitempty"`

	RetryConfig       RetryConfig       `json:"retry_config,omitzero"`
	ConnectionOptions ConnectionOptions `json:"connection_options,omitzero"`
}

// RetryConfig bounds retries of throttled and failed requests.
type RetryConfig struct {
	// MaxAttempts is how many retries one request gets (default 10).
	MaxAttempts int `json:"max_attempts,omitempty"`
	// SleepDuration is the first backoff in seconds, doubled per retry (default 1).
	SleepDuration float64 `json:"sleep_duration,omitempty"`
	// MaxSleep caps one backoff, in seconds (default 30).
	MaxSleep float64 `json:"max_sleep,omitempty"`
}

// ConnectionOptions tune the HTTP client.
type ConnectionOptions struct {
	// ReadTimeout bounds one request, in seconds (default 60).
	ReadTimeout float64 `json:"read_timeout,omitempty"`
	// ConnectTimeout bounds dialing, in seconds (default 10).
	ConnectTimeout float64 `json:"connect_timeout,omitempty"`
}

const redacted = "(redacted)"

// String is the config with its secrets replaced, safe to print.
func (c Config) String() string {
	if c.AccessKeySecret != "" {
		c.AccessKeySecret = redacted
	}
	if c.SecurityToken != "" {
		c.SecurityToken = redacted
	}
	b, _ := json.Marshal(configJSON(c))
	return string(b)
}

// GoString keeps %#v from printing the secrets.
func (c Config) GoString() string { return "alicloud.Config" + c.String() }

// LogValue keeps the credentials out of any log the config is handed to.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// configJSON marshals without Config's methods (String would recurse).
type configJSON Config

// ParseConfig decodes a JSON config strictly (an unknown key is an error naming it)
// and checks it. The error never holds a credential.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, configDecodeError(err)
	}
	if dec.More() {
		return Config{}, errors.New("alicloud config: trailing data after the object")
	}
	return c, c.check()
}

// configDecodeError names the key at fault without quoting any value.
func configDecodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("alicloud config: key %q must be %s, got %s", te.Field, te.Type, te.Value)
	}
	if key, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("alicloud config: unknown key %s", key)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("alicloud config: not valid JSON at byte %d", se.Offset)
	}
	return errors.New("alicloud config: not a JSON object of the CPI's keys")
}

var regionRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)+$`)

func (c *Config) check() error {
	switch {
	case c.Region == "":
		return errors.New("alicloud config: region is required (e.g. cn-beijing)")
	case !regionRE.MatchString(c.Region):
		return fmt.Errorf("alicloud config: region %q is not a region id (e.g. cn-beijing)", c.Region)
	case c.AccessKeyID == "" || c.AccessKeySecret == "":
		return errors.New("alicloud config: access_key_id and access_key_secret are required")
	}
	for k, v := range map[string]string{"ecs_endpoint": c.ECSEndpoint, "vpc_endpoint": c.VPCEndpoint, "slb_endpoint": c.SLBEndpoint, "nlb_endpoint": c.NLBEndpoint, "oss_endpoint": c.OSSEndpoint} {
		if _, _, err := parseEndpoint(v); err != nil {
			return fmt.Errorf("alicloud config: %s: %w", k, err)
		}
	}
	for k, v := range map[string]float64{"state_timeout": c.StateTimeout, "wait_resource_poll_interval": c.WaitResourcePollInterval,
		"retry_config.sleep_duration": c.RetryConfig.SleepDuration, "retry_config.max_sleep": c.RetryConfig.MaxSleep,
		"connection_options.read_timeout": c.ConnectionOptions.ReadTimeout, "connection_options.connect_timeout": c.ConnectionOptions.ConnectTimeout} {
		if v < 0 {
			return fmt.Errorf("alicloud config: %s must not be negative", k)
		}
	}
	if c.RetryConfig.MaxAttempts < 0 {
		return errors.New("alicloud config: retry_config.max_attempts must not be negative")
	}
	return nil
}

// parseEndpoint splits an endpoint setting into the SDK's scheme and host. A bare
// host is spoken to over HTTPS.
func parseEndpoint(s string) (scheme, host string, err error) {
	if s == "" {
		return "", "", nil
	}
	if !strings.Contains(s, "://") {
		if strings.ContainsAny(s, "/?#@ ") {
			return "", "", fmt.Errorf("%q is neither a host nor an http(s) URL", s)
		}
		return "HTTPS", s, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || strings.Trim(u.Path, "/") != "" {
		return "", "", errors.New("must be a host or an http(s) URL with no path or credentials")
	}
	return strings.ToUpper(u.Scheme), u.Host, nil
}

func (c *Config) stateTimeout() time.Duration { return wait.Seconds(c.StateTimeout, 600) }
func (c *Config) pollInterval() time.Duration { return wait.Seconds(c.WaitResourcePollInterval, 3) }
func (c *Config) maxAttempts() int {
	if c.RetryConfig.MaxAttempts > 0 {
		return c.RetryConfig.MaxAttempts
	}
	return 10
}

// mib is a size in MiB as BOSH's Alibaba CPI takes it: a number or a string of
// digits (underscores allowed, "51_200").
type mib int

func (m *mib) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		v, err := strconv.ParseFloat(string(n), 64)
		if err != nil || v < 0 || v > 1<<40 {
			return fmt.Errorf("size %s is not a size in MiB", n)
		}
		*m = mib(v)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("size must be a number of MiB")
	}
	v, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
	if err != nil || v < 0 {
		return fmt.Errorf("size %q is not a number of MiB", s)
	}
	*m = mib(v)
	return nil
}

// flexString is a string that may arrive as a number (stemcell.MF versions do).
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*f = flexString(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("must be a string or a number")
	}
	*f = flexString(s)
	return nil
}

// diskProps are a system_disk's or ephemeral_disk's cloud_properties, and a
// disk_type's.
type diskProps struct {
	Size               mib               `json:"size,omitempty"`
	Category           string            `json:"category,omitempty"`
	PerformanceLevel   string            `json:"performance_level,omitempty"`
	Encrypted          *bool             `json:"encrypted,omitempty"`
	KMSKeyID           string            `json:"kms_key_id,omitempty"`
	DeleteWithInstance *bool             `json:"delete_with_instance,omitempty"`
	Tags               map[string]string `json:"tags,omitempty"`
}

// vmProps are a vm_type's (and its AZ's) cloud_properties, with the names BOSH's
// Alibaba Cloud CPI gives them.
type vmProps struct {
	InstanceType     string            `json:"instance_type,omitempty"`
	AvailabilityZone string            `json:"availability_zone,omitempty"`
	InstanceName     string            `json:"instance_name,omitempty"`
	SecurityGroupIDs []string          `json:"security_group_ids,omitempty"`
	KeyPairName      string            `json:"key_pair_name,omitempty"`
	Password         string            `json:"password,omitempty"`
	ChargeType       string            `json:"charge_type,omitempty"` // PostPaid (default) or PrePaid
	ChargePeriod     int               `json:"charge_period,omitempty"`
	ChargePeriodUnit string            `json:"charge_period_unit,omitempty"`
	AutoRenew        string            `json:"auto_renew,omitempty"` // "True"/"False", as BOSH's
	AutoRenewPeriod  int               `json:"auto_renew_period,omitempty"`
	SpotStrategy     string            `json:"spot_strategy,omitempty"`
	SpotPriceLimit   float64           `json:"spot_price_limit,omitempty"`
	RAMRoleName      string            `json:"ram_role_name,omitempty"`
	SystemDisk       *diskProps        `json:"system_disk,omitempty"`
	EphemeralDisk    *diskProps        `json:"ephemeral_disk,omitempty"`
	Tags             map[string]string `json:"tags,omitempty"`

	// Load balancers the VM joins once it runs, with BOSH's keys: CLB (SLB)
	// instances' default server groups, CLB VServer groups, NLB server groups.
	SLBs                 []string `json:"slbs,omitempty"`
	SLBWeight            lbNumber `json:"slb_weight,omitempty"`
	SLBServerGroup       []string `json:"slb_server_group,omitempty"`
	SLBServerGroupPort   lbNumber `json:"slb_server_group_port,omitempty"`
	SLBServerGroupWeight lbNumber `json:"slb_server_group_weight,omitempty"`
	NLBServerGroupIDs    []string `json:"nlb_server_group_ids,omitempty"`
	NLBServerGroupPort   lbNumber `json:"nlb_server_group_port,omitempty"`
	NLBServerGroupWeight lbNumber `json:"nlb_server_group_weight,omitempty"`
}

// lbNumber is a port or weight as BOSH's CPI takes it (a json.Number there): a
// number or a string of digits. It is checked, with its key named, by checkLBs.
type lbNumber string

func (n *lbNumber) UnmarshalJSON(b []byte) error {
	var num json.Number
	if err := json.Unmarshal(b, &num); err == nil {
		*n = lbNumber(num)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		// An UnmarshalTypeError gets the key filled in by the decoder.
		return &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeFor[int]()}
	}
	*n = lbNumber(s)
	return nil
}

func jsonKind(b []byte) string {
	switch b = bytes.TrimSpace(b); {
	case len(b) == 0:
		return "nothing"
	case b[0] == '{':
		return "object"
	case b[0] == '[':
		return "array"
	case b[0] == 't' || b[0] == 'f':
		return "bool"
	}
	return "null"
}

// netProps are a network subnet's cloud_properties.
type netProps struct {
	VSwitchID          string   `json:"vswitch_id,omitempty"`
	SecurityGroupID    string   `json:"security_group_id,omitempty"`
	SecurityGroupIDs   []string `json:"security_group_ids,omitempty"`
	InternetChargeType string   `json:"internet_charge_type,omitempty"`
}

// stemcellProps are stemcell.MF's cloud_properties for Alibaba Cloud stemcells.
type stemcellProps struct {
	Name            string     `json:"name,omitempty"`
	Version         flexString `json:"version,omitempty"`
	Infrastructure  string     `json:"infrastructure,omitempty"`
	Hypervisor      string     `json:"hypervisor,omitempty"`
	Architecture    string     `json:"architecture,omitempty"`
	ContainerFormat string     `json:"container_format,omitempty"`
	OSType          string     `json:"os_type,omitempty"`
	OSDistro        string     `json:"os_distro,omitempty"`
	Disk            mib        `json:"disk,omitempty"`
	DiskFormat      string     `json:"disk_format,omitempty"`
	RootDeviceName  string     `json:"root_device_name,omitempty"`
	SourceURL       string     `json:"source_url,omitempty"`
	Description     string     `json:"description,omitempty"`
	// OSSBucket and OSSObject name the image to import.
	OSSBucket string `json:"oss_bucket,omitempty"`
	OSSObject string `json:"oss_object,omitempty"`
	// ImageID makes a light stemcell: region → id of an image that already exists.
	ImageID map[string]string `json:"image_id,omitempty"`
}
