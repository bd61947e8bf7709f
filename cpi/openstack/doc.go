// Package openstack is the OpenStack CPI, built on gophercloud v2: Keystone v3 auth
// (password or application credential), Nova servers, Neutron ports and floating IPs,
// Cinder volumes and snapshots, Glance images.
//
// It follows BOSH's OpenStack CPI where behaviour is visible from outside: the global
// configuration and cloud_properties keys have its names, the agent's full settings
// travel in Nova user_data (optionally on a config drive), light stemcells are
// "<image id> light" so deleting one never deletes the shared image, and persistent
// disks are attached asking for the next free /dev/sdX, with the device Nova reports
// and the volume id as the agent's hint.
//
// Every call that answers something other than success becomes a *cpi.Error whose
// message names the API call, the status and the request id. 429s are retried after
// Retry-After (bounded), 5xx and transport errors only for idempotent requests;
// quota errors never. Credentials appear in no log line or error.
package openstack
