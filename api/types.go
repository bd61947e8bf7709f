package api

import (
	"context"
	"io"
	"time"

	"github.com/bosun-gitops/bosun/state"
)

// DeploymentReader reads deployments and what the cloud holds for them.
type DeploymentReader interface {
	Deployment(ctx context.Context, name string) (state.Deployment, error)
	Deployments(ctx context.Context) ([]state.Deployment, error)
	Instances(ctx context.Context, deployment string) ([]state.Instance, error)
	VMs(ctx context.Context, deployment string) ([]state.VM, error)
	Disks(ctx context.Context, deployment string) ([]state.Disk, error)
}

// TaskStore reads tasks and their event logs, enqueues actions and cancels.
type TaskStore interface {
	Task(ctx context.Context, id int64) (state.Task, error)
	Tasks(ctx context.Context, f state.TaskFilter) ([]state.Task, error)
	TaskEvents(ctx context.Context, id, afterSeq int64) ([]state.TaskEvent, error)
	Enqueue(ctx context.Context, t state.Task) (state.Task, error)
	RequestCancel(ctx context.Context, id int64) (state.Task, error)
}

// EventStore reads and appends the audit trail.
type EventStore interface {
	Events(ctx context.Context, f state.EventFilter) ([]state.Event, error)
	AddEvent(ctx context.Context, e state.Event) (int64, error)
}

// DirectorReader reads what spans deployments: locks and judged revisions.
type DirectorReader interface {
	Locks(ctx context.Context) ([]state.Lock, error)
	Revisions(ctx context.Context, limit int) ([]state.Revision, error)
}

// Suspender keeps operators' holds on deployments; the reconciler reads them.
type Suspender interface {
	SuspendDeployment(ctx context.Context, deployment, user, reason string) (state.Suspension, error)
	ResumeDeployment(ctx context.Context, deployment string) (bool, error)
	Suspensions(ctx context.Context) ([]state.Suspension, error)
}

// Store is everything the API reads and writes; *postgres.Store satisfies it.
type Store interface {
	DeploymentReader
	TaskStore
	EventStore
	DirectorReader
	Suspender
}

// Counter is an optional part of a Store that /metrics uses when present.
type Counter interface {
	TaskCounts(ctx context.Context) (map[string]int, error)
	RevisionCounts(ctx context.Context) (map[string]int, error)
}

// InstanceCounter is an optional part of a Store that GET /deployments uses, when
// present, to count every deployment's instances in one query.
type InstanceCounter interface {
	InstanceCounts(ctx context.Context) (map[string]int, error)
}

// Pinger is an optional part of a Store that /healthz uses when present.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Reconciler starts a reconciliation at once instead of at the next poll (flux reconcile).
type Reconciler interface {
	ReconcileNow(ctx context.Context) error
}

// InstanceProber asks an instance's agent how it is (get_state): its processes and
// vitals. An unreachable agent is an error; the API shows it as "unresponsive agent".
type InstanceProber interface {
	Probe(ctx context.Context, inst state.Instance) (Probe, error)
}

// LogFetcher writes a gzipped tar of an instance's job logs (/var/vcap/sys/log) to w.
// Implemented at wiring time with the agent's fetch_logs and the blobstore.
type LogFetcher interface {
	FetchLogs(ctx context.Context, inst state.Instance, w io.Writer) error
}

// CloudChecker scans a deployment for problems (bosh cck): VMs missing or unresponsive,
// disks not attached, and so on, and resolves them. cmd/bosun adapts the health
// monitor's Scanner to it.
type CloudChecker interface {
	Scan(ctx context.Context, deployment string) ([]Problem, error)
	// Resolve applies each choice's resolution to its problem, as a scan just found it
	// (the checker matches it again by type and instance: a problem gone since is
	// reported, not resolved). It returns one Resolution per choice, in order.
	Resolve(ctx context.Context, deployment string, choices []ProblemChoice) ([]Resolution, error)
}

// ProblemChoice is a problem of a scan and the resolution an operator chose for it.
type ProblemChoice struct {
	Problem    Problem `json:"problem"`
	Resolution string  `json:"resolution"`
}

