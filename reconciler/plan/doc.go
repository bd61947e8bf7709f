// Package plan owns the pure diff between desired instances (rendered manifests) and
// observed state. It does no I/O and takes no context: it is where scale is won.
//
// Compute places a deployment's instances the way BOSH's placement planner does (AZ
// balancing that keeps existing instances where they are, stable ids and indexes, static
// and dynamic IPs, a bootstrap instance), decides per instance what must happen and why,
// and orders the work with BOSH's update arithmetic (canaries, max_in_flight, serial
// instance groups). The inputs are plain values of this package so that the manifest and
// state packages can change without touching the planner; the reconciler adapts them.
package plan
