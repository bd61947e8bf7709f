// Package local is the CPI whose VMs are bosun-agent processes on this machine, each
// with its own root directory and loopback address.
//
// Layout under the data dir, every file written to a temp name and renamed:
//
//	stemcells/<cid>/stemcell.MF (and image, if the stemcell had one)
//	vms/<cid>/agent.pid, metadata.json, var/vcap/bosh/settings.json, var/vcap/store
//	disks/<cid>/       a detached persistent disk's contents
//	disks/<cid>.json   the disk's record: size, metadata, which VM holds it
//	ips/<ip>           the VM holding a loopback address
//
// A VM's agent runs as `<agent> --settings <vm>/var/vcap/bosh/settings.json --root <vm>`
// in its own session, so it survives the director; the agent keeps its jobs in that
// session, and deleting the VM ends every process of it.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bosun-gitops/bosun/cpi"
)

// Config configures the local CPI.
type Config struct {
	// Name is how errors and logs name this CPI (default "local").
	Name string `json:"name,omitempty"`
	// Dir holds stemcells, VMs, disks and address leases.
	Dir string `json:"data_dir"`
	// AgentPath is the bosun-agent executable each VM runs.
	AgentPath string `json:"agent_path"`
	// DynamicRange is the 127.0.0.0/8 prefix dynamic networks draw addresses from
	// (default 127.111.0.0/16).
	DynamicRange string `json:"dynamic_range,omitempty"`
	// StopGrace is how long a VM's processes get after SIGTERM before SIGKILL
	// (default 10s).
	StopGrace time.Duration `json:"-"`
}

// DefaultDynamicRange is where dynamic networks' addresses come from by default.
const DefaultDynamicRange = "127.111.0.0/16"

var loopback = netip.MustParsePrefix("127.0.0.0/8")

// CPI is the local CPI. It is safe for concurrent use, also by several processes
// sharing one data dir (`bosun cpi serve local` runs one process per call).
type CPI struct {
	cfg     Config
	dynamic netip.Prefix
	log     *slog.Logger
}

var (
	_ cpi.CPI                    = (*CPI)(nil)
	_ cpi.Rebooter               = (*CPI)(nil)
	_ cpi.VMMetadataSetter       = (*CPI)(nil)
	_ cpi.DiskMetadataSetter     = (*CPI)(nil)
	_ cpi.DiskLister             = (*CPI)(nil)
	_ cpi.DiskResizer            = (*CPI)(nil)
	_ cpi.VMLister               = (*CPI)(nil)
	_ cpi.VMPropertiesCalculator = (*CPI)(nil)
)

// New checks cfg and returns the CPI. It touches nothing on disk, so `info` is free.
func New(cfg Config, log *slog.Logger) (*CPI, error) {
	if cfg.Name == "" {
		cfg.Name = "local"
	}
	if cfg.Dir == "" {
		return nil, errors.New("local cpi: data_dir is required")
	}
	if cfg.AgentPath == "" {
		return nil, errors.New("local cpi: agent_path is required")
	}
	if cfg.DynamicRange == "" {
		cfg.DynamicRange = DefaultDynamicRange
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 10 * time.Second
	}
	p, err := netip.ParsePrefix(cfg.DynamicRange)
	if err != nil {
		return nil, fmt.Errorf("local cpi: dynamic_range: %w", err)
	}
	if !p.Addr().Is4() || !loopback.Contains(p.Addr()) || p.Bits() < 8 || p.Bits() > 30 {
		return nil, fmt.Errorf("local cpi: dynamic_range %s must be a prefix of 127.0.0.0/8 between /8 and /30", p)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CPI{cfg: cfg, dynamic: p.Masked(), log: log.With("cpi", cfg.Name)}, nil
}

// Name implements cpi.Namer.
func (c *CPI) Name() string { return c.cfg.Name }

// Info implements cpi.CPI.
func (c *CPI) Info(ctx context.Context) (cpi.Info, error) {
	return cpi.Info{APIVersion: cpi.APIVersion, StemcellFormats: []string{"bosun-local", "general-tar"}}, nil
}

// CalculateVMCloudProperties implements cpi.VMPropertiesCalculator: a local VM has no
// size, so the answer is always empty.
func (c *CPI) CalculateVMCloudProperties(ctx context.Context, r cpi.VMResources) (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}

func (c *CPI) errf(ctx context.Context, method, subject string, kind cpi.Kind, retry bool, cause error, format string, a ...any) error {
	return &cpi.Error{CPI: c.cfg.Name, Method: method, Instance: cpi.InstanceFrom(ctx), Subject: subject,
		Kind: kind, OkToRetry: retry, Msg: fmt.Sprintf(format, a...), Err: cause}
}

func (c *CPI) path(elem ...string) string {
	return filepath.Join(append([]string{c.cfg.Dir}, elem...)...)
}

func newCID(prefix string) string {
	b := make([]byte, 10)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// validCID reports whether s can name something of ours: cids arrive from outside
// (the CPI protocol) and become path elements.
func validCID(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// writeFileAtomic writes data to path so that readers see the old or the new
// content, never a part, even across a crash.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func writeJSONAtomic(path string, v any, perm os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), perm)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// removeAllAtomic renames path aside before removing it, so that a crash part-way
// never leaves something that looks whole. A missing path is not an error.
func removeAllAtomic(path string) error {
	aside := filepath.Join(filepath.Dir(path), ".deleted-"+filepath.Base(path)+"-"+newCID(""))
	if err := os.Rename(path, aside); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(aside)
}

// lock takes the data dir's exclusive lock, held across processes, for the short
// read-modify-write sections (address leases, disk moves, settings updates).
func (c *CPI) lock() (unlock func(), err error) {
	if err := os.MkdirAll(c.cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(c.path(".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func isHidden(name string) bool { return strings.HasPrefix(name, ".") }
