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
