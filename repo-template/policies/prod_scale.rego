# Production deployments (named *-prod) keep at least two instances in every service
# instance group, so losing or updating one VM never takes the service down.
package policies.prod_scale

deny contains msg if {
	some name, d in input.changes.deployments
	endswith(name, "-prod")
	some s in d.instance_groups.scaled
	s.to < 2
	msg := sprintf("deployment %s: instance group %s scaled from %d to %d instances; production keeps at least 2", [name, s.name, s.from, s.to])
}

deny contains msg if {
	some name, d in input.changes.deployments
	endswith(name, "-prod")
	some ig_name in d.instance_groups.added
	some ig in input.proposed.deployments[name].instance_groups
	ig.name == ig_name
	object.get(ig, "lifecycle", "service") == "service"
	ig.instances < 2
	msg := sprintf("deployment %s: new instance group %s has %d instances; production keeps at least 2", [name, ig.name, ig.instances])
}
