package state

import (
	"encoding/json"
	"time"
)

// Verdict is everything the director decided about a revision besides its accepted,
// rejected or failed state: the policy revision that judged it, every message, how long
// the evaluation took, and for a failed revision the render error (file:line).
type Verdict struct {
	PolicyRevision string        `json:"policy_revision,omitempty"`
	Denies         []string      `json:"denies,omitempty"`
	Warnings       []string      `json:"warnings,omitempty"`
	Exceptions     []string      `json:"exceptions,omitempty"`
	EvaluatedIn    time.Duration `json:"evaluated_in_ns,omitempty"`
	Error          string        `json:"error,omitempty"`
}

// DeploymentRender is what a deployment was last rendered to from an accepted revision:
// Digest covers every rendered input, so an equal digest means nothing to converge.
type DeploymentRender struct {
	Deployment string    `json:"deployment"`
	Revision   string    `json:"revision"`
	Digest     string    `json:"digest"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Judgement is one judged revision as the reconciler stores it in one transaction: the
// revision and its verdict, the tasks it enqueues, the renders those tasks converge to,
// and the deployments it deletes (whose renders are forgotten).
type Judgement struct {
	Revision Revision
	Verdict  Verdict
	Tasks    []Task
	Renders  []DeploymentRender
	Forget   []string
}

// AppliedInstance is what the planner needs to remember of an instance once converged
// (the fingerprint it runs and its addresses by network), as opaque JSON it owns.
type AppliedInstance struct {
	InstanceID string          `json:"instance_id"`
	Deployment string          `json:"deployment"`
	Data       json.RawMessage `json:"data"`
}

// SharedLink is a link a deployment's job provides with `shared: true`, as that
// deployment's last successful deploy left it: what jobs of other deployments consume with
// `consumes: {NAME: {from: ALIAS, deployment: ...}}`. Name is the link's alias (`as`) or
// its name; Data is opaque JSON the reconciler owns (properties, instances, addresses).
// A consumer deployment keeps a copy of those its last successful deploy loaded
// (ConsumedLinks), so that what it renders between its deploys does not follow the
// provider: Deployment is then the provider's name and UpdatedAt when the copy was taken.
type SharedLink struct {
	Deployment string          `json:"deployment"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Data       json.RawMessage `json:"data"`
	UpdatedAt  time.Time       `json:"updated_at"`
}
