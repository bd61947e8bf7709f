package plan

// Desired is a rendered deployment: its instance groups in manifest order and the pieces of
// the cloud-config that placement needs. Hashes are computed by the caller over whatever
// the hash stands for (resolved cloud properties, env, rendered job templates); the planner
// only compares them.
type Desired struct {
	Name string `json:"name"`
	// Deleted asks for the whole deployment to go: every observed instance is deleted.
	Deleted bool    `json:"deleted,omitempty"`
	Groups  []Group `json:"instance_groups"`
	Cloud   Cloud   `json:"cloud"`
}

// Cloud is the part of the cloud-config the planner reads.
type Cloud struct {
	AZs      []AZ      `json:"azs"`
	Networks []Network `json:"networks"`
}

// AZ is a cloud-config availability zone.
type AZ struct {
	Name string `json:"name"`
	// CloudPropertiesHash covers the AZ's cloud_properties, which BOSH merges under the
	// vm_type's: changing them recreates the AZ's VMs.
	CloudPropertiesHash string `json:"cloud_properties_hash,omitempty"`
}

// NetworkType is BOSH's network type.
type NetworkType string

// Network types, as cloud-config spells them.
const (
	Manual  NetworkType = "manual"
	Dynamic NetworkType = "dynamic"
	VIP     NetworkType = "vip"
)

// Network is a cloud-config network. Only manual networks have subnets the planner
// allocates from; dynamic networks learn their address from the agent; vip networks carry
// only static IPs.
type Network struct {
	Name    string      `json:"name"`
	Type    NetworkType `json:"type"`
	Subnets []Subnet    `json:"subnets,omitempty"`
}

// Subnet is one subnet of a network. Reserved and Static hold IPs or "a-b" ranges.
type Subnet struct {
	Range               string   `json:"range,omitempty"`
	Gateway             string   `json:"gateway,omitempty"`
	Reserved            []string `json:"reserved,omitempty"`
	Static              []string `json:"static,omitempty"`
	AZs                 []string `json:"azs,omitempty"`
	CloudPropertiesHash string   `json:"cloud_properties_hash,omitempty"`
}

// Lifecycle is an instance group's lifecycle: errand groups keep no VMs between runs.
type Lifecycle string

// Lifecycles.
const (
	Service Lifecycle = "service"
	Errand  Lifecycle = "errand"
)

// Group is a desired instance group.
type Group struct {
	Name      string         `json:"name"`
	Instances int            `json:"instances"`
	AZs       []string       `json:"azs,omitempty"`
	Networks  []GroupNetwork `json:"networks"`
	VMType    string         `json:"vm_type"`
	// CloudPropertiesHash covers the vm_type's and vm_extensions' merged cloud properties.
	CloudPropertiesHash string      `json:"cloud_properties_hash,omitempty"`
	VMExtensions        []string    `json:"vm_extensions,omitempty"`
	Stemcell            Stemcell    `json:"stemcell"`
	Disk                Disk        `json:"persistent_disk"`
	EnvHash             string      `json:"env_hash,omitempty"`
	Jobs                []Job       `json:"jobs"`
	Update              UpdateBlock `json:"update"`
	Lifecycle           Lifecycle   `json:"lifecycle,omitempty"`
	MigratedFrom        []Migration `json:"migrated_from,omitempty"`
	// Links names the groups of this deployment whose instances the group's jobs consume
	// through links, and LinkHash covers the rest of what those links carry (providers'
	// properties, links from other deployments). When either moves, the group's instances
	// update, as BOSH's "links" change: their templates render the links.
	Links    []string `json:"links,omitempty"`
	LinkHash string   `json:"link_hash,omitempty"`
}

// GroupNetwork is one entry of an instance group's networks.
type GroupNetwork struct {
	Name      string   `json:"name"`
	StaticIPs []string `json:"static_ips,omitempty"`
	Default   []string `json:"default,omitempty"`
}

// Stemcell names a stemcell by os and version.
type Stemcell struct {
	OS      string `json:"os"`
	Version string `json:"version"`
}

