package local_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
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
	"github.com/bosun-gitops/bosun/cpi/local"
	"github.com/google/go-cmp/cmp"
)

var agentPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bosun-local-cpi-test-")
	if err != nil {
		log.Fatal(err)
	}
	agentPath = filepath.Join(dir, "bosun-agent")
	if out, err := exec.Command("go", "build", "-o", agentPath, "github.com/bosun-gitops/bosun/cmd/bosun-agent").CombinedOutput(); err != nil {
		log.Fatalf("build bosun-agent: %v\n%s", err, out)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newCPI(t testing.TB, mod func(*local.Config)) (*local.CPI, string) {
	dir := t.TempDir()
	cfg := local.Config{Dir: dir, AgentPath: agentPath, StopGrace: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := local.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAll(t, c) })
	return c, dir
}

// deleteAll removes every VM left, so no agent outlives the test.
func deleteAll(t testing.TB, c *local.CPI) {
	vms, _ := c.ListVMs(context.Background())
	for _, vm := range vms {
		if err := c.DeleteVM(context.Background(), vm.CID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

func TestConformance(t *testing.T) {
	cpitest.RunConformance(t, func(t *testing.T) cpitest.Setup {
		c, _ := newCPI(t, nil)
		return cpitest.Setup{CPI: c, Networks: cpi.Networks{
			"default": {Type: "manual", IP: "127.110.0.2", Netmask: "255.255.255.0"},
			"dyn":     {Type: "dynamic"},
		}, Settings: cpi.AgentSettings{Mbus: "nats://agent:secret@127.0.0.1:4222", Blobstore: cpi.Blobstore{Provider: "local", Options: map[string]any{"blobstore_path": "/b"}}}}
	})
}

func stemcell(t testing.TB, c *local.CPI) cpi.StemcellCID {
	sc, err := c.CreateStemcell(context.Background(), "", []byte(`{"name":"bosh-local","version":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func agentPid(t testing.TB, dir string, vm cpi.VMCID) int {
	b, err := os.ReadFile(filepath.Join(dir, "vms", string(vm), "agent.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z'
}

func sessionOf(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return strconv.Atoi(f[3])
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAgentRunsDetachedWithSettings(t *testing.T) {
	ctx := context.Background()
	c, dir := newCPI(t, nil)
	vm, nets, err := c.CreateVM(ctx, cpi.VMSpec{AgentID: "agent-1", Stemcell: stemcell(t, c),
		Networks: cpi.Networks{"default": {Type: "manual", IP: "127.110.0.9"}},
		Settings: cpi.AgentSettings{Mbus: "nats://agent-1:pw@127.0.0.1:4222"}})
	if err != nil {
		t.Fatal(err)
	}
	if nets["default"].IP != "127.110.0.9" {
		t.Errorf("networks = %v", nets)
	}
	// Jobs really bind to the VM's own address.
	l, err := net.Listen("tcp", nets["default"].IP+":0")
	if err != nil {
		t.Errorf("listen on the VM's address: %v", err)
	} else {
		l.Close()
	}
	pid := agentPid(t, dir, vm)
	sid, err := sessionOf(pid)
	if err != nil || sid != pid {
		t.Errorf("agent session = %d, %v; want its own session %d", sid, err, pid)
	}
	root := filepath.Join(dir, "vms", string(vm))
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	want := strings.Join([]string{agentPath, "--settings", filepath.Join(root, "var/vcap/bosh/settings.json"), "--root", root}, "\x00") + "\x00"
	if string(cmdline) != want {
		t.Errorf("agent command line = %q, want %q", cmdline, want)
	}
	settings, err := os.ReadFile(filepath.Join(root, "var/vcap/bosh/settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"agent_id": "agent-1"`, `"mbus": "nats://agent-1:pw@127.0.0.1:4222"`, `"ip": "127.110.0.9"`, `"name": "` + string(vm) + `"`} {
		if !bytes.Contains(settings, []byte(s)) {
			t.Errorf("settings.json lacks %s:\n%s", s, settings)
		}
	}
	if st, _ := os.Stat(filepath.Join(root, "var/vcap/bosh/settings.json")); st.Mode().Perm() != 0o600 {
		t.Errorf("settings.json mode %v, want 0600 (it holds the agent's credentials)", st.Mode().Perm())
	}
}

// TestKilledAgentLooksCrashed: an agent killed from outside leaves a VM that exists
// but runs nothing of its own; its jobs (same session) are still stopped by delete.
func TestKilledAgentLooksCrashed(t *testing.T) {
	ctx := context.Background()
	script := filepath.Join(t.TempDir(), "agent-with-job.sh")
	// Like the real agent: a job in its own process group, inside the agent's session.
	os.WriteFile(script, []byte("#!/bin/sh\nset -m\nsleep 300 &\necho $! > \"$4/job.pid\"\nexec sleep 300\n"), 0o755)
	c, dir := newCPI(t, func(cfg *local.Config) { cfg.AgentPath = script })
	vm, _, err := c.CreateVM(ctx, cpi.VMSpec{AgentID: "agent-2", Stemcell: stemcell(t, c), Networks: cpi.Networks{"d": {Type: "dynamic"}}})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "vms", string(vm))
	pid := agentPid(t, dir, vm)
	var job int
	waitFor(t, "the job to start", func() bool {
		b, err := os.ReadFile(filepath.Join(root, "job.pid"))
		job, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && job > 0
	})
	if sid, _ := sessionOf(job); sid != pid {
		t.Fatalf("job session %d, want the agent's %d", sid, pid)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, "the agent to die", func() bool { return !alive(pid) })
	if ok, err := c.HasVM(ctx, vm); !ok || err != nil {
		t.Errorf("has_vm of a crashed VM = %v, %v; want true (the VM is there, its agent is not)", ok, err)
	}
	// Rebooting a crashed VM stops what is left of it and starts a new agent.
	if err := c.RebootVM(ctx, vm); err != nil {
		t.Fatalf("reboot_vm of a crashed VM: %v", err)
	}
	if alive(job) {
		t.Errorf("job %d survived reboot_vm", job)
	}
	if pid = agentPid(t, dir, vm); !alive(pid) {
		t.Fatalf("agent %d not running after reboot", pid)
	}
	waitFor(t, "the new job to start", func() bool {
		b, err := os.ReadFile(filepath.Join(root, "job.pid"))
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && n > 0 && n != job {
			job = n
			return true
		}
		return false
	})
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, "the new agent to die", func() bool { return !alive(pid) })
	if err := c.DeleteVM(ctx, vm); err != nil {
		t.Fatalf("delete_vm of a crashed VM: %v", err)
	}
	if alive(job) {
		t.Errorf("job %d survived delete_vm", job)
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("VM root left behind: %v", err)
	}
	if ok, _ := c.HasVM(ctx, vm); ok {
		t.Error("has_vm after delete = true")
	}
}

// TestAgentIgnoringSIGTERM is killed after the grace period.
func TestAgentIgnoringSIGTERM(t *testing.T) {
	script := filepath.Join(t.TempDir(), "stubborn.sh")
	os.WriteFile(script, []byte("#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 1; done\n"), 0o755)
	c, dir := newCPI(t, func(cfg *local.Config) { cfg.AgentPath = script; cfg.StopGrace = 200 * time.Millisecond })
	vm, _, err := c.CreateVM(context.Background(), cpi.VMSpec{AgentID: "a", Stemcell: stemcell(t, c)})
	if err != nil {
		t.Fatal(err)
	}
	pid := agentPid(t, dir, vm)
	if err := c.DeleteVM(context.Background(), vm); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Errorf("agent %d ignoring SIGTERM survived delete", pid)
	}
}

func TestDiskDataFollowsTheDisk(t *testing.T) {
	ctx := context.Background()
	c, dir := newCPI(t, nil)
	sc := stemcell(t, c)
	vm1, _, err := c.CreateVM(ctx, cpi.VMSpec{AgentID: "a1", Stemcell: sc})
	if err != nil {
		t.Fatal(err)
	}
	vm2, _, err := c.CreateVM(ctx, cpi.VMSpec{AgentID: "a2", Stemcell: sc})
	if err != nil {
		t.Fatal(err)
	}
	disk, err := c.CreateDisk(ctx, 10, nil, vm1)
	if err != nil {
		t.Fatal(err)
	}
	hint, err := c.AttachDisk(ctx, vm1, disk)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cpi.DiskHint{Path: "/var/vcap/store", ID: string(disk)}, hint); diff != "" {
		t.Errorf("hint (-want +got)\n%s", diff)
	}
	if again, err := c.AttachDisk(ctx, vm1, disk); err != nil || again != hint {
		t.Errorf("attach twice = %v, %v; want the same hint", again, err)
	}
	data := filepath.Join(dir, "vms", string(vm1), "var/vcap/store/data.txt")
	if err := os.WriteFile(data, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AttachDisk(ctx, vm2, disk); !errors.Is(err, cpi.ErrCloudError) {
		t.Errorf("attach to a second VM = %v, want CloudError", err)
	}
	if err := c.DeleteDisk(ctx, disk); err == nil {
		t.Error("delete_disk of an attached disk succeeded")
	}
	// Deleting the VM keeps the disk, detached.
	if err := c.DeleteVM(ctx, vm1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AttachDisk(ctx, vm2, disk); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "vms", string(vm2), "var/vcap/store/data.txt"))
	if string(got) != "kept" {
		t.Errorf("data on the disk after moving VMs = %q, %v", got, err)
	}
	disks, _ := c.GetDisks(ctx, vm2)
	if diff := cmp.Diff([]cpi.DiskCID{disk}, disks); diff != "" {
		t.Errorf("get_disks (-want +got)\n%s", diff)
	}
	if err := c.DetachDisk(ctx, vm2, disk); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "vms", string(vm2), "var/vcap/store")); err != nil || !st.IsDir() {
		t.Errorf("store mount point after detach: %v", err)
	}
}

