package release

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestDemoReleaseServes does by hand what the director and agent do with the demo
// release: compile the greeter package with its packaging script, render the web job,
// start the process bpm.yml describes and ask it over HTTP.
func TestDemoReleaseServes(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a Go program")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the demo's packaging script needs go on PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := Build(ctx, "../repo-template/releases/demo")
	if err != nil {
		t.Fatal(err)
	}
	compileDir, install := t.TempDir(), t.TempDir()
	files, err := untgz(ctx, bytes.NewReader(r.Package("greeter").Archive))
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range files {
		dst := filepath.Join(compileDir, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(ctx, "sh", "-e", "packaging")
	cmd.Dir = compileDir
	// Like an agent on this machine, hand over HOME and GOCACHE so Go's build cache is
	// shared; everything else is BOSH's compile environment.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "GOCACHE=" + os.Getenv("GOCACHE"), "BOSH_INSTALL_TARGET=" + install, "BOSH_COMPILE_TARGET=" + compileDir}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("packaging: %v\n%s", err, out)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	inst := demoInstance(0)
	inst.Address = "127.0.0.1"
	out, err := NewRenderer().Render(inst, []JobInput{{Release: "demo", Job: r.Job("web"), Properties: map[string]any{"greeting": "Hola", "port": port}}})
	if err != nil {
		t.Fatal(err)
	}
	var bpm struct {
		Processes []struct {
			Name       string   `yaml:"name"`
			Executable string   `yaml:"executable"`
			Args       []string `yaml:"args"`
		} `yaml:"processes"`
	}
	if err := yaml.Unmarshal(out.Jobs[0].Files["config/bpm.yml"], &bpm); err != nil || len(bpm.Processes) != 1 {
		t.Fatalf("bpm.yml: %v\n%s", err, out.Jobs[0].Files["config/bpm.yml"])
	}
	p := bpm.Processes[0]
	exe := strings.Replace(p.Executable, "/var/vcap/packages/greeter", install, 1)
	var logs bytes.Buffer
	proc := exec.CommandContext(ctx, exe, p.Args...)
	proc.Stdout, proc.Stderr = &logs, &logs
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { proc.Process.Kill(); proc.Wait() }()

	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got, want := string(body), "Hola from web/id-a\n"; got != want {
				t.Errorf("answer %q, want %q", got, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("greeter never answered on %s: %v\nlog:\n%s", url, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
