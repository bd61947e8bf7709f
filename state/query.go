package state

import "time"

// EventFilter narrows a listing of audit events; zero values match everything.
type EventFilter struct {
	Deployment string
	// Deployments, when not nil, keeps only events of these deployments: what a team
	// token may see. An empty non-nil list matches nothing.
	Deployments []string
	// Instance matches an event's instance ("group/index" or "group/id", as recorded).
	Instance string
	TaskID   int64
	Since    time.Time // only events at or after this time
	Until    time.Time // only events before this time
	BeforeID int64     // page backwards: only events older than this id
	Limit    int       // default 200
}

// TaskFilter narrows a listing of tasks; zero values match everything.
type TaskFilter struct {
	Deployment string
	// Deployments, when not nil, keeps only tasks of these deployments; an empty non-nil
	// list matches nothing.
	Deployments []string
	States      []string
	Limit       int // default 100
}

// Suspension is an operator's hold on a deployment: while it stands, the reconciler
// plans nothing for the deployment (flux suspend).
type Suspension struct {
	Deployment string    `json:"deployment"`
	User       string    `json:"user"`
	Reason     string    `json:"reason,omitempty"`
	Since      time.Time `json:"since"`
}

// Problem is one thing cck found wrong, with the ways BOSH would resolve it.
type Problem struct {
	ID          int      `json:"id"`   // numbered by the API, 1 up
	Type        string   `json:"type"` // missing_vm, unresponsive_agent, mount_info_mismatch, …
	Instance    string   `json:"instance,omitempty"`
	Description string   `json:"description"`
	Resolutions []string `json:"resolutions,omitempty"`
}

// Source is one tracked repository branch.
type Source struct {
	Name        string    `json:"name"`
	Repository  string    `json:"repository"` // credentials removed
	Branch      string    `json:"branch"`
	LastSeen    string    `json:"last_seen,omitempty"`    // newest commit fetched
	LastApplied string    `json:"last_applied,omitempty"` // newest commit accepted and converged
	LastPoll    time.Time `json:"last_poll,omitzero"`
	NextPoll    time.Time `json:"next_poll,omitzero"`
	Error       string    `json:"error,omitempty"`
}
