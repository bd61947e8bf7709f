package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/internal/testcert"
)

// `bosun director --dev` logs the local user in by writing the CLI's config file. Tests
// must never touch the real user's: every director and CLI this test binary starts
// inherits a BOSUN_CONFIG of its own, unless a test sets one itself.
func init() {
	if os.Getenv("BOSUN_CONFIG") == "" {
		os.Setenv("BOSUN_CONFIG", filepath.Join(os.TempDir(), "bosun-e2e-cli-config.json"))
	}
}

// startDirectorEnv is startDirector with extra environment variables.
func startDirectorEnv(t *testing.T, env []string, args ...string) *directorProc {
	t.Helper()
	p := &directorProc{stderr: &syncBuffer{}, done: make(chan struct{})}
	for i, a := range args {
		if a == "--listen" {
			p.api = args[i+1]
		}
	}
	p.cmd = exec.Command(directorBinary(t), append([]string{"director"}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.terminate)
	return p
}

func (p *directorProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("director exited %d:\n%s", code, p.stderr)
	}
}

// bosunCLI runs the bosun binary with env and returns its output and exit code.
func bosunCLI(t *testing.T, env []string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(directorBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e syncBuffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

func TestDirectorDevLogsTheCLIIn(t *testing.T) {
	base := reachableTempDir(t)
	data := filepath.Join(base, "data")
	env := []string{"BOSUN_CONFIG=" + filepath.Join(base, "cli", "config.json"), "BOSUN_ENVIRONMENT=", "BOSUN_TOKEN="}
	apiAddr, natsAddr := directorFreePort(t), directorFreePort(t)
	args := []string{"--dev", "--data-dir", data, "--listen", apiAddr, "--nats-listen", natsAddr}
	d := startDirectorEnv(t, env, args...)
	d.healthy(t)

	o, e, code := bosunCLI(t, env, "", "env", "--json")
	var got struct {
		URL  string   `json:"url"`
		Info api.Info `json:"info"`
	}
	if code != 0 || json.Unmarshal([]byte(o), &got) != nil || got.Info.User != "dev" || got.URL != "http://"+apiAddr {
		t.Fatalf("bosun env: %d %s%s", code, o, e)
	}
	if o, e, code := bosunCLI(t, env, "", "deployments"); code != 0 || !strings.Contains(o, "0 deployments") {
		t.Errorf("bosun deployments: %d %s%s", code, o, e)
	}
	if _, e, code := bosunCLI(t, env, "", "suspend", "-d", "web"); code != 1 || e != "bosun suspend: no deployment named web: `bosun deployments` lists them\n" {
		t.Errorf("suspend of a missing deployment: %d %q", code, e)
	}

	// Without a token: 401 with a reason, in JSON; /metrics open.
	resp, err := http.Get("http://" + apiAddr + "/deployments")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), `"error":"no token`) {
		t.Errorf("no token: %d %s", resp.StatusCode, b)
	}
	resp, err = http.Get("http://" + apiAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `bosun_tasks{state="queued"} 0`) {
		t.Errorf("metrics:\n%s", b)
	}

	// A restarted dev director keeps its token: the stored login still works.
	d.stop(t)
	d = startDirectorEnv(t, env, args...)
	d.healthy(t)
	if o, e, code := bosunCLI(t, env, "", "env"); code != 0 || !strings.Contains(o, "dev") {
		t.Errorf("env after a restart: %d %s%s", code, o, e)
	}
	d.stop(t)
}

func TestDirectorServesTLSWithConfiguredTokens(t *testing.T) {
	base := reachableTempDir(t)
	certFile, keyFile := testcert.WriteSelfSigned(t, base)
	readTok, _ := api.NewToken()
	cfg := "tls: {cert: " + certFile + ", key: " + keyFile + "}\n" +
		"tokens:\n- {name: auditor, hash: " + api.HashToken(readTok) + ", scopes: [bosun.read]}\n"
	cfgFile := filepath.Join(base, "api.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"BOSUN_CONFIG=" + filepath.Join(base, "cli.json"), "BOSUN_ENVIRONMENT=", "BOSUN_TOKEN="}
	apiAddr, natsAddr := directorFreePort(t), directorFreePort(t)
	d := startDirectorEnv(t, env, "--dev", "--data-dir", filepath.Join(base, "data"), "--listen", apiAddr, "--nats-listen", natsAddr, "--api-config", cfgFile)

	pemBytes, _ := os.ReadFile(certFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		resp, err := client.Get("https://" + apiAddr + "/info")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-d.done:
			t.Fatalf("director exited:\n%s", d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS answer within 3 minutes: %v\n%s", err, d.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, e, code := bosunCLI(t, env, readTok+"\n", "login", "https://"+apiAddr, "-e", "tls"); code != 1 || !strings.Contains(e, "--ca-cert FILE") {
		t.Errorf("login without the CA: %d %s", code, e)
	}
	o, e, code := bosunCLI(t, env, readTok+"\n", "login", "https://"+apiAddr, "--ca-cert", certFile, "-e", "tls")
	if code != 0 || !strings.Contains(o, "as auditor") {
		t.Fatalf("login over TLS: %d %s%s", code, o, e)
	}
	if o, e, code := bosunCLI(t, env, "", "tasks", "--recent"); code != 0 || !strings.Contains(o, "0 recent tasks") {
		t.Errorf("tasks over TLS: %d %s%s", code, o, e)
	}
	if _, e, code := bosunCLI(t, env, "", "reconcile"); code != 1 || !strings.Contains(e, "token auditor may not reconcile") {
		t.Errorf("reconcile with a read token: %d %s", code, e)
	}
	// The dev login written at start trusts the configured certificate too.
	if o, e, code := bosunCLI(t, env, "", "env", "-e", "dev"); code != 0 || !strings.Contains(o, "https://") {
		t.Errorf("dev env over TLS: %d %s%s", code, o, e)
	}
	d.stop(t)
}

func TestDirectorBadAPIConfig(t *testing.T) {
	base := reachableTempDir(t)
	bad := filepath.Join(base, "bad.yml")
	if err := os.WriteFile(bad, []byte("tokens:\n- {name: ci, hash: bosun_plaintext, scopes: [bosun.admin]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noCert := filepath.Join(base, "nocert.yml")
	if err := os.WriteFile(noCert, []byte("tls: {cert: "+filepath.Join(base, "missing.pem")+", key: "+filepath.Join(base, "missing.key")+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, want string
	}{
		{"missing file", filepath.Join(base, "nope.yml"), "API config: open " + filepath.Join(base, "nope.yml") + ": no such file or directory"},
		{"plaintext token", bad, "tokens[0] (ci): hash must be sha256:<64 hex digits>, as `bosun new-token` prints it"},
		{"missing certificate", noCert, "API TLS certificate " + filepath.Join(base, "missing.pem")},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(base, strconv.Itoa(i))
			d := startDirectorEnv(t, nil, "--dev", "--listen", directorFreePort(t), "--nats-listen", directorFreePort(t), "--data-dir", data, "--api-config", tt.file)
			code := d.wait(t)
			out := strings.TrimSpace(d.stderr.String())
			if code != 1 || !strings.Contains(out, tt.want) || strings.Count(out, "\n") > 0 {
				t.Errorf("exit %d, output %q; want one line containing %q", code, out, tt.want)
			}
			if strings.Contains(out, "bosun_plaintext") {
				t.Errorf("the token was printed: %s", out)
			}
			if _, err := os.Stat(filepath.Join(data, "postgres")); err == nil {
				t.Error("Postgres was started before the config was checked")
			}
		})
	}
}