func TestAddressErrors(t *testing.T) {
	ctx := context.Background()
	c, _ := newCPI(t, func(cfg *local.Config) { cfg.DynamicRange = "127.112.0.0/30" })
	sc := stemcell(t, c)
	dyn := cpi.Networks{"d": {Type: "dynamic"}}
	seen := map[string]bool{}
	for i := range 2 {
		_, nets, err := c.CreateVM(ctx, cpi.VMSpec{AgentID: fmt.Sprint("a", i), Stemcell: sc, Networks: dyn})
		if err != nil {
			t.Fatal(err)
		}
		seen[nets["d"].IP] = true
	}
	if !seen["127.112.0.1"] || !seen["127.112.0.2"] {
		t.Errorf("dynamic addresses = %v, want both hosts of 127.112.0.0/30", seen)
	}
	tests := []struct {
		nets cpi.Networks
		want string
	}{
		{dyn, "no free address in 127.112.0.0/30"},
		{cpi.Networks{"m": {Type: "manual", IP: "10.0.0.5"}}, `address "10.0.0.5" is not in 127.0.0.0/8`},
		{cpi.Networks{"m": {Type: "manual", IP: "127.112.0.1"}}, "address 127.112.0.1 is already held by VM vm-"},
		{cpi.Networks{"m": {Type: "manual", IP: "127.113.0.1", CloudProperties: []byte(`{"net_id":"x"}`)}}, `unknown cloud property "net_id"`},
	}
	for _, tt := range tests {
		_, _, err := c.CreateVM(ctx, cpi.VMSpec{AgentID: "x", Stemcell: sc, Networks: tt.nets})
		var e *cpi.Error
		if !errors.As(err, &e) || e.Kind != cpi.VMCreationFailed || e.OkToRetry || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("create_vm %v = %v; want a VMCreationFailed, not retryable, containing %q", tt.nets, err, tt.want)
		}
	}
	if vms, _ := c.ListVMs(ctx); len(vms) != 2 {
		t.Errorf("failed creates left VMs: %d listed, want 2", len(vms))
	}
}

