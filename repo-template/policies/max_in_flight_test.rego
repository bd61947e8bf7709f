package policies.max_in_flight_test

import data.policies.max_in_flight

deploy(global, ig_update) := {
	"changes": {"deployments": {"web": {"deleted": false}}},
	"proposed": {"deployments": {"web": {
		"update": {"max_in_flight": global},
		"instance_groups": [object.union({"name": "api", "instances": 4}, ig_update)],
	}}},
}

test_integer_over_half_warns if {
	max_in_flight.warn == {"deployment web: instance group api updates 3 of 4 instances at once (max_in_flight 3); more than half may be down during a deploy"} with input as deploy(3, {})
}

test_integer_half_is_fine if {
	count(max_in_flight.warn) == 0 with input as deploy(2, {})
}

test_percentage_over_half_warns if {
	count(max_in_flight.warn) == 1 with input as deploy("75%", {})
}

test_percentage_half_is_fine if {
	count(max_in_flight.warn) == 0 with input as deploy("50%", {})
}

test_instance_group_override_wins if {
	count(max_in_flight.warn) == 0 with input as deploy(4, {"update": {"max_in_flight": 1}})
	count(max_in_flight.warn) == 1 with input as deploy(1, {"update": {"max_in_flight": "100%"}})
}

test_single_instance_left_alone if {
	count(max_in_flight.warn) == 0 with input as deploy(1, {"instances": 1})
}

test_integer_as_string_warns if {
	count(max_in_flight.warn) == 1 with input as deploy("3", {})
}
