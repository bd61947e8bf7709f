// Package state owns the observed-state vocabulary: deployments, instances, VMs, disks,
// tasks, events and revisions, as the director records them.
package state
