// Package plan owns the pure diff between desired instances (rendered manifests) and
// observed state. It does no I/O and takes no context: it is where scale is won.
package plan
