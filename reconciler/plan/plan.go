package plan

// Plan is what converging a deployment takes: per instance group, each instance's change
// and the order to make them in.
type Plan struct {
	Deployment string `json:"deployment"`
	// Groups holds the desired instance groups in manifest order, then removed ones by name.
	Groups []GroupPlan `json:"instance_groups"`
	// Stages orders the groups by name: stages run one after another and the groups of one
	// stage run at once. Removed groups come first, as BOSH deletes them before updating.
	Stages [][]string `json:"stages"`
}

// Empty reports whether converging the plan would change nothing.
func (p Plan) Empty() bool {
	for _, g := range p.Groups {
		if g.Removed {
			return false
		}
		for _, in := range g.Instances {
			if in.Action != Keep || in.Disk != DiskKeep {
				return false
			}
		}
	}
	return true
}

// GroupPlan is one instance group's part of a plan.
type GroupPlan struct {
	Name      string    `json:"name"`
	Lifecycle Lifecycle `json:"lifecycle,omitempty"`
	// Removed is set for a group that is no longer in the manifest: all its instances go.
	Removed  bool     `json:"removed,omitempty"`
	Strategy Strategy `json:"update"`
	// Instances holds the desired instances by index, then those to delete by index.
	Instances []InstancePlan `json:"instances"`
	// Batches lists instance ids in the order converge takes them: deletions first, then
	// canaries, then batches of max_in_flight, one availability zone after another.
	Batches []Batch `json:"batches,omitempty"`
}

// Strategy is a group's parsed update block.
type Strategy struct {
	Canaries        string    `json:"canaries,omitempty"`
	MaxInFlight     string    `json:"max_in_flight,omitempty"`
	Serial          bool      `json:"serial"`
	CanaryWatchTime WatchTime `json:"canary_watch_time"`
	UpdateWatchTime WatchTime `json:"update_watch_time"`
	VMStrategy      string    `json:"vm_strategy,omitempty"`
	// AZsInParallel is set when a first deploy with initial_deploy_az_update_strategy:
	// parallel updates all AZs at once.
	AZsInParallel bool `json:"azs_in_parallel,omitempty"`
}

// WatchTime is a watch window in milliseconds: wait Min, then poll until Max.
type WatchTime struct {
	Min int `json:"min_ms"`
	Max int `json:"max_ms"`
}

// BatchKind says what a batch does.
type BatchKind string

// Batch kinds, in the order converge runs them within an instance group.
const (
	BatchDelete BatchKind = "delete"
	BatchCanary BatchKind = "canary"
	BatchUpdate BatchKind = "update"
)

// Batch is a set of instances converged at once. A failure stops the group's rollout.
type Batch struct {
	Kind      BatchKind `json:"kind"`
	AZ        string    `json:"az,omitempty"`
	Instances []string  `json:"instances"`
}

// Action is what happens to an instance's VM and jobs.
type Action string

// Actions.
const (
	Create   Action = "create"
	Delete   Action = "delete"
	Recreate Action = "recreate"
	Update   Action = "update"
	Keep     Action = "unchanged"
)

// DiskAction is what happens to an instance's persistent disk.
type DiskAction string

// Disk actions. Resize is in place; migrate creates a new disk and copies the data.
const (
	DiskKeep    DiskAction = ""
	DiskCreate  DiskAction = "create"
	DiskResize  DiskAction = "resize"
	DiskMigrate DiskAction = "migrate"
	DiskDelete  DiskAction = "delete"
)

// ReasonKind names why an instance changes.
type ReasonKind string

// Reasons. The first group deletes, the second recreates the VM, the third updates in place.
const (
	ReasonScaledDown        ReasonKind = "scaled down"
	ReasonAZRemoved         ReasonKind = "az removed"
	ReasonGroupRemoved      ReasonKind = "instance group removed"
	ReasonDeploymentDeleted ReasonKind = "deployment deleted"
	ReasonStaticIPRemoved   ReasonKind = "static IP removed"

	ReasonStemcell     ReasonKind = "stemcell"
	ReasonVMType       ReasonKind = "vm_type"
	ReasonNetwork      ReasonKind = "network"
	ReasonEnv          ReasonKind = "env"
	ReasonVMMissing    ReasonKind = "vm missing"
	ReasonUnresponsive ReasonKind = "unresponsive"
	ReasonRecreate     ReasonKind = "recreate requested"

	ReasonJobs      ReasonKind = "jobs"
	ReasonLinks     ReasonKind = "links"
	ReasonDisk      ReasonKind = "persistent disk"
	ReasonBootstrap ReasonKind = "bootstrap"
	ReasonMigrated  ReasonKind = "migrated"
)

// Reason is one cause of a change, with what moved.
type Reason struct {
	Kind   ReasonKind `json:"kind"`
	Detail string     `json:"detail,omitempty"`
}

func (r Reason) String() string {
	if r.Detail == "" {
		return string(r.Kind)
	}
	return string(r.Kind) + " " + r.Detail
}

// InstancePlan is one instance's change.
type InstancePlan struct {
	ID        string     `json:"id"`
	Group     string     `json:"group"`
	Index     int        `json:"index"`
	AZ        string     `json:"az,omitempty"`
	Bootstrap bool       `json:"bootstrap,omitempty"`
	Action    Action     `json:"action"`
	Disk      DiskAction `json:"disk,omitempty"`
	Reasons   []Reason   `json:"reasons,omitempty"`
	// IPs are the instance's addresses in the group's network order; empty on dynamic
	// networks, whose address the agent reports after boot.
	IPs []Address `json:"ips,omitempty"`
	// VMCID is the instance's current VM, if it has one.
	VMCID string `json:"vm_cid,omitempty"`
	// VMStrategy is how a recreate replaces the VM: create-swap-delete falls back to
	// delete-create for instances with static IPs, which cannot be held twice.
	VMStrategy string `json:"vm_strategy,omitempty"`
	// Applied is what the instance runs once converged; record it as Instance.Applied.
	Applied Fingerprint `json:"applied"`
}

// Name is the instance's BOSH name, group/index.
func (in InstancePlan) Name() string { return in.Group + "/" + itoa(in.Index) }

// Address is an instance's address on one network.
type Address struct {
	Network string   `json:"network"`
	IP      string   `json:"ip,omitempty"`
	Default []string `json:"default,omitempty"`
}