func TestStemcellTarball(t *testing.T) {
	ctx := context.Background()
	c, dir := newCPI(t, nil)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	mf := []byte("name: bosh-local\nversion: '7'\napi_version: 3\n")
	tw.WriteHeader(&tar.Header{Name: "./stemcell.MF", Mode: 0o644, Size: int64(len(mf)), Typeflag: tar.TypeReg})
	tw.Write(mf)
	tw.WriteHeader(&tar.Header{Name: "../escape", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	zw.Close()
	tgz := filepath.Join(t.TempDir(), "stemcell.tgz")
	os.WriteFile(tgz, buf.Bytes(), 0o644)
	sc, err := c.CreateStemcell(ctx, tgz, []byte(`{"name":"bosh-local","version":"7","infrastructure":"local"}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "stemcells", string(sc), "stemcell.MF"))
	if !bytes.Equal(got, mf) {
		t.Errorf("stored stemcell.MF = %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "stemcells", "escape")); err == nil {
		t.Error("tar entry escaped the stemcell dir")
	}
	// A plain file is the image itself.
	img := filepath.Join(t.TempDir(), "image")
	os.WriteFile(img, []byte("raw image"), 0o644)
	sc2, err := c.CreateStemcell(ctx, img, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "stemcells", string(sc2), "image")); string(got) != "raw image" {
		t.Errorf("stored image = %q", got)
	}
	for _, tt := range []struct{ path, props, want string }{
		{"/nonexistent/image", "", "no such file"},
		{"", `{"flavor":"x"}`, `unknown cloud property "flavor"`},
	} {
		if _, err := c.CreateStemcell(ctx, tt.path, []byte(tt.props)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("create_stemcell(%q, %s) = %v, want %q", tt.path, tt.props, err, tt.want)
		}
	}
}

func TestBadCIDsAreNotFound(t *testing.T) {
	ctx := context.Background()
	c, _ := newCPI(t, nil)
	for _, cid := range []string{"../../etc", "", ".lock", "vm/../x"} {
		if ok, err := c.HasVM(ctx, cpi.VMCID(cid)); ok || err != nil {
			t.Errorf("has_vm(%q) = %v, %v", cid, ok, err)
		}
		if err := c.DeleteVM(ctx, cpi.VMCID(cid)); err != nil {
			t.Errorf("delete_vm(%q) = %v", cid, err)
		}
		if err := c.SetVMMetadata(ctx, cpi.VMCID(cid), nil); !errors.Is(err, cpi.ErrVMNotFound) {
			t.Errorf("set_vm_metadata(%q) = %v", cid, err)
		}
	}
}

// BenchmarkCreateDeleteVMs creates and deletes 200 VMs, 20 at a time, and reports wall
// time and the director's own CPU (not the agents') per VM.
func BenchmarkCreateDeleteVMs(b *testing.B) {
	const vms, inFlight = 200, 20
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		c, _ := newCPI(b, nil)
		sc := stemcell(b, c)
		var before syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &before)
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
		var after syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) / vms
		b.ReportMetric(float64(elapsed.Microseconds())/1000/vms, "ms/vm")
		b.ReportMetric(float64(cpu.Microseconds())/1000, "cpu-ms/vm")
		b.StartTimer()
	}
}

func TestListVMsSweepsLeftovers(t *testing.T) {
	c, dir := newCPI(t, nil)
	old := filepath.Join(dir, "vms", ".deleted-vm-x-1")
	fresh := filepath.Join(dir, "vms", ".deleted-vm-y-2")
	for _, p := range []string{old, fresh} {
		os.MkdirAll(filepath.Join(p, "var"), 0o755)
	}
	long := time.Now().Add(-time.Hour)
	os.Chtimes(old, long, long)
	vms, err := c.ListVMs(context.Background())
	if err != nil || len(vms) != 0 {
		t.Fatalf("list_vms = %v, %v", vms, err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an hour-old leftover survived: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh one (maybe still being removed) was touched: %v", err)
	}
}

// A director killed between starting a VM's agent and recording its pid leaves a VM
// without agent.pid: deleting it must still end the agent.
func TestDeleteVMWithoutAgentPid(t *testing.T) {
	ctx := context.Background()
	c, dir := newCPI(t, nil)
	vm, _, err := c.CreateVM(ctx, cpi.VMSpec{AgentID: "a", Stemcell: stemcell(t, c), Networks: cpi.Networks{"d": {Type: "dynamic"}}})
	if err != nil {
		t.Fatal(err)
	}
	pid := agentPid(t, dir, vm)
	if err := os.Remove(filepath.Join(dir, "vms", string(vm), "agent.pid")); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteVM(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Errorf("the agent (pid %d) of deleted VM %s still runs", pid, vm)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// A VM is listed only once it names its agent: a director killed mid create_vm finds
// what it made by the agent id of its write-ahead intent, or nothing is listed at all.
func TestListedVMsNameTheirAgent(t *testing.T) {
	ctx := context.Background()
	c, _ := newCPI(t, nil)
	sc := stemcell(t, c)
	done := make(chan error, 1)
	go func() {
		for i := range 4 {
			if _, _, err := c.CreateVM(ctx, cpi.VMSpec{AgentID: fmt.Sprintf("agent-%d", i), Stemcell: sc, Networks: cpi.Networks{"d": {Type: "dynamic"}}}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for {
		vms, err := c.ListVMs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, vm := range vms {
			if vm.AgentID == "" {
				t.Fatalf("VM %s is listed without its agent id", vm.CID)
			}
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return
		default:
		}
	}
}

func TestMissingAgent(t *testing.T) {
	c, dir := newCPI(t, func(cfg *local.Config) { cfg.AgentPath = "/nonexistent/bosun-agent" })
	_, _, err := c.CreateVM(context.Background(), cpi.VMSpec{AgentID: "a", Stemcell: stemcell(t, c), Networks: cpi.Networks{"d": {Type: "dynamic"}}})
	var e *cpi.Error
	if !errors.As(err, &e) || e.Kind != cpi.VMCreationFailed || e.OkToRetry || !strings.Contains(err.Error(), "start agent /nonexistent/bosun-agent") {
		t.Fatalf("create_vm with a missing agent = %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "vms"))
	leases, _ := os.ReadDir(filepath.Join(dir, "ips"))
	if len(entries) != 0 || len(leases) != 0 {
		t.Errorf("a failed create left %d VM dirs and %d address leases", len(entries), len(leases))
	}
}