// ResolveRequest is POST /deployments/{name}/cck/resolve: which resolution to apply to
// which problem of a fresh scan.
type ResolveRequest struct {
	// Auto applies each problem's default resolution (the first it lists) where Resolutions names none
	// (bosh cck --auto).
	Auto bool `json:"auto,omitempty"`
	// Resolutions maps a problem's number (as the scan numbers them: "1") or a problem
	// type ("missing_vm") to a resolution ("recreate_vm"); a number wins over a type.
	Resolutions map[string]string `json:"resolutions,omitempty"`
}

// Resolution is what was done about one problem. Resolution is empty for a problem left
// as it is (no choice and not auto); TaskID names the task that recreates its VM.
type Resolution struct {
	Problem    Problem `json:"problem"`
	Resolution string  `json:"resolution,omitempty"`
	TaskID     int64   `json:"task_id,omitempty"`
	Error      string  `json:"error,omitempty"`
}

// ObservedReader gives a deployment's observed state as the reconciler's planner sees
// it, from the same place the reconciler plans from (`bosun plan --director`); cmd/bosun
// adapts the reconciler to it. It reads only; a deployment the director does not have
// has no instances, but still the addresses the others hold.
type ObservedReader interface {
	Observed(ctx context.Context, deployment string) (ObservedState, error)
}

// ObservedState is GET /deployments/{name}/observed: what a plan of the deployment
// starts from. It mirrors the planner's Observed (reconciler/plan), which this package
// may not import; field names and JSON are the same. Nothing in it is secret: ids,
// addresses, and fingerprints that are hashes of what instances run.
type ObservedState struct {
	Deployment string `json:"deployment"`
	// Known is false for a deployment the director does not have: planned, it is created.
	Known bool `json:"known"`
	// Revision is the commit the deployment was last deployed at.
	Revision  string             `json:"revision,omitempty"`
	Instances []ObservedInstance `json:"instances"`
	// IPsInUse are addresses held by other deployments, per network name (which
	// deployments hold them is not said: a team token may not see them).
	IPsInUse map[string][]string `json:"ips_in_use,omitempty"`
}

// ObservedInstance is an existing instance as the director last left it.
type ObservedInstance struct {
	ID        string            `json:"id"`
	Group     string            `json:"group"`
	Index     int               `json:"index"`
	AZ        string            `json:"az,omitempty"`
	Bootstrap bool              `json:"bootstrap,omitempty"`
	VMCID     string            `json:"vm_cid,omitempty"`
	State     string            `json:"state,omitempty"`
	IPs       map[string]string `json:"ips,omitempty"`
	// Applied is what the instance was last converged with.
	Applied      Fingerprint `json:"applied"`
	VMMissing    bool        `json:"vm_missing,omitempty"`
	Unresponsive bool        `json:"unresponsive,omitempty"`
}

// Fingerprint is what an instance runs, reduced to comparable hashes (the stemcell as
// os/version).
type Fingerprint struct {
	Stemcell string          `json:"stemcell,omitempty"`
	VM       string          `json:"vm,omitempty"`
	Env      string          `json:"env,omitempty"`
	Networks string          `json:"networks,omitempty"`
	Jobs     string          `json:"jobs,omitempty"`
	Disk     FingerprintDisk `json:"disk"`
}

// FingerprintDisk is a persistent disk's size in MB and disk type.
type FingerprintDisk struct {
	Size int    `json:"size"`
	Type string `json:"type,omitempty"`
}

// SourceLister tells where the desired state comes from and how fresh it is.
type SourceLister interface {
	Sources(ctx context.Context) ([]Source, error)
}

// Info is what GET /info answers, with or without a token.
type Info struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// User is who the request's token speaks for; empty without a (valid) token.
	User   string   `json:"user,omitempty"`
	Scopes []string `json:"scopes,omitempty"`
	Auth   string   `json:"auth"` // "token"
	// Features lists the optional parts this director has wired in.
	Features map[string]bool `json:"features"`
}

