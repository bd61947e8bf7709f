package policies.prod_scale_test

import data.policies.prod_scale

scaled(name, from, to) := {"changes": {"deployments": {name: {"instance_groups": {"added": [], "removed": [], "scaled": [{"name": "web", "from": from, "to": to}]}}}}}

test_prod_scaled_below_two_denied if {
	msgs := prod_scale.deny with input as scaled("web-prod", 3, 1)
	msgs == {"deployment web-prod: instance group web scaled from 3 to 1 instances; production keeps at least 2"}
}

test_prod_scaled_to_two_allowed if {
	count(prod_scale.deny) == 0 with input as scaled("web-prod", 3, 2)
}

test_staging_may_scale_to_one if {
	count(prod_scale.deny) == 0 with input as scaled("web-staging", 3, 1)
}

test_new_prod_group_of_one_denied if {
	inp := {
		"changes": {"deployments": {"db-prod": {"instance_groups": {"added": ["pg", "migrate"], "removed": [], "scaled": []}}}},
		"proposed": {"deployments": {"db-prod": {"instance_groups": [
			{"name": "pg", "instances": 1},
			{"name": "migrate", "instances": 1, "lifecycle": "errand"},
		]}}},
	}
	prod_scale.deny == {"deployment db-prod: new instance group pg has 1 instances; production keeps at least 2"} with input as inp
}
