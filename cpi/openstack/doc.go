// Package openstack is the OpenStack CPI, built on gophercloud.
package openstack
