// Package api owns the director's HTTP API and the Go client the CLI uses.
//
// The API is JSON over HTTP, its paths shaped like BOSH's director API: /info,
// /deployments, /deployments/{name}/instances, /tasks/{id}/output and so on. /healthz,
// /info and /metrics need no token; everything else takes a bearer token whose scopes
// (bosun.admin, bosun.read, bosun.teams.<team>.admin|read) decide what it may see and do.
// Tokens are configured by their SHA-256 hash, never in the clear.
//
// The package reads state through interfaces it declares (Store and the optional
// Reconciler, InstanceProber, LogFetcher, CloudChecker and SourceLister); cmd/bosun wires
// the concrete parts in. Actions on instances are not carried out here: they are
// enqueued as state.TaskAction tasks for the reconciler's workers, and every action is
// recorded as an audit event naming its user.
package api