// Deployment is one deployment as GET /deployments lists it.
type Deployment struct {
	Name      string            `json:"name"`
	Revision  string            `json:"revision,omitempty"`
	Releases  []string          `json:"releases,omitempty"`  // name/version
	Stemcells []string          `json:"stemcells,omitempty"` // os/version
	Teams     []string          `json:"teams,omitempty"`
	Instances int               `json:"instances"`
	Suspended *state.Suspension `json:"suspended,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// Instance is one instance with, when asked for, what its agent says.
type Instance struct {
	state.Instance
	// Name is group/index, as operators say it.
	Name string `json:"name"`
	// ProcessState is the agent's job_state (running, failing, stopped) or "unresponsive
	// agent"; empty when the agent was not asked.
	ProcessState string `json:"process_state,omitempty"`
	Probe        *Probe `json:"probe,omitempty"`
	ProbeError   string `json:"probe_error,omitempty"`
}

// Probe is an agent's answer to get_state, as the API passes it on.
type Probe struct {
	JobState  string    `json:"job_state"`
	Processes []Process `json:"processes,omitempty"`
	Vitals    *Vitals   `json:"vitals,omitempty"`
}

// Process is one supervised process.
type Process struct {
	Name       string  `json:"name"`
	Job        string  `json:"job,omitempty"`
	State      string  `json:"state"`
	PID        int     `json:"pid,omitempty"`
	UptimeSecs int64   `json:"uptime_secs,omitempty"`
	MemKB      int64   `json:"mem_kb,omitempty"`
	CPUTotal   float64 `json:"cpu_total,omitempty"`
}

// Vitals are a VM's load, CPU, memory and disk use, as BOSH reports them (percentages
// as strings, as the agent sends them).
type Vitals struct {
	Load       []string          `json:"load,omitempty"`
	CPUUser    string            `json:"cpu_user,omitempty"`
	CPUSys     string            `json:"cpu_sys,omitempty"`
	CPUWait    string            `json:"cpu_wait,omitempty"`
	MemPercent string            `json:"mem_percent,omitempty"`
	MemKB      string            `json:"mem_kb,omitempty"`
	SwapPct    string            `json:"swap_percent,omitempty"`
	UptimeSecs int64             `json:"uptime_secs,omitempty"`
	Disks      map[string]string `json:"disks,omitempty"` // mount name → percent used
}

// VM is one VM with the instance it serves.
type VM struct {
	state.VM
	// Instance is group/index of the VM's instance; empty for a VM no instance claims.
	Instance     string  `json:"instance,omitempty"`
	AZ           string  `json:"az,omitempty"`
	ProcessState string  `json:"process_state,omitempty"`
	Vitals       *Vitals `json:"vitals,omitempty"`
}

// Disk is one persistent disk with the instance it belongs to.
type Disk struct {
	state.Disk
	Instance string `json:"instance,omitempty"` // group/index
}

// Problem is one thing cck found wrong; it is state's so that the health monitor can
// return it without importing this package.
type Problem = state.Problem

// Source is one tracked repository branch; it is state's so that the reconciler can
// return it without importing this package.
type Source = state.Source

// ActionRequest is POST /deployments/{name}/actions: an operator's recreate, restart,
// stop or start of a whole deployment, an instance group, or one instance.
type ActionRequest struct {
	Action string `json:"action"`
	Group  string `json:"group,omitempty"`
	// Instance is an index or id within Group.
	Instance string `json:"instance,omitempty"`
	Hard     bool   `json:"hard,omitempty"`
}

// SuspendRequest is POST /deployments/{name}/suspend's optional body.
type SuspendRequest struct {
	Reason string `json:"reason,omitempty"`
}

// OutputLine is one line of GET /tasks/{id}/output (newline-delimited JSON): a task event,
// or, last, the task as it ended (or as it stands, when not following).
type OutputLine struct {
	Event *state.TaskEvent `json:"event,omitempty"`
	Task  *state.Task      `json:"task,omitempty"`
}

// ErrorBody is every error response's body.
type ErrorBody struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}
