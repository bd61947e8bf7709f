package external_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/cpitest"
	"github.com/bosun-gitops/bosun/cpi/external"
	"github.com/google/go-cmp/cmp"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bosun-external-cpi-test-")
	if err != nil {
		log.Fatal(err)
	}
	binDir = dir
	for _, pkg := range []string{"cmd/bosun", "cmd/bosun-agent"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, filepath.Base(pkg)), "github.com/bosun-gitops/bosun/"+pkg).CombinedOutput()
		if err != nil {
			log.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// serveLocal is an external CPI running `bosun cpi serve local` on a fresh data dir.
func serveLocal(t *testing.T) (*external.CPI, string) {
	dir := t.TempDir()
	c, err := external.New(external.Config{Name: "local-over-json", Path: filepath.Join(binDir, "bosun"),
		Args:         []string{"cpi", "serve", "local", "--data-dir", dir, "--agent", filepath.Join(binDir, "bosun-agent")},
		DirectorUUID: "director-test", Timeout: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vms, _ := c.ListVMs(context.Background())
		for _, vm := range vms {
			c.DeleteVM(context.Background(), vm.CID)
		}
	})
	return c, dir
}

func TestConformanceOverServeLocal(t *testing.T) {
	cpitest.RunConformance(t, func(t *testing.T) cpitest.Setup {
		c, _ := serveLocal(t)
		return cpitest.Setup{CPI: c, Networks: cpi.Networks{
			"default": {Type: "manual", IP: "127.110.1.2", Netmask: "255.255.255.0"},
			"dyn":     {Type: "dynamic"},
		}, Settings: cpi.AgentSettings{Mbus: "nats://agent:secret@127.0.0.1:4222", Blobstore: cpi.Blobstore{Provider: "local", Options: map[string]any{"blobstore_path": "/b"}}}}
	})
}

// TestSettingsCrossTheWire: the agent's mbus and blobstore reach settings.json
// through env.bosh, as BOSH v2 passes them.
func TestSettingsCrossTheWire(t *testing.T) {
	ctx := context.Background()
	c, dir := serveLocal(t)
	sc, err := c.CreateStemcell(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	vm, nets, err := c.CreateVM(ctx, cpi.VMSpec{AgentID: "agent-w", Stemcell: sc, Networks: cpi.Networks{"d": {Type: "dynamic"}},
		Env:      json.RawMessage(`{"persistent_disk_fs":"ext4"}`),
		Settings: cpi.AgentSettings{Mbus: "nats://agent-w:pw@127.0.0.1:4222", Blobstore: cpi.Blobstore{Provider: "local", Options: map[string]any{"blobstore_path": "/b"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(nets["d"].IP, "127.111.") {
		t.Errorf("v2 networks = %v, want the dynamic address", nets)
	}
	// The serving process has exited; the VM's agent, in its own session, lives on.
	pidB, err := os.ReadFile(filepath.Join(dir, "vms", string(vm), "agent.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if pid, _ := strconv.Atoi(strings.TrimSpace(string(pidB))); !alive(pid) {
		t.Errorf("agent %d died with the serve process that started it", pid)
	}
	vms, err := c.ListVMs(ctx)
	if err != nil || len(vms) != 1 || vms[0].CID != vm || vms[0].AgentID != "agent-w" {
		t.Fatalf("list_vms = %v, %v", vms, err)
	}
	var settings cpi.AgentSettings
	b, err := os.ReadFile(filepath.Join(dir, "vms", string(vm), "var/vcap/bosh/settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &settings); err != nil {
		t.Fatal(err)
	}
	if settings.Mbus != "nats://agent-w:pw@127.0.0.1:4222" || settings.Blobstore.Provider != "local" || settings.AgentID != "agent-w" || settings.Networks["d"].IP != nets["d"].IP {
		t.Errorf("settings.json = %s", b)
	}
}

// script writes an executable shell script standing in for a CPI.
func script(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "cpi.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// logSink collects debug log lines.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestBrokenExecutables(t *testing.T) {
	// Each script first answers info, then misbehaves on the call under test. The
	// request is read through a temp file since grep consumes stdin.
	pre := "req=$(cat)\nif echo \"$req\" | grep -q '\"method\":\"info\"'; then echo '{\"result\":{\"api_version\":2},\"error\":null,\"log\":\"\"}'; exit 0; fi\n"
	tests := []struct {
		name    string
		body    string
		method  string
		kind    cpi.Kind
		retry   bool
		wantMsg string
	}{
		{name: "garbage on create", body: "echo 'Traceback (most recent call last)'", method: "create_vm", kind: cpi.CpiError, wantMsg: `not a CPI response, starting "Traceback`},
		{name: "garbage on has_vm", body: "echo '<html>'", method: "has_vm", kind: cpi.CpiError, retry: true, wantMsg: "not a CPI response"},
		{name: "non-zero exit", body: "echo boom >&2; exit 3", method: "create_vm", kind: cpi.CpiError, wantMsg: "ended (exit status 3) without a response"},
		{name: "exit code ignored", body: `echo '{"result":["vm-9",{}],"error":null,"log":"made it"}'; exit 1`, method: "create_vm"},
		{name: "object without result", body: `echo '{"foo":1}'`, method: "delete_vm", kind: cpi.CpiError, wantMsg: "not a CPI response"},
		{name: "retryable create", body: `echo '{"result":null,"error":{"type":"Bosh::Clouds::VMCreationFailed","message":"quota","ok_to_retry":true},"log":""}'`, method: "create_vm", kind: cpi.VMCreationFailed, retry: true, wantMsg: "quota"},
		{name: "ok_to_retry ignored for CloudError", body: `echo '{"result":null,"error":{"type":"Bosh::Clouds::CloudError","message":"x","ok_to_retry":true},"log":""}'`, method: "create_vm", kind: cpi.CloudError},
		{name: "unknown error type", body: `echo '{"result":null,"error":{"type":"Bosh::Clouds::Weird","message":"odd"},"log":""}'`, method: "delete_vm", kind: cpi.CloudError, wantMsg: "Bosh::Clouds::Weird: odd"},
		{name: "legacy unknown method", body: `echo '{"result":null,"error":{"type":"InvalidCall","message":"Method is not known, got reboot_vm"},"log":""}'`, method: "reboot_vm", kind: cpi.NotImplemented},
		{name: "vm not found on delete is done", body: `echo '{"result":null,"error":{"type":"Bosh::Clouds::VMNotFound","message":"gone"},"log":""}'`, method: "delete_vm"},
		{name: "v2 attach without hint", body: `echo '{"result":null,"error":null,"log":""}'`, method: "attach_disk", kind: cpi.CpiError, wantMsg: "no disk hint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &logSink{}
			c, _ := external.New(external.Config{Name: "broken", Path: script(t, pre+tt.body), Timeout: 30 * time.Second},
				slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug})))
			ctx := cpi.WithInstance(context.Background(), "web/3")
			var err error
			switch tt.method {
			case "create_vm":
				_, _, err = c.CreateVM(ctx, cpi.VMSpec{AgentID: "a", Stemcell: "sc"})
			case "has_vm":
				_, err = c.HasVM(ctx, "vm-1")
			case "delete_vm":
				err = c.DeleteVM(ctx, "vm-1")
			case "reboot_vm":
				err = c.RebootVM(ctx, "vm-1")
			case "attach_disk":
				_, err = c.AttachDisk(ctx, "vm-1", "disk-1")
			}
			if tt.kind == "" {
				if err != nil {
					t.Fatalf("%s: %v", tt.method, err)
				}
				return
			}
			var e *cpi.Error
			if !errors.As(err, &e) {
				t.Fatalf("%s = %v, want a *cpi.Error", tt.method, err)
			}
			if e.Kind != tt.kind || e.OkToRetry != tt.retry || e.CPI != "broken" || e.Method != tt.method || e.Instance != "web/3" || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("%s = %v\nwant kind %s, retry %v, naming CPI broken, method, instance web/3, and %q", tt.method, err, tt.kind, tt.retry, tt.wantMsg)
			}
			if tt.name == "non-zero exit" && !strings.Contains(sink.String(), "boom") {
				t.Errorf("stderr not in the debug log:\n%s", sink.String())
			}
		})
	}
}

// TestTimeoutKillsProcessGroup: a CPI that never answers is killed with everything it
// started, and a create that timed out is never called retryable.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	body := "req=$(cat)\ncase \"$req\" in *'\"method\":\"info\"'*) echo '{\"result\":{\"api_version\":2},\"error\":null}'; exit 0;; esac\n" +
		"sleep 300 &\necho $! > " + pidFile + "\nwait\n"
	c, _ := external.New(external.Config{Name: "hung", Path: script(t, body), Timeout: 500 * time.Millisecond}, nil)
	start := time.Now()
	_, _, err := c.CreateVM(context.Background(), cpi.VMSpec{AgentID: "a"})
	if time.Since(start) > 20*time.Second {
		t.Errorf("timed-out call took %s", time.Since(start))
	}
	var e *cpi.Error
	if !errors.As(err, &e) || e.OkToRetry || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer within 500ms") {
		t.Fatalf("create_vm on a hung CPI = %v; want a not-retryable timeout", err)
	}
	b, _ := os.ReadFile(pidFile)
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if child == 0 {
		t.Fatal("the script never started its child")
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(child) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d of the timed-out CPI survived", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z'
}

// TestV1CPI: no info (NotImplemented), create_vm answers a bare cid, attach_disk nil.
func TestV1CPI(t *testing.T) {
	reqLog := filepath.Join(t.TempDir(), "requests")
	body := "req=$(cat)\necho \"$req\" >> " + reqLog + "\ncase \"$req\" in\n" +
		"*'\"method\":\"info\"'*) echo '{\"result\":null,\"error\":{\"type\":\"Bosh::Clouds::NotImplemented\",\"message\":\"no\"},\"log\":\"\"}';;\n" +
		"*'\"method\":\"create_vm\"'*) echo '{\"result\":\"vm-v1\",\"error\":null,\"log\":\"\"}';;\n" +
		"*) echo '{\"result\":null,\"error\":null,\"log\":\"\"}';;\nesac\n"
	c, _ := external.New(external.Config{Name: "v1", Path: script(t, body), DirectorUUID: "d-1", Properties: map[string]any{"region": "r1"}}, nil)
	ctx := context.Background()
	nets := cpi.Networks{"n": {Type: "manual", IP: "10.0.0.4"}}
	vm, got, err := c.CreateVM(ctx, cpi.VMSpec{AgentID: "a", Stemcell: "sc", StemcellAPIVersion: 2, Networks: nets})
	if err != nil || vm != "vm-v1" {
		t.Fatalf("create_vm = %q, %v", vm, err)
	}
	if diff := cmp.Diff(nets, got); diff != "" {
		t.Errorf("v1 create_vm networks are the ones given (-want +got)\n%s", diff)
	}
	if hint, err := c.AttachDisk(ctx, vm, "d"); err != nil || !hint.IsZero() {
		t.Errorf("v1 attach_disk = %v, %v", hint, err)
	}
	if _, err := c.Info(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(reqLog)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 {
		t.Fatalf("requests = %d, want info once then two calls:\n%s", len(lines), b)
	}
	var req struct {
		Method     string            `json:"method"`
		Arguments  []json.RawMessage `json:"arguments"`
		Context    map[string]any    `json:"context"`
		APIVersion int               `json:"api_version"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &req); err != nil {
		t.Fatal(err)
	}
	if req.Method != "create_vm" || len(req.Arguments) != 6 || req.APIVersion != 1 || req.Context["director_uuid"] != "d-1" || req.Context["region"] != "r1" ||
		!strings.HasPrefix(fmt.Sprint(req.Context["request_id"]), "cpi-") || fmt.Sprint(req.Context["vm"]) != "map[stemcell:map[api_version:2]]" {
		t.Errorf("create_vm request = %s", lines[1])
	}
}

func TestMissingExecutable(t *testing.T) {
	c, _ := external.New(external.Config{Name: "gone", Path: "/nonexistent/cpi"}, nil)
	_, err := c.Info(context.Background())
	var e *cpi.Error
	if !errors.As(err, &e) || e.Kind != cpi.CpiError || e.OkToRetry || e.Method != "info" {
		t.Errorf("info on a missing executable = %v", err)
	}
}

// BenchmarkCreateDeleteVMsOverServe is BenchmarkCreateDeleteVMs of cpi/local through
// `bosun cpi serve local`: one process per call. cpu-ms/vm is the director's own CPU,
// cpi-cpu-ms/vm that of the CPI processes.
func BenchmarkCreateDeleteVMsOverServe(b *testing.B) {
	const vms, inFlight = 200, 20
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		c, _ := external.New(external.Config{Name: "local", Path: filepath.Join(binDir, "bosun"),
			Args: []string{"cpi", "serve", "local", "--data-dir", dir, "--agent", filepath.Join(binDir, "bosun-agent")}}, nil)
		sc, err := c.CreateStemcell(ctx, "", nil)
		if err != nil {
			b.Fatal(err)
		}
		var before, childBefore syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		syscall.Getrusage(syscall.RUSAGE_CHILDREN, &childBefore)
		b.StartTimer()
		start := time.Now()
		sem := make(chan struct{}, inFlight)
		var wg sync.WaitGroup
		errs := make(chan error, vms)
		for i := range vms {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				vm, _, err := c.CreateVM(ctx, cpi.VMSpec{AgentID: fmt.Sprint("bench-", i), Stemcell: sc, Networks: cpi.Networks{"d": {Type: "dynamic"}}})
				if err == nil {
					err = c.DeleteVM(ctx, vm)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		var after, childAfter syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		syscall.Getrusage(syscall.RUSAGE_CHILDREN, &childAfter)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		cpuOf := func(a, b syscall.Rusage) time.Duration {
			return time.Duration(b.Utime.Nano() + b.Stime.Nano() - a.Utime.Nano() - a.Stime.Nano())
		}
		b.ReportMetric(float64(elapsed.Microseconds())/1000/vms, "ms/vm")
		b.ReportMetric(float64(cpuOf(before, after).Microseconds())/1000/vms, "cpu-ms/vm")
		b.ReportMetric(float64(cpuOf(childBefore, childAfter).Microseconds())/1000/vms, "cpi-cpu-ms/vm")
		b.StartTimer()
	}
}