func (s Stemcell) String() string {
	if s.OS == "" && s.Version == "" {
		return ""
	}
	return s.OS + "/" + s.Version
}

// Disk is a persistent disk: size in MB (0 means none) and disk type name.
type Disk struct {
	Size int    `json:"size"`
	Type string `json:"type,omitempty"`
}

// Job is one job of an instance group. Hash covers its rendered templates, properties and
// links, so that any change to what the agent would run shows up as a different hash.
type Job struct {
	Name    string `json:"name"`
	Release string `json:"release"`
	Version string `json:"version"`
	Hash    string `json:"hash"`
}

// UpdateBlock is an instance group's effective update block. Canaries and MaxInFlight are "N" or
// "N%"; watch times are milliseconds as "N" or "min-max". Serial is already defaulted by the
// caller (BOSH's default is true).
type UpdateBlock struct {
	Canaries        string `json:"canaries"`
	MaxInFlight     string `json:"max_in_flight"`
	Serial          bool   `json:"serial"`
	CanaryWatchTime string `json:"canary_watch_time"`
	UpdateWatchTime string `json:"update_watch_time"`
	VMStrategy      string `json:"vm_strategy,omitempty"`
	// InitialDeployAZUpdateStrategy is serial (default) or parallel; parallel lets a first
	// deploy update all AZs at once instead of one after another.
	InitialDeployAZUpdateStrategy string `json:"initial_deploy_az_update_strategy,omitempty"`
}

// VM strategies.
const (
	DeleteCreate     = "delete-create"
	CreateSwapDelete = "create-swap-delete"
)

// Migration is one migrated_from entry: instances of the named old group become instances
// of this one; AZ is given to those that had none.
type Migration struct {
	Name string `json:"name"`
	AZ   string `json:"az,omitempty"`
}

// Observed is what exists now.
type Observed struct {
	Instances []Instance `json:"instances"`
	// IPsInUse are addresses held outside this deployment, per network name.
	IPsInUse map[string][]string `json:"ips_in_use,omitempty"`
}

// Instance is an existing instance as the director last left it.
type Instance struct {
	ID        string            `json:"id"`
	Group     string            `json:"group"`
	Index     int               `json:"index"`
	AZ        string            `json:"az,omitempty"`
	Bootstrap bool              `json:"bootstrap,omitempty"`
	VMCID     string            `json:"vm_cid,omitempty"`
	State     string            `json:"state,omitempty"`
	IPs       map[string]string `json:"ips,omitempty"`
	// Applied is what the instance was last converged with: the Applied of its last plan.
	Applied      Fingerprint `json:"applied"`
	VMMissing    bool        `json:"vm_missing,omitempty"`
	Unresponsive bool        `json:"unresponsive,omitempty"`
}

// Fingerprint is what an instance runs, reduced to comparable strings. A plan gives each
// instance the fingerprint it will have once converged; converge records it and hands it
// back as Instance.Applied.
type Fingerprint struct {
	Stemcell string `json:"stemcell,omitempty"`
	VM       string `json:"vm,omitempty"`
	Env      string `json:"env,omitempty"`
	Networks string `json:"networks,omitempty"`
	Jobs     string `json:"jobs,omitempty"`
	Disk     Disk   `json:"disk"`
	// Links is what the links the instance's jobs consume carry, empty when they consume
	// none.
	Links string `json:"links,omitempty"`
}

// Options tune one Compute call.
type Options struct {
	// NewID returns a fresh instance id; it is called once per created instance, in plan
	// order, so a counter makes plans reproducible in tests. Required only when something
	// is created.
	NewID func() string
	// Fix recreates unresponsive instances instead of refusing to plan (bosh deploy --fix).
	Fix bool
	// Recreate recreates every VM (bosh deploy --recreate).
	Recreate bool
	// Canaries and MaxInFlight, when set, replace every group's values (bosh deploy
	// --canaries, --max-in-flight).
	Canaries, MaxInFlight string
}
