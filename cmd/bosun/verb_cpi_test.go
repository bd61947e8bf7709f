package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCPIServe(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cpi.json")
	os.WriteFile(cfg, []byte(`{"data_dir":"`+dir+`/data","agent_path":"/bin/true"}`), 0o600)
	badCfg := filepath.Join(dir, "bad.json")
	os.WriteFile(badCfg, []byte(`{"data_dir":"x","agnet_path":"y"}`), 0o600)
	tests := []struct {
		args     []string
		stdin    string
		code     int
		inStdout string
		inStderr string
	}{
		{args: []string{"cpi", "serve", "local"}, stdin: `{"method":"info","arguments":[],"context":{"director_uuid":"d"},"api_version":2}`, inStdout: `{"result":{"api_version":2,"stemcell_formats":["bosun-local","general-tar"]},"error":null,"log":""}`},
		{args: []string{"cpi", "serve", "local", "--config", cfg}, stdin: `{"method":"has_vm","arguments":["vm-nope"],"context":{}}`, inStdout: `"result":false`},
		{args: []string{"cpi", "serve", "local", "--data-dir", dir}, stdin: `{"method":"snapshot_disk","arguments":["d",{}],"context":{}}`, inStdout: `"type":"Bosh::Clouds::NotImplemented"`},
		{args: []string{"cpi", "serve", "local", "--data-dir", dir}, stdin: `{"method":"frob","arguments":[]}`, inStdout: `method \"frob\" is not implemented`},
		{args: []string{"cpi", "serve", "local", "--data-dir", dir}, stdin: `not json`, inStdout: `"type":"Bosh::Clouds::CpiError"`},
		{args: []string{"cpi", "serve", "local", "--dynamic-range", "10.0.0.0/8"}, stdin: `{}`, code: 1, inStderr: "must be a prefix of 127.0.0.0/8"},
		{args: []string{"cpi", "serve", "local", "--config", badCfg}, code: 1, inStderr: `unknown field "agnet_path"`},
		{args: []string{"cpi", "serve", "vsphere"}, code: 2, inStderr: `no built-in CPI named "vsphere" (there are: `},
		{args: []string{"cpi", "serve"}, code: 2, inStderr: "serve needs the CPI's name first"},
		{args: []string{"cpi", "launch"}, code: 2, inStderr: `unknown subcommand "launch"`},
		{args: []string{"cpi", "serve", "local", "--help"}, inStdout: "-data-dir"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var o, e bytes.Buffer
			code := run(context.Background(), &cli{stdout: &o, stderr: &e, stdin: strings.NewReader(tt.stdin)}, tt.args)
			if code != tt.code || !strings.Contains(o.String(), tt.inStdout) || !strings.Contains(e.String(), tt.inStderr) {
				t.Errorf("code %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, o.String(), e.String())
			}
		})
	}
}
