package policies.stemcells_test

import data.policies.stemcells

moved(direction) := {"changes": {"deployments": {"web": {"stemcells": [{"alias": "default", "os": "ubuntu-jammy", "from": "1.500", "to": "1.400", "direction": direction}]}}}}

test_downgrade_denied if {
	stemcells.deny_downgrade == {"deployment web: stemcell default (ubuntu-jammy) moves down from 1.500 to 1.400; stemcells only move forward"} with input as moved("down")
}

test_upgrade_allowed if {
	count(stemcells.deny_downgrade) == 0 with input as moved("up")
}
