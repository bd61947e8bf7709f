package policies.deletion_test

import data.policies.deletion

deleting(trailers) := {
	"changes": {"deleted": ["web"]},
	"commit": {"trailers": trailers},
}

test_delete_without_trailer_denied if {
	deletion.deny == {"deleting deployment web needs a \"Bosun-Allow-Delete: web\" trailer in the commit message"} with input as deleting({})
}

test_delete_with_trailer_allowed if {
	count(deletion.deny) == 0 with input as deleting({"Bosun-Allow-Delete": ["db", "web"]})
}

test_trailer_for_another_deployment_denied if {
	count(deletion.deny) == 1 with input as deleting({"Bosun-Allow-Delete": ["web-staging"]})
}
