package agent_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/blobstore/signed"
	"github.com/bosun-gitops/bosun/bus"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bosun-agent-test")
	if err != nil {
		panic(err)
	}
	binDir = dir
	for _, b := range [][2]string{{"bosun-agent", "../cmd/bosun-agent"}, {"httpd", "./testdata/httpd"}} {
		cmd := exec.Command("go", append(append([]string{"build"}, buildFlags...), "-o", filepath.Join(dir, b[0]), b[1])...)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b[0], err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// director is the test's view of a director: NATS client, blobstore and signer.
type director struct {
	srv      *bus.Server
	client   *protocol.Client
	store    *local.Store
	storeDir string
	signer   *signed.Signer

	mu         sync.Mutex
	heartbeats map[string][]protocol.Heartbeat
	alerts     map[string][]protocol.Alert
}

func newDirector(t *testing.T) *director {
	t.Helper()
	ctx := context.Background()
	srv, err := bus.Start(ctx, bus.Config{Listen: "127.0.0.1:0", Secret: []byte("integration-test-secret")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.DirectorURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	client, err := protocol.NewClient(bus.Conn{NC: nc}, "test-director", protocol.ClientOptions{Timeout: 20 * time.Second, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d := &director{srv: srv, client: client, heartbeats: map[string][]protocol.Heartbeat{}, alerts: map[string][]protocol.Alert{}}
	d.storeDir = t.TempDir()
	if d.store, err = local.Open(d.storeDir); err != nil {
		t.Fatal(err)
	}
	d.signer, err = signed.NewSigner([]byte("blob-signing-key-0123"), time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(signed.Handler(d.store, d.signer, slog.New(slog.DiscardHandler)))
	t.Cleanup(hs.Close)
	d.signer.Base = hs.URL
	hm, err := nats.Connect(srv.MonitorURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hm.Close)
	if _, err := hm.Subscribe("hm.agent.>", func(m *nats.Msg) {
		parts := strings.Split(m.Subject, ".")
		id := parts[len(parts)-1]
		d.mu.Lock()
		defer d.mu.Unlock()
		switch parts[2] {
		case "heartbeat":
			var hb protocol.Heartbeat
			if err := json.Unmarshal(m.Data, &hb); err == nil {
				d.heartbeats[id] = append(d.heartbeats[id], hb)
			}
		case "alert":
			var al protocol.Alert
			if err := json.Unmarshal(m.Data, &al); err == nil {
				d.alerts[id] = append(d.alerts[id], al)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	hm.Flush()
	return d
}

func (d *director) put(t *testing.T, b []byte) protocol.BlobRef {
	t.Helper()
	dg, err := d.store.Put(context.Background(), bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return protocol.BlobRef{BlobstoreID: dg.Hex(), SHA1: string(dg), SignedURL: d.signer.SignGet(dg)}
}

// startAgent writes settings and starts the real binary in its own session, as the
// local CPI does.
func (d *director) startAgent(t *testing.T, id string, disks map[string]string) (root string) {
	t.Helper()
	root = t.TempDir()
	d.runAgent(t, id, root, disks)
	return root
}

// runAgent starts the agent binary on root and returns a function that kills it hard.
func (d *director) runAgent(t *testing.T, id, root string, disks map[string]string) (kill func()) {
	t.Helper()
	return d.runAgentWith(t, id, root, disks, map[string]any{"provider": "local", "options": map[string]any{"blobstore_path": d.storeDir}})
}

// runAgentWith is runAgent with the settings' blobstore section given.
func (d *director) runAgentWith(t *testing.T, id, root string, disks map[string]string, blobstore map[string]any) (kill func()) {
	t.Helper()
	settings := map[string]any{
		"agent_id":  id,
		"mbus":      d.srv.AgentURL(id),
		"blobstore": blobstore,
		"networks":  map[string]any{"default": map[string]any{"type": "manual", "ip": "127.0.0.1", "netmask": "255.0.0.0", "default": []string{"dns", "gateway"}}},
		"disks":     map[string]any{"persistent": disks},
		"env":       map[string]any{"bosun": map[string]any{"heartbeat_interval": "1s", "stable_after": "300ms"}},
		"vm":        map[string]any{"name": "vm-" + id},
	}
	path := filepath.Join(root, "var", "vcap", "bosh", "settings.json")
	os.MkdirAll(filepath.Dir(path), 0o755)
	b, _ := json.Marshal(settings)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "bosun-agent"), "--settings", path, "--root", root)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("agent did not exit on SIGTERM")
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the whole session, as delete_vm does
		if strings.Contains(stderr.String(), "DATA RACE") {
			t.Errorf("the agent binary raced")
		}
		if t.Failed() {
			t.Logf("agent %s stderr:\n%s", id, stderr.String())
		}
	})
	eventually(t, "agent answers ping", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return d.client.Ping(ctx, id)
	})
	return func() { cmd.Process.Signal(syscall.SIGKILL); <-exited }
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 30s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type file struct {
	name string
	mode int64
	body string
}

func tgz(t *testing.T, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, f.body)
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func untgz(t *testing.T, b []byte) map[string]string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		out[h.Name] = string(body)
	}
}

func (d *director) get(t *testing.T, r protocol.BlobResult) []byte {
	t.Helper()
	rc, err := d.store.Get(context.Background(), blobstore.Digest(r.SHA1))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpGet(addr string) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestAgentJourney(t *testing.T) {
	ctx := context.Background()
	d := newDirector(t)
	diskDir := t.TempDir()
	const id = "agent-1"
	root := d.startAgent(t, id, map[string]string{"disk-1": diskDir})
	vcap := filepath.Join(root, "var", "vcap")

	// The first heartbeat comes at once, with BOSH's shape and no job yet.
	eventually(t, "first heartbeat", func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if len(d.heartbeats[id]) == 0 {
			return errors.New("none yet")
		}
		if hb := d.heartbeats[id][0]; hb.Job != nil || hb.Vitals.Load == nil {
			return fmt.Errorf("first heartbeat %+v", hb)
		}
		return nil
	})

	info, err := d.client.Info(ctx, id)
	if err != nil || info.APIVersion != 1 {
		t.Fatalf("info = %+v, %v", info, err)
	}
	if _, err := d.client.Call(ctx, id, "no_such_method"); !protocol.IsUnknownMethod(err) {
		t.Fatalf("unknown method: %v", err)
	}

	// Compile: libgreet through signed URLs, then greeter depending on it through the
	// agent's own blobstore (BOSH's plain compile_package).
	httpdBin, err := os.ReadFile(filepath.Join(binDir, "httpd"))
	if err != nil {
		t.Fatal(err)
	}
	libSrc := d.put(t, tgz(t,
		file{"packaging", 0o644, "set -e\ncp greeting.txt \"$BOSH_INSTALL_TARGET/\"\n"},
		file{"greeting.txt", 0o644, "hello"},
	))
	lib, err := d.client.CompilePackageWithSignedURL(ctx, id, protocol.CompileWithSignedURL{
		PackageGetSignedURL: libSrc.SignedURL, UploadSignedURL: d.signer.SignPut(""), Digest: libSrc.SHA1, Name: "libgreet", Version: "1",
	})
	if err != nil {
		t.Fatal(err)
	}
	greeterSrc := d.put(t, tgz(t,
		file{"packaging", 0o644, "set -e\ncat \"$BOSH_PACKAGES_DIR/libgreet/greeting.txt\" > \"$BOSH_INSTALL_TARGET/greeting\"\n"},
	))
	greeter, err := d.client.CompilePackage(ctx, id, protocol.BlobRef{BlobstoreID: greeterSrc.BlobstoreID, SHA1: greeterSrc.SHA1}, "greeter", "2",
		map[string]protocol.CompileDependency{"libgreet": {Name: "libgreet", Version: "1", SHA1: lib.SHA1, BlobstoreID: lib.BlobstoreID}})
	if err != nil {
		t.Fatal(err)
	}
	if got := untgz(t, d.get(t, greeter))["greeting"]; got != "hello" {
		t.Fatalf("compiled greeter's greeting = %q: the dependency was not installed first", got)
	}
	// The job's server comes as an already compiled package, as from a compiled release.
	httpdPkg := d.put(t, tgz(t, file{"bin/httpd", 0o755, string(httpdBin)}))

	// A failing packaging script: the error keeps the tail of its output.
	bad := d.put(t, tgz(t, file{"packaging", 0o644, "echo compiling-badly >&2\nexit 7\n"}))
	_, err = d.client.CompilePackage(ctx, id, protocol.BlobRef{BlobstoreID: bad.BlobstoreID, SHA1: bad.SHA1}, "broken", "1", nil)
	if protocol.CodeOf(err) != protocol.CodeCompileFailed || !strings.Contains(err.Error(), "compiling-badly") || !strings.Contains(err.Error(), "broken/1") {
		t.Fatalf("failing compile: %v (code %s)", err, protocol.CodeOf(err))
	}

	// Apply a job whose process serves HTTP on the instance address.
	addr := freePort(t)
	spec := func(message, hash string) protocol.ApplySpec {
		archive := d.put(t, tgz(t,
			file{"web/config/bpm.yml", 0o644, "processes:\n- name: httpd\n  executable: /var/vcap/packages/httpd/bin/httpd\n  args: [--listen, " + addr + ", --message-file, /var/vcap/jobs/web/config/message]\n  limits: {open_files: 256}\n"},
			file{"web/config/message", 0o644, message},
			file{"web/bin/pre-start", 0o755, "#!/bin/sh\necho pre-start ran > \"$BOSUN_VCAP/sys/log/web/pre-start.marker\"\n"},
			file{"web/bin/drain", 0o755, "#!/bin/sh\necho \"$@\" >> \"$BOSUN_VCAP/sys/log/web/drain.args\"\nif [ ! -f \"$BOSUN_VCAP/sys/log/web/drain.once\" ]; then touch \"$BOSUN_VCAP/sys/log/web/drain.once\"; echo -1; else echo 0; fi\n"},
		))
		return protocol.ApplySpec{
			Deployment: "demo", Name: "web", Index: 0, ID: "uuid-web-0",
			Job: protocol.JobSpec{Name: "web", Templates: []protocol.JobTemplate{{Name: "web", Version: "v1"}}},
			Packages: map[string]protocol.PackageSpec{
				"greeter": {Name: "greeter", Version: "2", BlobRef: protocol.BlobRef{BlobstoreID: greeter.BlobstoreID, SHA1: greeter.SHA1, SignedURL: d.signer.SignGet(blobstore.Digest(greeter.SHA1))}},
				"httpd":   {Name: "httpd", Version: "1", BlobRef: httpdPkg},
			},
			Networks:                 map[string]protocol.Network{"default": {IP: "127.0.0.1"}},
			ConfigurationHash:        hash,
			RenderedTemplatesArchive: &archive,
		}
	}
	first := spec("hello from rendered-property-42", "h1")
	if err := d.client.Prepare(ctx, id, first); err != nil {
		t.Fatal(err)
	}
	if err := d.client.Apply(ctx, id, first); err != nil {
		t.Fatal(err)
	}
	if err := d.client.RunScript(ctx, id, "pre-start", nil); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(vcap, "sys/log/web/pre-start.marker")); err != nil || !strings.Contains(string(b), "pre-start ran") {
		t.Fatalf("pre-start marker: %q, %v", b, err)
	}
	if err := d.client.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	state := waitState(t, d, id, protocol.JobRunning)
	if len(state.Processes) != 1 || state.Processes[0].Name != "httpd" || state.Processes[0].PID == 0 || state.Deployment != "demo" {
		t.Fatalf("state = %+v", state)
	}
	body, err := httpGet(addr)
	if err != nil || !strings.Contains(body, "hello from rendered-property-42") {
		t.Fatalf("GET %s = %q, %v", addr, body, err)
	}
	if b, err := os.ReadFile(filepath.Join(vcap, "packages/greeter/greeting")); err != nil || string(b) != "hello" {
		t.Fatalf("installed greeter package: %q, %v", b, err)
	}
	// A package whose content does not match its digest is refused, naming the package.
	tampered := first
	tampered.Packages = map[string]protocol.PackageSpec{"evil": {Name: "evil", Version: "1", BlobRef: protocol.BlobRef{
		BlobstoreID: httpdPkg.BlobstoreID, SHA1: string(blobstore.DigestOf([]byte("something else"))), SignedURL: httpdPkg.SignedURL,
	}}}
	if err := d.client.Prepare(ctx, id, tampered); protocol.CodeOf(err) != protocol.CodeBlobFetch || !strings.Contains(err.Error(), "package evil") || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("prepare with a tampered blob: %v", err)
	}
	full, err := d.client.GetState(ctx, id, true)
	if raw, _ := json.Marshal(full); strings.Contains(string(raw), "sig=") {
		t.Fatalf("get_state echoes signed URLs: %s", raw)
	}
	if err != nil || full.Vitals == nil || full.Vitals.Disk["ephemeral"].Percent == "" || full.Processes[0].Mem == nil {
		t.Fatalf("full state = %+v, %v", full, err)
	}
	eventually(t, "heartbeat reports the running job", func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		hbs := d.heartbeats[id]
		hb := hbs[len(hbs)-1]
		if hb.Job == nil || *hb.Job != "web" || hb.JobState != protocol.JobRunning || hb.NumberOfProcesses != 1 || hb.NodeID != "uuid-web-0" {
			return fmt.Errorf("last heartbeat %+v", hb)
		}
		return nil
	})

	// Kill the process: the agent raises an alert and restarts it.
	oldPID := state.Processes[0].PID
	syscall.Kill(oldPID, syscall.SIGKILL)
	eventually(t, "alert for the killed process", func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, al := range d.alerts[id] {
			if strings.Contains(al.Title, "httpd (127.0.0.1)") && al.Severity == protocol.SeverityAlert {
				return nil
			}
		}
		return fmt.Errorf("alerts %+v", d.alerts[id])
	})
	eventually(t, "restarted process serves again", func() error {
		st, err := d.client.GetState(ctx, id, false)
		if err != nil {
			return err
		}
		if st.JobState != protocol.JobRunning || st.Processes[0].PID == oldPID {
			return fmt.Errorf("job_state %s pid %d", st.JobState, st.Processes[0].PID)
		}
		_, err = httpGet(addr)
		return err
	})

	// A new rendering under the same bpm.yml, applied and started without a stop,
	// restarts the process on the new configuration.
	second := spec("hello from rendered-property-43", "h1b")
	if err := d.client.Apply(ctx, id, second); err != nil {
		t.Fatal(err)
	}
	if err := d.client.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new configuration served", func() error {
		body, err := httpGet(addr)
		if err == nil && !strings.Contains(body, "rendered-property-43") {
			return fmt.Errorf("still %q", body)
		}
		return err
	})

	// Drain for an update: dynamic drain (-1, then 0) is followed by the agent.
	next := second
	next.ConfigurationHash = "h2"
	if n, err := d.client.Drain(ctx, id, "update", &next); err != nil || n != 0 {
		t.Fatalf("drain = %d, %v", n, err)
	}
	args, _ := os.ReadFile(filepath.Join(vcap, "sys/log/web/drain.args"))
	if want := "job_unchanged hash_changed\njob_check_status hash_unchanged\n"; string(args) != want {
		t.Fatalf("drain was called with %q, want %q", args, want)
	}

	// Stop: nothing of the job is left running.
	st, _ := d.client.GetState(ctx, id, false)
	pid := st.Processes[0].PID
	if err := d.client.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st, err := d.client.GetState(ctx, id, false); err != nil || st.JobState != protocol.JobStopped {
		t.Fatalf("after stop: %+v, %v", st, err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("process %d still alive after stop", pid)
	}
	if _, err := httpGet(addr); err == nil {
		t.Fatal("job still answers after stop")
	}

	// A process that exits at once is failing, with its log tail, never running.
	crash := d.put(t, tgz(t,
		file{"web/config/bpm.yml", 0o644, "processes:\n- name: crasher\n  executable: /var/vcap/jobs/web/bin/crash\n"},
		file{"web/bin/crash", 0o755, "#!/bin/sh\necho database unreachable >&2\nexit 3\n"},
	))
	crashSpec := first
	crashSpec.RenderedTemplatesArchive = &crash
	if err := d.client.Apply(ctx, id, crashSpec); err != nil {
		t.Fatal(err)
	}
	if err := d.client.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	st = waitState(t, d, id, protocol.JobFailing)
	if !strings.Contains(st.Processes[0].LogTail, "database unreachable") {
		t.Fatalf("failing process log tail = %q", st.Processes[0].LogTail)
	}
	if err := d.client.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}

	// Logs come back as a tarball in the blobstore.
	logs, err := d.client.FetchLogs(ctx, id, "job", nil)
	if err != nil {
		t.Fatal(err)
	}
	files := untgz(t, d.get(t, logs))
	if !strings.Contains(files["web/httpd.stdout.log"], "listening on") || !strings.Contains(files["web/crasher.stderr.log"], "database unreachable") {
		t.Fatalf("fetched logs: %v", keys(files))
	}
	signedLogs, err := d.client.FetchLogsWithSignedURL(ctx, id, protocol.FetchLogsWithSignedURL{SignedURL: d.signer.SignPut(""), LogType: "job", Filters: []string{"**/*.stderr.log"}})
	if err != nil {
		t.Fatal(err)
	}
	for name := range untgz(t, d.get(t, signedLogs)) {
		if !strings.HasSuffix(name, "/") && !strings.HasSuffix(name, ".stderr.log") {
			t.Fatalf("filtered logs contain %s", name)
		}
	}

	// Disks.
	if err := d.client.MountDisk(ctx, id, "disk-1"); err != nil {
		t.Fatal(err)
	}
	if disks, err := d.client.ListDisk(ctx, id); err != nil || len(disks) != 1 || disks[0] != "disk-1" {
		t.Fatalf("list_disk = %v, %v", disks, err)
	}
	os.WriteFile(filepath.Join(vcap, "store", "data"), []byte("kept"), 0o644)
	if b, _ := os.ReadFile(filepath.Join(diskDir, "data")); string(b) != "kept" {
		t.Fatal("store/ does not reach the disk")
	}
	if err := d.client.UnmountDisk(ctx, id, "disk-1"); err != nil {
		t.Fatal(err)
	}
	if disks, err := d.client.ListDisk(ctx, id); err != nil || len(disks) != 0 {
		t.Fatalf("list_disk after unmount = %v, %v", disks, err)
	}
	if err := d.client.MountDisk(ctx, id, "disk-unknown"); protocol.CodeOf(err) != protocol.CodeDisk {
		t.Fatalf("mount of an unknown disk: %v", err)
	}
	if err := d.client.UpdateSettings(ctx, id, map[string]any{"trusted_certs": "", "disk_associations": []any{}}); err != nil {
		t.Fatal(err)
	}
}

