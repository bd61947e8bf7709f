package main

import (
	"testing"

	"github.com/bosun-gitops/bosun/cpi/openstack/fakeopenstack"
)

func TestCPIServeOpenStack(t *testing.T) {
	good, wrongKey, typo := cloudConfigs(t, fakeopenstack.New(t, fakeopenstack.Options{}).ConfigJSON(), fakeopenstack.Password, "not-the-password",
		`{"auth_url":"https://k","username":"u","api_key":"hunter2","project":"p","regoin":"x"}`)
	checkServe(t, []serveCase{
		{args: []string{"cpi", "serve", "openstack", "--config", good}, stdin: `{"method":"info","arguments":[],"context":{}}`,
			inStdout: `{"result":{"api_version":2,"stemcell_formats":["openstack-raw","openstack-qcow2","openstack-light"]},"error":null`},
		{args: []string{"cpi", "serve", "openstack", "--config", good}, stdin: `{"method":"has_vm","arguments":["vm-nope"],"context":{}}`, inStdout: `"result":false`},
		{args: []string{"cpi", "serve", "openstack", "--config", good}, stdin: `{"method":"create_disk","arguments":[1024,{"type":"nvme"},null],"context":{}}`,
			inStdout: `Volume type with name nvme could not be found`},
		{args: []string{"cpi", "serve", "openstack", "--config", wrongKey}, stdin: `{"method":"has_disk","arguments":["d"],"context":{}}`,
			inStdout: `answered 401 Unauthorized (request req-`},
		{args: []string{"cpi", "serve", "openstack", "--config", typo}, code: 1, inStderr: `unknown config key "regoin"`},
		{args: []string{"cpi", "serve", "openstack"}, code: 2, inStderr: "--config is required"},
	}, cloudCaseName, fakeopenstack.Password, "not-the-password", "hunter2")
}
