package converge

import (
	"encoding/json"

	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/reconciler/plan"
)

// Task is one convergence of one deployment: the plan the reconciler computed and
// everything converge needs to carry it out. The reconciler builds it from a rendered
// revision; converge never reads manifests or git. Blobs are named by digest only:
// converge signs short-lived URLs for agents at the moment it calls them.
type Task struct {
	// ID is the director task this convergence runs as (events and intents name it).
	ID         int64
	Deployment string
	Plan       plan.Plan
	// Instances holds, by instance id, what to build and apply for every instance the
	// plan creates, recreates or updates. Deleted and unchanged instances need no entry.
	Instances map[string]Instance
	// Stemcell is the stemcell every VM of the task boots from.
	Stemcell Stemcell
	// Packages are the release packages the instances' jobs need, compiled for Stemcell
	// before any instance is touched.
	Packages []Package
	// Compilation says where compilation VMs are made (cloud-config `compilation`).
	Compilation Compilation
}

// Instance is one desired instance as the agent and the CPI must see it.
type Instance struct {
	ID        string
	Group     string
	Index     int
	AZ        string
	Bootstrap bool
	// VM is what create_vm takes for this instance (networks carry the planned IPs).
	VM VM
	// Jobs are the instance's jobs in manifest order, with their release job blobs and
	// the packages (by name, as in Task.Packages) each needs at run time.
	Jobs []Job
	// RenderedTemplates is the gzipped tar of rendered job files (top-level dirs are job
	// names), already in the blobstore; ConfigurationHash is its BOSH-style hash.
	RenderedTemplates blobstore.Digest
	ConfigurationHash string
	// TemplateHashes are per-job hashes of rendered files (the apply spec's
	// template_hashes).
	TemplateHashes map[string]string
	// PersistentDisk is the persistent disk the instance should have; zero size means none.
	PersistentDisk Disk
	// Fingerprint is what the instance runs once converged (plan.Fingerprint), recorded so
	// the next plan can compare.
	Fingerprint plan.Fingerprint
}

// VM is the CPI side of an instance.
type VM struct {
	CloudProperties json.RawMessage
	Env             json.RawMessage
	Networks        cpi.Networks
}

// Job is one job of an instance.
type Job struct {
	Name     string
	Release  string
	Version  string // the job's fingerprint
	Blob     blobstore.Digest
	Packages []string
}

// Disk is a persistent disk request.
type Disk struct {
	SizeMiB         int
	CloudProperties json.RawMessage
}

// Stemcell is the stemcell to upload (once) and boot from.
type Stemcell struct {
	Name       string
	OS         string
	Version    string
	APIVersion int
	// ImagePath is the image to hand create_stemcell (may be empty for light stemcells
	// and for the local CPI's manifest-only stemcells).
	ImagePath       string
	CloudProperties json.RawMessage
}

// Package is a release package in source form.
type Package struct {
	Name    string
	Release string
	// Version is the package fingerprint.
	Version string
	// Source is the package's source tarball in the blobstore.
	Source blobstore.Digest
	// Dependencies are names of other packages of the same release.
	Dependencies []string
}

// Compilation is where compilation VMs go.
type Compilation struct {
	Workers         int
	AZ              string
	CloudProperties json.RawMessage
	Env             json.RawMessage
	// Network is the network compilation VMs join; IPs for manual networks are chosen by
	// the reconciler and listed here, one per worker.
	Networks []cpi.Networks
	Reuse    bool
}
