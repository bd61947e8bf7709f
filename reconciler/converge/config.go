package converge

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/state"
)

// Store is the part of the director's state converge reads and writes. *postgres.Store
// implements it.
type Store interface {
	EnsureDeployment(ctx context.Context, name string) error
	Instances(ctx context.Context, deployment string) ([]state.Instance, error)
	PutInstance(ctx context.Context, i state.Instance) (state.Instance, error)
	DeleteInstance(ctx context.Context, id string) error
	SetApplied(ctx context.Context, a state.Applied) error
	AppliedByInstance(ctx context.Context, deployment string) (map[string]state.Applied, error)

	VMs(ctx context.Context, deployment string) ([]state.VM, error)
	PutVM(ctx context.Context, vm state.VM) error
	DeleteVM(ctx context.Context, cid string) error
	Disks(ctx context.Context, deployment string) ([]state.Disk, error)
	PutDisk(ctx context.Context, d state.Disk) error
	DeleteDisk(ctx context.Context, cid string) error

	RecordIntent(ctx context.Context, i state.Intent) (state.Intent, error)
	CompleteIntent(ctx context.Context, id int64, cloudCID string, callErr error) error
	UnfinishedIntents(ctx context.Context) ([]state.Intent, error)
	// Task tells whether the task that recorded an intent has ended.
	Task(ctx context.Context, id int64) (state.Task, error)

	StemcellCID(ctx context.Context, cpiName, name, version string) (string, error)
	PutStemcell(ctx context.Context, cpiName, name, version, cid string) (string, error)
	CompiledPackage(ctx context.Context, key string) (state.CompiledPackage, error)
	PutCompiledPackage(ctx context.Context, p state.CompiledPackage) error
}

// Agents reaches agents by id over the bus. *protocol.Client implements it.
type Agents interface {
	Ping(ctx context.Context, agentID string) error
	GetState(ctx context.Context, agentID string, full bool) (protocol.State, error)
	Apply(ctx context.Context, agentID string, spec protocol.ApplySpec) error
	Start(ctx context.Context, agentID string) error
	Stop(ctx context.Context, agentID string) error
	Drain(ctx context.Context, agentID, kind string, next *protocol.ApplySpec) (int, error)
	RunScript(ctx context.Context, agentID, name string, env map[string]string) error
	CompilePackage(ctx context.Context, agentID string, pkg protocol.BlobRef, name, version string, deps map[string]protocol.CompileDependency) (protocol.BlobResult, error)
	CompilePackageWithSignedURL(ctx context.Context, agentID string, req protocol.CompileWithSignedURL) (protocol.BlobResult, error)
	MountDisk(ctx context.Context, agentID, diskCID string) error
	UnmountDisk(ctx context.Context, agentID, diskCID string) error
	// Run calls any method and waits for its task (add_persistent_disk, …).
	Run(ctx context.Context, agentID, method string, args ...any) (json.RawMessage, error)
}

// URLSigner signs short-lived blob URLs for agents. *signed.Signer implements it.
type URLSigner interface {
	SignGet(d blobstore.Digest) string
	SignPut(d blobstore.Digest) string
}

// Config is what an Executor needs.
type Config struct {
	// CPI creates and deletes VMs and disks. CPIName names it in state (vms.cpi,
	// stemcell uploads); default "default".
	CPI     cpi.CPI
	CPIName string
	Agents  Agents
	Store   Store
	// Blobs is the director's blobstore: compiled packages are checked there before
	// they are reused.
	Blobs blobstore.Store
	// Signer, when set, gives agents signed URLs for every blob; without one, agents read
	// and write the blobstore their settings name (Settings' Blobstore).
	Signer URLSigner
	// Settings returns the agent settings a new VM boots with: mbus with the agent's own
	// credentials, blobstore, ntp, env. Converge fills agent id and networks. Required.
	Settings func(agentID string) (cpi.AgentSettings, error)
	// DirectorName goes on VM metadata (default "bosun").
	DirectorName string
	Log          *slog.Logger

	// AgentWait bounds waiting for a new VM's agent to answer (default 5 min).
	AgentWait time.Duration
	// CompileTimeout bounds one package compilation (default 30 min).
	CompileTimeout time.Duration
	// MaxDrainWait caps the wait a drain script asks for (default 10 min).
	MaxDrainWait time.Duration
	// PollInterval between get_state calls while watching a job start (default 250 ms).
	PollInterval time.Duration
	// NewID returns a fresh unique id (agent ids, request ids); default random UUIDs.
	NewID func() string
}

func (c *Config) defaults() error {
	switch {
	case c.CPI == nil:
		return errors.New("converge: Config.CPI is required")
	case c.Agents == nil:
		return errors.New("converge: Config.Agents is required")
	case c.Store == nil:
		return errors.New("converge: Config.Store is required")
	case c.Settings == nil:
		return errors.New("converge: Config.Settings is required")
	}
	if c.CPIName == "" {
		c.CPIName = "default"
	}
	if c.DirectorName == "" {
		c.DirectorName = "bosun"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.AgentWait <= 0 {
		c.AgentWait = 5 * time.Minute
	}
	if c.CompileTimeout <= 0 {
		c.CompileTimeout = 30 * time.Minute
	}
	if c.MaxDrainWait <= 0 {
		c.MaxDrainWait = 10 * time.Minute
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.NewID == nil {
		c.NewID = newUUID
	}
	return nil
}
