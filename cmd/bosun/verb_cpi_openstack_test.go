package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/cpi/openstack/fakeopenstack"
)

func TestCPIServeOpenStack(t *testing.T) {
	cloud := fakeopenstack.New(t, fakeopenstack.Options{})
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("cpi.json", string(cloud.ConfigJSON()))
	wrongKey := write("wrong.json", strings.Replace(string(mustRead(good)), fakeopenstack.Password, "not-the-password", 1))
	typo := write("typo.json", `{"auth_url":"https://k","username":"u","api_key":"hunter2","project":"p","regoin":"x"}`)
	tests := []struct {
		args     []string
		stdin    string
		code     int
		inStdout string
		inStderr string
	}{
		{args: []string{"cpi", "serve", "openstack", "--config", good}, stdin: `{"method":"info","arguments":[],"context":{}}`,
			inStdout: `{"result":{"api_version":2,"stemcell_formats":["openstack-raw","openstack-qcow2","openstack-light"]},"error":null`},
		{args: []string{"cpi", "serve", "openstack", "--config", good}, stdin: `{"method":"has_vm","arguments":["vm-nope"],"context":{}}`, inStdout: `"result":false`},
		{args: []string{"cpi", "serve", "openstack", "--config", good}, stdin: `{"method":"create_disk","arguments":[1024,{"type":"nvme"},null],"context":{}}`,
			inStdout: `Volume type with name nvme could not be found`},
		{args: []string{"cpi", "serve", "openstack", "--config", wrongKey}, stdin: `{"method":"has_disk","arguments":["d"],"context":{}}`,
			inStdout: `answered 401 Unauthorized (request req-`},
		{args: []string{"cpi", "serve", "openstack", "--config", typo}, code: 1, inStderr: `unknown config key "regoin"`},
		{args: []string{"cpi", "serve", "openstack"}, code: 2, inStderr: "--config is required"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[3:], " ")+" "+tt.stdin, func(t *testing.T) {
			var o, e bytes.Buffer
			code := run(context.Background(), &cli{stdout: &o, stderr: &e, stdin: strings.NewReader(tt.stdin)}, tt.args)
			if code != tt.code || !strings.Contains(o.String(), tt.inStdout) || !strings.Contains(e.String(), tt.inStderr) {
				t.Errorf("code %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, o.String(), e.String())
			}
			for _, secret := range []string{fakeopenstack.Password, "not-the-password", "hunter2"} {
				if strings.Contains(o.String()+e.String(), secret) {
					t.Errorf("a credential was printed:\nstdout: %s\nstderr: %s", o.String(), e.String())
				}
			}
		})
	}
}

func mustRead(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return b
}
