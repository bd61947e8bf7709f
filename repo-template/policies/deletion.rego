# Deleting a deployment destroys its VMs and disks. The commit must say so on purpose,
# with a trailer naming it:
#
#     Bosun-Allow-Delete: web-staging
package policies.deletion

deny contains msg if {
	some name in input.changes.deleted
	not allowed(name)
	msg := sprintf("deleting deployment %s needs a \"Bosun-Allow-Delete: %s\" trailer in the commit message", [name, name])
}

allowed(name) if {
	some v in object.get(input.commit.trailers, "Bosun-Allow-Delete", [])
	trim_space(v) == name
}
