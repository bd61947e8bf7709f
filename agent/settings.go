// Package agent owns the VM agent: it answers the director over NATS with BOSH's agent
// protocol, installs jobs and packages under BOSH's /var/vcap layout beneath its root
// directory, supervises job processes, compiles packages, and publishes heartbeats and
// alerts. Many agents can share one machine because nothing is written outside the root.
package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/bosun-gitops/bosun/blobstore/signed"
)

// Settings is BOSH's settings.json (bosh-spec §8.8), the part this agent uses.
type Settings struct {
	AgentID   string             `json:"agent_id"`
	Mbus      string             `json:"mbus"`
	Blobstore BlobstoreSettings  `json:"blobstore"`
	Networks  map[string]Network `json:"networks"`
	Disks     Disks              `json:"disks"`
	Env       Env                `json:"env"`
	VM        struct {
		Name string `json:"name"`
	} `json:"vm"`
}

// BlobstoreSettings names the agent's own blobstore. Provider "local" reads
// options.blobstore_path (BOSH's local provider). Provider "dav" is the director's
// blobstore, as BOSH's director hands it to agents: options.endpoint is its URL and
// options.tls.cert.ca the PEM CA its certificate chains to; this agent holds no
// credentials for it and reaches it only through the signed URLs the director sends.
// Without a provider, blobs come only through signed URLs, too.
type BlobstoreSettings struct {
	Provider string         `json:"provider"`
	Options  map[string]any `json:"options"`
}

// CA is options.tls.cert.ca (BOSH's dav blobstore option): the PEM certificates signed
// blob URLs are verified against, in place of the system roots. Empty when not given.
func (b BlobstoreSettings) CA() string {
	t, _ := b.Options["tls"].(map[string]any)
	c, _ := t["cert"].(map[string]any)
	ca, _ := c["ca"].(string)
	return ca
}

// check validates a blobstore section; errors name it by key ("blobstore", or
// "blobstores[0]" in update_settings).
func (b BlobstoreSettings) check(key string) error {
	switch b.Provider {
	case "", "local", "dav":
	default:
		return fmt.Errorf("%s.provider %q is not supported: use \"local\", or \"dav\" or none for signed URLs", key, b.Provider)
	}
	if t, ok := b.Options["tls"]; ok {
		tm, _ := t.(map[string]any)
		c, _ := tm["cert"].(map[string]any)
		if _, ok := c["ca"].(string); !ok {
			return fmt.Errorf("%s.options.tls: want {\"cert\": {\"ca\": \"<PEM>\"}}", key)
		}
	}
	if ca := b.CA(); ca != "" {
		if _, err := signed.CertPool([]byte(ca)); err != nil {
			return fmt.Errorf("%s.options.tls.cert.ca: %w", key, err)
		}
	}
	if b.Provider == "local" {
		if p, _ := b.Options["blobstore_path"].(string); p == "" {
			return fmt.Errorf("%s.options.blobstore_path is missing for provider local", key)
		}
	}
	return nil
}

// Network is one entry of settings' networks.
type Network struct {
	Type    string   `json:"type"`
	IP      string   `json:"ip"`
	Netmask string   `json:"netmask"`
	Gateway string   `json:"gateway"`
	Default []string `json:"default"`
	DNS     []string `json:"dns"`
}

// Disks lists the VM's disks; persistent maps disk CID to the CPI's hint, a string path
// or an object with "path".
type Disks struct {
	Persistent map[string]json.RawMessage `json:"persistent"`
}

// Env is the VM's env (bosh-spec §1.7); bosun holds this agent's own knobs.
type Env struct {
	Bosh  json.RawMessage `json:"bosh,omitempty"`
	Bosun BosunEnv        `json:"bosun"`
}

// BosunEnv tunes the agent; zero values take defaults.
type BosunEnv struct {
	// HeartbeatInterval, e.g. "30s".
	HeartbeatInterval Duration `json:"heartbeat_interval"`
	// StableAfter is how long a process must stay up to count as running again.
	StableAfter Duration `json:"stable_after"`
	// LogMaxBytes rotates a process log when it grows past this (default 10 MiB).
	LogMaxBytes int64 `json:"log_max_bytes"`
}

// Duration decodes "30s" or a number of seconds.
type Duration time.Duration

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n float64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want \"30s\" or seconds, got %s", b)
	}
	*d = Duration(n * float64(time.Second))
	return nil
}

// ParseSettings decodes and checks settings; errors name the offending key.
func ParseSettings(b []byte) (Settings, error) {
	var s Settings
	if err := json.Unmarshal(b, &s); err != nil {
		if se, ok := err.(*json.SyntaxError); ok {
			line := 1
			for _, c := range b[:min(int(se.Offset), len(b))] {
				if c == '\n' {
					line++
				}
			}
			return s, fmt.Errorf("line %d: %w", line, err)
		}
		return s, err
	}
	if s.AgentID == "" {
		return s, fmt.Errorf("agent_id is missing")
	}
	if s.Mbus == "" {
		return s, fmt.Errorf("mbus is missing")
	}
	if err := s.Blobstore.check("blobstore"); err != nil {
		return s, err
	}
	return s, nil
}

// LoadSettings reads a settings file.
func LoadSettings(path string) (Settings, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Settings{}, fmt.Errorf("read settings: %w", err)
	}
	s, err := ParseSettings(b)
	if err != nil {
		return s, fmt.Errorf("settings %s: %w", path, err)
	}
	return s, nil
}

// IP is the instance's address: the default network's, else any.
func (s Settings) IP() string {
	ip := ""
	for _, n := range s.Networks {
		for _, d := range n.Default {
			if d == "gateway" && n.IP != "" {
				return n.IP
			}
		}
		if ip == "" {
			ip = n.IP
		}
	}
	return ip
}
