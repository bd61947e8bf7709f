package main

import (
	"testing"

	"github.com/bosun-gitops/bosun/cpi/alicloud/fakealicloud"
)

func TestCPIServeAlicloud(t *testing.T) {
	good, wrongKey, typo := cloudConfigs(t, fakealicloud.New(t, fakealicloud.Options{}).ConfigJSON(), fakealicloud.AccessKeySecret, "not-the-secret",
		`{"region":"cn-beijing","access_key_id":"a","access_key_secret":"hunter2","regoin":"x"}`)
	checkServe(t, []serveCase{
		{args: []string{"cpi", "serve", "alicloud", "--config", good}, stdin: `{"method":"info","arguments":[],"context":{}}`,
			inStdout: `{"result":{"api_version":2,"stemcell_formats":["alicloud-light","alicloud-raw"]},"error":null`},
		{args: []string{"cpi", "serve", "alicloud", "--config", good}, stdin: `{"method":"has_vm","arguments":["i-nope"],"context":{}}`, inStdout: `"result":false`},
		{args: []string{"cpi", "serve", "alicloud", "--config", good}, stdin: `{"method":"create_disk","arguments":[1024,{"category":"cloud_nvme"},null],"context":{}}`,
			inStdout: `no zone: give a VM or set availability_zone`},
		{args: []string{"cpi", "serve", "alicloud", "--config", good}, stdin: `{"method":"create_disk","arguments":[1024,{"categroy":"cloud"},null],"context":{}}`,
			inStdout: `unknown cloud property \"categroy\"`},
		{args: []string{"cpi", "serve", "alicloud", "--config", wrongKey}, stdin: `{"method":"has_disk","arguments":["d-1"],"context":{}}`,
			inStdout: `ecs DescribeDisks answered 400 SignatureDoesNotMatch (request `},
		{args: []string{"cpi", "serve", "alicloud", "--config", typo}, code: 1, inStderr: `unknown key "regoin"`},
		{args: []string{"cpi", "serve", "alicloud"}, code: 2, inStderr: "--config is required"},
	}, cloudCaseName, fakealicloud.AccessKeySecret, "not-the-secret", "hunter2")
}
