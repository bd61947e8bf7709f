// Package policy owns the policy gate: it evaluates a change against Rego policies with
// OPA's engine and returns deny, warn and exception verdicts.
package policy
