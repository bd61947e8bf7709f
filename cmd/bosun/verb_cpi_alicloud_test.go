package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/cpi/alicloud/fakealicloud"
)

func TestCPIServeAlicloud(t *testing.T) {
	cloud := fakealicloud.New(t, fakealicloud.Options{})
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("cpi.json", string(cloud.ConfigJSON()))
	wrongKey := write("wrong.json", strings.Replace(string(mustRead(good)), fakealicloud.AccessKeySecret, "not-the-secret", 1))
	typo := write("typo.json", `{"region":"cn-beijing","access_key_id":"a","access_key_secret":"hunter2","regoin":"x"}`)
	tests := []struct {
		args     []string
		stdin    string
		code     int
		inStdout string
		inStderr string
	}{
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
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[3:], " ")+" "+tt.stdin, func(t *testing.T) {
			var o, e bytes.Buffer
			code := run(context.Background(), &cli{stdout: &o, stderr: &e, stdin: strings.NewReader(tt.stdin)}, tt.args)
			if code != tt.code || !strings.Contains(o.String(), tt.inStdout) || !strings.Contains(e.String(), tt.inStderr) {
				t.Errorf("code %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, o.String(), e.String())
			}
			for _, secret := range []string{fakealicloud.AccessKeySecret, "not-the-secret", "hunter2"} {
				if strings.Contains(o.String()+e.String(), secret) {
					t.Errorf("a credential was printed:\nstdout: %s\nstderr: %s", o.String(), e.String())
				}
			}
		})
	}
}