// TestAgentRestart: an agent killed without stopping its jobs, once restarted on the
// same root, ends the process groups it left and starts the jobs again.
func TestAgentRestart(t *testing.T) {
	ctx := context.Background()
	d := newDirector(t)
	const id = "agent-r"
	root := t.TempDir()
	kill := d.runAgent(t, id, root, nil)
	httpdBin, err := os.ReadFile(filepath.Join(binDir, "httpd"))
	if err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	archive := d.put(t, tgz(t,
		file{"web/config/bpm.yml", 0o644, "processes:\n- name: httpd\n  executable: /var/vcap/packages/httpd/bin/httpd\n  args: [--listen, " + addr + ", --message-file, /var/vcap/jobs/web/config/message]\n"},
		file{"web/config/message", 0o644, "survivor"},
	))
	spec := protocol.ApplySpec{
		Deployment: "demo", Name: "web", ID: "uuid-r",
		Job:                      protocol.JobSpec{Name: "web", Templates: []protocol.JobTemplate{{Name: "web", Version: "v1"}}},
		Packages:                 map[string]protocol.PackageSpec{"httpd": {Name: "httpd", Version: "1", BlobRef: d.put(t, tgz(t, file{"bin/httpd", 0o755, string(httpdBin)}))}},
		RenderedTemplatesArchive: &archive,
	}
	if err := d.client.Apply(ctx, id, spec); err != nil {
		t.Fatal(err)
	}
	if err := d.client.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	old := waitState(t, d, id, protocol.JobRunning).Processes[0].PID
	kill()
	d.runAgent(t, id, root, nil)
	st := waitState(t, d, id, protocol.JobRunning)
	if st.Processes[0].PID == old {
		t.Fatalf("still pid %d", old)
	}
	if syscall.Kill(old, 0) == nil {
		t.Fatalf("the old process %d was left running", old)
	}
	eventually(t, "restarted job serves", func() error {
		body, err := httpGet(addr)
		if err == nil && !strings.Contains(body, fmt.Sprintf("pid=%d", st.Processes[0].PID)) {
			return fmt.Errorf("answered by %q", body)
		}
		return err
	})
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func waitState(t *testing.T, d *director, id, want string) protocol.State {
	t.Helper()
	var st protocol.State
	eventually(t, "job_state "+want, func() error {
		var err error
		st, err = d.client.GetState(context.Background(), id, false)
		if err != nil {
			return err
		}
		if st.JobState != want {
			return fmt.Errorf("job_state %s, processes %+v", st.JobState, st.Processes)
		}
		return nil
	})
	return st
}

// TestAgentIsolation: with its own credentials (what the agent binary connects with),
// an agent cannot hear another agent's requests or the director's replies, nor publish
// heartbeats or alerts as another agent.
func TestAgentIsolation(t *testing.T) {
	d := newDirector(t)
	violations := make(chan error, 10)
	nc, err := nats.Connect(d.srv.AgentURL("agent-a"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		violations <- err
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, subject := range []string{"agent.agent-b", "director.>", "hm.agent.>"} {
		if _, err := nc.Subscribe(subject, func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		select {
		case err := <-violations:
			if !strings.Contains(err.Error(), "Permissions Violation") {
				t.Fatalf("subscribe %s: %v", subject, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("subscribe to %s was allowed", subject)
		}
	}
	nc.Publish("hm.agent.heartbeat.agent-b", []byte(`{"job_state":"running"}`))
	nc.Publish("hm.agent.alert.agent-b", []byte(`{"title":"forged"}`))
	nc.Publish("hm.agent.heartbeat.agent-a", []byte(`{"job_state":"running"}`))
	nc.Flush()
	eventually(t, "own heartbeat delivered", func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if len(d.heartbeats["agent-a"]) == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.heartbeats["agent-b"]) != 0 || len(d.alerts["agent-b"]) != 0 {
		t.Fatalf("agent-a published as agent-b: %v %v", d.heartbeats["agent-b"], d.alerts["agent-b"])
	}
}
