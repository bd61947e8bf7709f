package state

import (
	"encoding/json"
	"errors"
	"time"
)

// Deployment is one deployment as the director last converged it.
type Deployment struct {
	Name string `json:"name"`
	// Revision is the source commit whose manifest was last accepted for it.
	Revision  string    `json:"revision,omitempty"`
	Manifest  []byte    `json:"manifest,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Instance states, as bosh instances shows them.
const (
	InstanceStarted  = "started"
	InstanceStopped  = "stopped"
	InstanceDetached = "detached"
)

// Instance is one member of an instance group: group/index, or group/id as BOSH names it.
type Instance struct {
	ID         string `json:"id"` // uuid
	Deployment string `json:"deployment"`
	Group      string `json:"group"`
	Index      int    `json:"index"`
	AZ         string `json:"az,omitempty"`
	// State is the desired process state: started, stopped or detached.
	State string `json:"state"`
	// Bootstrap marks the one instance of its group that runs one-off setup.
	Bootstrap bool      `json:"bootstrap"`
	VMCID     string    `json:"vm_cid,omitempty"`
	IPs       []string  `json:"ips,omitempty"`
	AgentID   string    `json:"agent_id,omitempty"`
	DiskCID   string    `json:"disk_cid,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// VM is a machine the cloud holds for an instance.
type VM struct {
	CID        string            `json:"cid"`
	Deployment string            `json:"deployment"`
	InstanceID string            `json:"instance_id,omitempty"`
	AgentID    string            `json:"agent_id"`
	IPs        []string          `json:"ips,omitempty"`
	CPI        string            `json:"cpi,omitempty"`
	Stemcell   string            `json:"stemcell,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
}

// Disk is a persistent disk the cloud holds for an instance.
type Disk struct {
	CID        string    `json:"cid"`
	Deployment string    `json:"deployment"`
	InstanceID string    `json:"instance_id,omitempty"`
	SizeMB     int       `json:"size_mb"`
	CPI        string    `json:"cpi,omitempty"`
	Active     bool      `json:"active"`
	CreatedAt  time.Time `json:"created_at"`
}

// Task states. A task moves queued → processing → one of the final states; cancelling is
// processing with a cancel requested, which the worker sees and honours.
const (
	TaskQueued     = "queued"
	TaskProcessing = "processing"
	TaskCancelling = "cancelling"
	TaskDone       = "done"
	TaskError      = "error"
	TaskCancelled  = "cancelled"
	TaskTimeout    = "timeout"
)

// TaskFinal reports whether a task in state s will not change any more.
func TaskFinal(s string) bool {
	switch s {
	case TaskDone, TaskError, TaskCancelled, TaskTimeout:
		return true
	}
	return false
}

// Task is one unit of director work, claimed by one worker at a time.
type Task struct {
	ID          int64           `json:"id"`
	Type        string          `json:"type"`
	Deployment  string          `json:"deployment,omitempty"`
	State       string          `json:"state"`
	Description string          `json:"description"`
	Params      json.RawMessage `json:"params,omitempty"`
	Result      string          `json:"result,omitempty"`
	User        string          `json:"user,omitempty"`
	// Owner names the worker holding the task while it is processing.
	Owner       string     `json:"owner,omitempty"`
	HeartbeatAt *time.Time `json:"heartbeat_at,omitempty"`
	// Attempts counts claims: more than one means a worker lost it and another took over.
	Attempts   int        `json:"attempts"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// TaskEvent is one line of a task's progress, in the shape of BOSH's event log.
type TaskEvent struct {
	TaskID   int64     `json:"task_id"`
	Seq      int64     `json:"seq"`
	Time     time.Time `json:"time"`
	Stage    string    `json:"stage"`
	Task     string    `json:"task"`
	Tags     []string  `json:"tags,omitempty"`
	Index    int       `json:"index"`
	Total    int       `json:"total"`
	State    string    `json:"state"` // started, finished, failed, in_progress
	Progress int       `json:"progress"`
	Error    string    `json:"error,omitempty"`
}

// Event is one audit-trail entry: who did what to which object, and how it ended.
type Event struct {
	ID         int64          `json:"id"`
	Time       time.Time      `json:"time"`
	User       string         `json:"user"`
	Action     string         `json:"action"`
	ObjectType string         `json:"object_type"`
	ObjectName string         `json:"object_name,omitempty"`
	Deployment string         `json:"deployment,omitempty"`
	Instance   string         `json:"instance,omitempty"`
	TaskID     int64          `json:"task_id,omitempty"`
	Error      string         `json:"error,omitempty"`
	Context    map[string]any `json:"context,omitempty"`
}

// Revision verdicts.
const (
	RevisionAccepted = "accepted"
	RevisionRejected = "rejected"
	RevisionFailed   = "failed"
)

// Revision is one source commit the director judged.
type Revision struct {
	SHA      string    `json:"sha"`
	Author   string    `json:"author"`
	Message  string    `json:"message"`
	Received time.Time `json:"received"`
	Verdict  string    `json:"verdict"`
	// PolicyMessages are the deny and warn messages the policy gave.
	PolicyMessages []string `json:"policy_messages,omitempty"`
	TaskID         int64    `json:"task_id,omitempty"`
}

// Intent kinds.
const (
	IntentCreateVM   = "create_vm"
	IntentDeleteVM   = "delete_vm"
	IntentCreateDisk = "create_disk"
	IntentDeleteDisk = "delete_disk"
	IntentAttachDisk = "attach_disk"
	IntentDetachDisk = "detach_disk"
)

// Intent states.
const (
	IntentPending = "pending"
	IntentDone    = "done"
	IntentFailed  = "failed"
)

// Intent is a write-ahead record of a cloud call: written before the call, completed after,
// so a director restarted at any moment knows which calls may have acted unseen.
type Intent struct {
	ID         int64  `json:"id"`
	TaskID     int64  `json:"task_id,omitempty"`
	Kind       string `json:"kind"`
	Deployment string `json:"deployment"`
	InstanceID string `json:"instance_id,omitempty"`
	// RequestID is also put on the cloud object's metadata so it can be found again.
	RequestID string     `json:"request_id"`
	State     string     `json:"state"`
	CloudCID  string     `json:"cloud_cid,omitempty"`
	Error     string     `json:"error,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	DoneAt    *time.Time `json:"done_at,omitempty"`
}

// Lock is a deployment lock as operators see it: who holds it and for how long.
type Lock struct {
	Deployment string        `json:"deployment"`
	TaskID     int64         `json:"task_id"`
	Owner      string        `json:"owner"`
	Since      time.Time     `json:"since"`
	Age        time.Duration `json:"age"`
}

var (
	// ErrNotFound: no such object.
	ErrNotFound = errors.New("not found")
	// ErrTaskLost: the worker no longer holds the task: it was taken over after its
	// heartbeat went stale, or it already ended.
	ErrTaskLost = errors.New("task no longer held by this worker")
)

// Task types every director role agrees on. The reconciler handles all of them; the API and
// the health monitor only enqueue them.
const (
	// TaskDeploy converges one deployment to an accepted revision (params: the reconciler's).
	TaskDeploy = "deploy"
	// TaskDeleteDeployment deletes every VM, disk and IP of a deployment.
	TaskDeleteDeployment = "delete_deployment"
	// TaskResurrect recreates unresponsive instances (params: ResurrectParams).
	TaskResurrect = "resurrect"
	// TaskAction runs an operator's action on instances (params: ActionParams).
	TaskAction = "instance_action"
)

// ResurrectParams name the instances the health monitor wants recreated, and why.
type ResurrectParams struct {
	Instances []string `json:"instances"` // instance ids
	Reason    string   `json:"reason"`
}

// Instance actions, as bosh recreate/restart/stop/start name them.
const (
	ActionRecreate = "recreate"
	ActionRestart  = "restart"
	ActionStop     = "stop"
	ActionStart    = "start"
)

// ActionParams are an operator's action on a deployment, one instance group or one
// instance (group/index or group/id).
type ActionParams struct {
	Action string `json:"action"`
	Group  string `json:"group,omitempty"`
	// Instance is an index or id within Group; empty means the whole group.
	Instance string `json:"instance,omitempty"`
	// Hard stops detach the VM (bosh stop --hard): the VM is deleted, the disk kept.
	Hard bool `json:"hard,omitempty"`
	// Reason says why Bosun itself acts (a drift repair), for the status commit.
	Reason string `json:"reason,omitempty"`
}

// Applied is what converge last applied to an instance. Both values are JSON converge
// owns: Fingerprint is the plan's fingerprint (the planner's Instance.Applied), Record
// what operator actions need to stop, start or recreate the instance later.
type Applied struct {
	InstanceID  string          `json:"instance_id"`
	Fingerprint json.RawMessage `json:"fingerprint,omitempty"`
	Record      json.RawMessage `json:"record,omitempty"`
}

// CompiledPackage is a package compiled for one stemcell, kept by its compiled-package key.
type CompiledPackage struct {
	Key      string `json:"key"`
	Name     string `json:"name"`
	Version  string `json:"version"`
	Stemcell string `json:"stemcell"`
	// Blob is the blobstore digest of the compiled package's tarball.
	Blob string `json:"blob"`
}
