# A warning when an update may take down more than half of an instance group at once:
# max_in_flight (the instance group's own, else the deployment's) is an integer or "N%",
# computed as BOSH does (floor of N% of the instances, at least 1). Instance groups of a
# single instance are left alone: they cannot be updated any other way.
package policies.max_in_flight

warn contains msg if {
	some name, d in input.changes.deployments
	not d.deleted
	manifest := input.proposed.deployments[name]
	deployment_wide := object.get(manifest, ["update", "max_in_flight"], 1)
	some ig in manifest.instance_groups
	ig.instances > 1
	raw := object.get(ig, ["update", "max_in_flight"], deployment_wide)
	n := in_flight(raw, ig.instances)
	n * 2 > ig.instances
	msg := sprintf("deployment %s: instance group %s updates %d of %d instances at once (max_in_flight %v); more than half may be down during a deploy", [name, ig.name, n, ig.instances, raw])
}

in_flight(raw, _) := raw if is_number(raw)

in_flight(raw, instances) := max([1, floor((to_number(trim_suffix(raw, "%")) * instances) / 100)]) if {
	is_string(raw)
	endswith(raw, "%")
}

in_flight(raw, _) := to_number(raw) if {
	is_string(raw)
	not endswith(raw, "%")
}
