# Stemcells only move forward: a downgrade reintroduces fixed CVEs. Roll forward instead,
# or waive this rule with an exception that says why.
package policies.stemcells

deny_downgrade contains msg if {
	some name, d in input.changes.deployments
	some s in d.stemcells
	s.direction == "down"
	msg := sprintf("deployment %s: stemcell %s (%s) moves down from %s to %s; stemcells only move forward", [name, s.alias, s.os, s.from, s.to])
}
