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
	checkServe(t, []serveCase{
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
	}, func(tt serveCase) string { return strings.Join(tt.args, " ") })
}

// serveCase is one run of `bosun cpi serve` and what it must answer.
type serveCase struct {
	args     []string
	stdin    string
	code     int
	inStdout string
	inStderr string
}

// checkServe runs each case as a subtest called name(case), which fails when the
// answer differs or shows any of secrets.
func checkServe(t *testing.T, tests []serveCase, name func(serveCase) string, secrets ...string) {
	for _, tt := range tests {
		t.Run(name(tt), func(t *testing.T) {
			var o, e bytes.Buffer
			code := run(context.Background(), &cli{stdout: &o, stderr: &e, stdin: strings.NewReader(tt.stdin)}, tt.args)
			if code != tt.code || !strings.Contains(o.String(), tt.inStdout) || !strings.Contains(e.String(), tt.inStderr) {
				t.Errorf("code %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, o.String(), e.String())
			}
			for _, secret := range secrets {
				if strings.Contains(o.String()+e.String(), secret) {
					t.Errorf("a credential was printed:\nstdout: %s\nstderr: %s", o.String(), e.String())
				}
			}
		})
	}
}

// cloudConfigs writes a cloud CPI's configs: good (the fake cloud's own), the same
// with its secret replaced by wrong, and typo; it returns their paths.
func cloudConfigs(t *testing.T, good []byte, secret, wrong, typo string) (goodPath, wrongPath, typoPath string) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("cpi.json", string(good)), write("wrong.json", strings.Replace(string(good), secret, wrong, 1)), write("typo.json", typo)
}

// cloudCaseName names a cloud CPI's case by its flags and request.
func cloudCaseName(tt serveCase) string { return strings.Join(tt.args[3:], " ") + " " + tt.stdin }
