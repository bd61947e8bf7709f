package converge

// Result is what one convergence did, for the status commit and the task's result.
type Result struct {
	Created, Updated, Recreated, Deleted, Unchanged int
	// Instances are the deployment's instances once the run ended, in group then index
	// order, as the status branch lists them.
	Instances []InstanceResult
	// Failure is set when the rollout stopped: which instance, which process, why, and the
	// tail of its log. Instances after it were left untouched.
	Failure *Failure
}

// InstanceResult is one instance as it stands after a run.
type InstanceResult struct {
	Name  string   `json:"name"` // group/index
	ID    string   `json:"id"`
	AZ    string   `json:"az,omitempty"`
	State string   `json:"state"` // running, failing, stopped, …
	VMCID string   `json:"vm_cid,omitempty"`
	IPs   []string `json:"ips,omitempty"`
}

// Failure says where a rollout stopped.
type Failure struct {
	Instance string `json:"instance"` // group/index (id)
	Process  string `json:"process,omitempty"`
	Error    string `json:"error"`
	LogTail  string `json:"log_tail,omitempty"`
}
