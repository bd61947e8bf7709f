package converge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/blobstore"
	bloblocal "github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/blobstore/signed"
	"github.com/bosun-gitops/bosun/bus"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/local"
	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/release"
	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
)

// localEnv is what the local-CPI tests share: one database, one bus, one blobstore and
// one release, so the demo's package compiles once for all of them.
type localEnv struct {
	store     *postgres.Store
	srv       *bus.Server
	client    *protocol.Client
	blobs     *bloblocal.Store
	blobDir   string
	agentPath string
	rel       *release.Release
	relBlobs  *release.Blobs
	renderer  *release.Renderer
	signer    *signed.Signer
}

func newLocalEnv(t *testing.T, ctx context.Context) *localEnv {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the demo release's packaging needs go on PATH")
	}
	env := &localEnv{store: openStore(t), renderer: release.NewRenderer()}
	bin := t.TempDir()
	agent := filepath.Join(bin, "bosun-agent")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", agent, "github.com/bosun-gitops/bosun/cmd/bosun-agent").CombinedOutput(); err != nil {
		t.Fatalf("build bosun-agent: %v\n%s", err, out)
	}
	// The local CPI gives agents a bare environment; the demo's packaging script then
	// builds Go with a cold cache, which takes minutes. Share this machine's cache.
	gocache, _ := exec.Command("go", "env", "GOCACHE").Output()
	env.agentPath = filepath.Join(bin, "agent.sh")
	script := fmt.Sprintf("#!/bin/sh\nexport GOCACHE=%q HOME=%q\nexec %q \"$@\"\n", strings.TrimSpace(string(gocache)), os.Getenv("HOME"), agent)
	if err := os.WriteFile(env.agentPath, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := bus.Start(ctx, bus.Config{Listen: "127.0.0.1:0", Secret: []byte("converge-test-secret-0123")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	env.srv = srv
	nc, err := nats.Connect(srv.DirectorURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	env.client, err = protocol.NewClient(bus.Conn{NC: nc}, "converge-test", protocol.ClientOptions{Timeout: 30 * time.Second, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	env.blobDir = t.TempDir()
	if env.blobs, err = bloblocal.Open(env.blobDir); err != nil {
		t.Fatal(err)
	}
	if env.signer, err = signed.NewSigner([]byte("converge-test-blob-key"), 10*time.Minute, ""); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(signed.Handler(env.blobs, env.signer, testLog(t)))
	t.Cleanup(hs.Close)
	env.signer.Base = hs.URL
	if env.rel, err = release.Build(ctx, "../../repo-template/releases/demo"); err != nil {
		t.Fatal(err)
	}
	if env.relBlobs, err = env.rel.PutBlobs(ctx, env.blobs); err != nil {
		t.Fatal(err)
	}
	return env
}

// harness returns a harness for deployment name on a local CPI of its own (so its VM
// list is the deployment's); wrap may wrap the CPI. With useSigned, agents have no
// blobstore of their own and get every blob through signed URLs, as on a real cloud.
func (env *localEnv) harness(t *testing.T, name string, useSigned bool, wrap func(cpi.CPI) cpi.CPI) (*harness, *local.CPI, string) {
	t.Helper()
	dir := t.TempDir()
	lc, err := local.New(local.Config{Name: "local-" + name, Dir: dir, AgentPath: env.agentPath, StopGrace: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vms, _ := lc.ListVMs(context.Background())
		for _, vm := range vms {
			lc.DeleteVM(context.Background(), vm.CID)
		}
	})
	var c cpi.CPI = lc
	if wrap != nil {
		c = wrap(lc)
	}
	blobSettings := cpi.Blobstore{Provider: "local", Options: map[string]any{"blobstore_path": env.blobDir}}
	var signer converge.URLSigner
	if useSigned {
		blobSettings, signer = cpi.Blobstore{}, env.signer
	}
	exec, err := converge.New(converge.Config{
		CPI: c, CPIName: "local-" + name, Agents: env.client, Store: env.store, Blobs: env.blobs, Signer: signer, Log: testLog(t),
		Settings: func(id string) (cpi.AgentSettings, error) {
			return cpi.AgentSettings{
				Mbus:      env.srv.AgentURL(id),
				Blobstore: blobSettings,
				Env:       json.RawMessage(`{"bosun":{"heartbeat_interval":"30s","stable_after":"300ms"}}`),
			}, nil
		},
		AgentWait: time.Minute, PollInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	web := env.rel.Job("web")
	greeter := env.rel.Package("greeter")
	h := &harness{t: t, store: env.store, cpi: c, exec: exec, name: name,
		subnet: fmt.Sprintf("127.%d.%d", 100+rand.IntN(100), rand.IntN(250)),
		sc: converge.Stemcell{Name: "bosun-local", OS: "ubuntu-noble", Version: "1", APIVersion: 2,
			CloudProperties: mustJSON(map[string]string{"name": "bosun-local", "version": "1"})},
		jobs: []converge.Job{{Name: "web", Release: "demo", Version: web.Fingerprint, Blob: env.relBlobs.Jobs["web"], Packages: []string{"greeter"}}},
		pkgs: []converge.Package{{Name: "greeter", Release: "demo", Version: greeter.Fingerprint, Source: env.relBlobs.Packages["greeter"], Dependencies: greeter.Dependencies}},
	}
	h.render = func(in plan.InstancePlan, ip string, s spec) (blobstore.Digest, string) {
		out, err := env.renderer.Render(release.InstanceSpec{Deployment: name, Name: in.Group, Index: in.Index, ID: in.ID, AZ: in.AZ,
			Address: ip, IP: ip, Bootstrap: in.Bootstrap, PersistentDisk: s.diskMiB},
			[]release.JobInput{{Release: "demo", Job: web, Properties: map[string]any{"greeting": s.greeting, "port": s.port}}})
		if err != nil {
			t.Fatal(err)
		}
		d, err := env.blobs.Put(context.Background(), bytes.NewReader(out.Archive))
		if err != nil {
			t.Fatal(err)
		}
		return d, out.ConfigurationHash
	}
	return h, lc, dir
}

func randomPort() int { return 20000 + rand.IntN(20000) }

// answers polls an instance's greeter until it answers want.
func answers(t *testing.T, ctx context.Context, ip string, port int, want string) {
	t.Helper()
	url := fmt.Sprintf("http://%s:%d/", ip, port)
	c := http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			if strings.HasPrefix(last, want) {
				return
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never answered %q; last: %s", url, want, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestLocalCPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agents and compiles a Go program")
	}
	ctx := ctxFor(t, 9*time.Minute)
	env := newLocalEnv(t, ctx)

	t.Run("deploy update recreate scale fail", func(t *testing.T) {
		h, lc, dir := env.harness(t, "web-app", true, nil)
		port := randomPort()
		s := spec{instances: 2, greeting: "Hello", diskMiB: 10, port: port, watch: "100-60000"}
		res := h.deploy(ctx, s)
		if res.Failure != nil || res.Created != 2 {
			t.Fatalf("first deploy: %+v %+v", res, res.Failure)
		}
		for _, in := range res.Instances {
			answers(t, ctx, in.IPs[0], port, "Hello from web/"+in.ID)
		}
		h.checkNoOrphans(ctx)
		// Data written to the persistent disk.
		is := h.instances(ctx)
		for _, i := range is {
			if err := os.WriteFile(filepath.Join(dir, "vms", i.VMCID, "var/vcap/store/data.txt"), []byte("kept "+i.ID), 0o644); err != nil {
				t.Fatal(err)
			}
		}

		// Again: nothing to do, nothing recreated.
		before := h.vmCIDs(ctx)
		if tk := h.task(ctx, s); !tk.Plan.Empty() {
			t.Fatalf("second plan not empty:\n%v", tk.Plan)
		}
		res = h.deploy(ctx, s)
		if res.Failure != nil || res.Unchanged != 2 || !equalMaps(before, h.vmCIDs(ctx)) {
			t.Fatalf("second deploy: %+v", res)
		}

		// A property change: the canary first, same VMs, the new greeting.
		h.takeEvents()
		s.greeting = "Hola"
		res = h.deploy(ctx, s)
		if res.Failure != nil || res.Updated != 2 {
			t.Fatalf("update: %+v %+v", res, res.Failure)
		}
		checkCanaryFirst(t, h.takeEvents())
		if !equalMaps(before, h.vmCIDs(ctx)) {
			t.Errorf("the update recreated VMs")
		}
		for _, in := range res.Instances {
			answers(t, ctx, in.IPs[0], port, "Hola from web/"+in.ID)
		}

		// Recreate: new VMs, the disk and its data follow.
		h.recreate = true
		res = h.deploy(ctx, s)
		h.recreate = false
		if res.Failure != nil || res.Recreated != 2 {
			t.Fatalf("recreate: %+v %+v", res, res.Failure)
		}
		for _, i := range h.instances(ctx) {
			if i.VMCID == before[i.ID] {
				t.Errorf("%s kept VM %s", i.ID, i.VMCID)
			}
			got, err := os.ReadFile(filepath.Join(dir, "vms", i.VMCID, "var/vcap/store/data.txt"))
			if string(got) != "kept "+i.ID {
				t.Errorf("data on %s's disk after recreate: %q, %v", i.ID, got, err)
			}
			answers(t, ctx, i.IPs[0], port, "Hola from web/"+i.ID)
		}
		h.checkNoOrphans(ctx)

		// Recreate create-swap-delete: each new VM boots on a new address while the old
		// one still serves; then the disk and its data move over and the old VM goes.
		s.strategy = plan.CreateSwapDelete
		old := h.instances(ctx)
		h.recreate = true
		res = h.deploy(ctx, s)
		h.recreate = false
		if res.Failure != nil || res.Recreated != 2 {
			t.Fatalf("create-swap-delete: %+v %+v", res, res.Failure)
		}
		for i, in := range h.instances(ctx) {
			if in.VMCID == old[i].VMCID || in.IPs[0] == old[i].IPs[0] {
				t.Errorf("%s: VM %s → %s, address %v → %v", in.ID, old[i].VMCID, in.VMCID, old[i].IPs, in.IPs)
			}
			got, err := os.ReadFile(filepath.Join(dir, "vms", in.VMCID, "var/vcap/store/data.txt"))
			if string(got) != "kept "+in.ID {
				t.Errorf("data on %s's disk after create-swap-delete: %q, %v", in.ID, got, err)
			}
			answers(t, ctx, in.IPs[0], port, "Hola from web/"+in.ID)
		}
		h.checkNoOrphans(ctx)
		s.strategy = ""

		// Shrink the disk, twice: each time the agent copies the store onto a new disk,
		// the old one goes, the jobs come back on the same VMs. (The second time the
		// local CPI places the new disk at the store itself.)
		vms := h.vmCIDs(ctx)
		for _, size := range []int{5, 3} {
			old := h.instances(ctx)
			s.diskMiB = size
			res = h.deploy(ctx, s)
			if res.Failure != nil || res.Updated != 2 {
				t.Fatalf("migrate disk to %d MiB: %+v %+v", size, res, res.Failure)
			}
			for i, in := range h.instances(ctx) {
				if in.DiskCID == old[i].DiskCID {
					t.Errorf("%s kept disk %s", in.ID, in.DiskCID)
				}
				got, err := os.ReadFile(filepath.Join(dir, "vms", in.VMCID, "var/vcap/store/data.txt"))
				if string(got) != "kept "+in.ID {
					t.Errorf("data on %s's disk after migrating: %q, %v", in.ID, got, err)
				}
				answers(t, ctx, in.IPs[0], port, "Hola from web/"+in.ID)
			}
			if !equalMaps(vms, h.vmCIDs(ctx)) {
				t.Errorf("migrating the disk recreated VMs")
			}
			// Attached disks live in their VMs; the local CPI keeps a record of each.
			if records, _ := filepath.Glob(filepath.Join(dir, "disks", "*.json")); len(records) != 2 {
				t.Errorf("disk records in the local CPI: %v", records)
			}
			h.checkNoOrphans(ctx)
		}
		s.diskMiB = 10

		// Scale 2 → 3 → 1.
		res = h.deploy(ctx, spec{instances: 3, greeting: "Hola", diskMiB: 10, port: port})
		if res.Failure != nil || res.Created != 1 || len(res.Instances) != 3 {
			t.Fatalf("scale up: %+v %+v", res, res.Failure)
		}
		answers(t, ctx, res.Instances[2].IPs[0], port, "Hola from web/"+res.Instances[2].ID)
		h.checkNoOrphans(ctx)
		res = h.deploy(ctx, spec{instances: 1, greeting: "Hola", diskMiB: 10, port: port})
		if res.Failure != nil || res.Deleted != 2 || len(res.Instances) != 1 {
			t.Fatalf("scale down: %+v %+v", res, res.Failure)
		}
		h.checkNoOrphans(ctx)
		res = h.deploy(ctx, spec{instances: 2, greeting: "Hola", diskMiB: 10, port: port})
		if res.Failure != nil || len(res.Instances) != 2 {
			t.Fatalf("scale up again: %+v %+v", res, res.Failure)
		}

		// A port already taken on every instance's address: the canary's process
		// cannot listen, the rollout stops there.
		bad := randomPort()
		for _, in := range res.Instances {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", in.IPs[0], bad))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
		}
		is = h.instances(ctx)
		res = h.deploy(ctx, spec{instances: 2, greeting: "Broken", diskMiB: 10, port: bad, watch: "100-3000"})
		f := res.Failure
		if f == nil {
			t.Fatalf("no failure: %+v", res)
		}
		if !strings.Contains(f.Instance, "web/0") || f.Process != "web" || !strings.Contains(f.LogTail, "address already in use") {
			t.Errorf("failure %+v", f)
		}
		answers(t, ctx, is[1].IPs[0], port, "Hola from web/"+is[1].ID) // untouched
		// The next good commit converges.
		res = h.deploy(ctx, spec{instances: 2, greeting: "Fixed", diskMiB: 10, port: port})
		if res.Failure != nil {
			t.Fatalf("fix: %+v", res.Failure)
		}
		for _, in := range res.Instances {
			answers(t, ctx, in.IPs[0], port, "Fixed from web/"+in.ID)
		}

		// Delete the deployment.
		res = h.deploy(ctx, spec{deleted: true})
		if res.Failure != nil || len(res.Instances) != 0 {
			t.Fatalf("delete: %+v %+v", res, res.Failure)
		}
		if vms, _ := lc.ListVMs(ctx); len(vms) != 0 {
			t.Errorf("VMs left: %+v", vms)
		}
		if disks, _ := os.ReadDir(filepath.Join(dir, "disks")); len(disks) != 0 {
			t.Errorf("disks left: %v", disks)
		}
	})

	// The package is compiled now; the rest run side by side.
	t.Run("parallel", func(t *testing.T) {
		t.Run("crash and recover", func(t *testing.T) {
			t.Parallel()
			testCrashAndRecover(t, ctx, env)
		})
		t.Run("actions", func(t *testing.T) {
			t.Parallel()
			testActions(t, ctx, env)
		})
	})
}

func testCrashAndRecover(t *testing.T, ctx context.Context, env *localEnv) {
	var crash *crashAfter
	h, lc, _ := env.harness(t, "crashy", false, func(c cpi.CPI) cpi.CPI {
		crash = &crashAfter{forward: forward{c}, method: "create_vm", n: 3}
		return crash
	})
	port := randomPort()
	s := spec{instances: 4, greeting: "Hi", port: port, inFlight: "2"}
	runCtx, cancel := context.WithCancel(ctx)
	crash.cancel = cancel
	if _, err := h.exec.Run(runCtx, h.task(ctx, s), h.emit); !errors.Is(err, context.Canceled) {
		t.Fatalf("crashed run = %v", err)
	}
	crash.mu.Lock()
	crash.cancel = nil
	crash.mu.Unlock()
	if err := h.exec.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	res := h.deploy(ctx, s)
	if res.Failure != nil || len(res.Instances) != 4 {
		t.Fatalf("rerun: %+v %+v", res, res.Failure)
	}
	h.checkNoOrphans(ctx)
	vms, _ := lc.ListVMs(ctx)
	if len(vms) != 4 {
		t.Errorf("local CPI holds %d VMs, want 4", len(vms))
	}
	for _, in := range res.Instances {
		answers(t, ctx, in.IPs[0], port, "Hi from web/"+in.ID)
	}
}

func testActions(t *testing.T, ctx context.Context, env *localEnv) {
	h, lc, dir := env.harness(t, "acted", false, nil)
	port := randomPort()
	res := h.deploy(ctx, spec{instances: 2, greeting: "Yo", diskMiB: 10, port: port})
	if res.Failure != nil {
		t.Fatal(res.Failure)
	}
	target := res.Instances[0]
	act := func(p state.ActionParams) {
		t.Helper()
		res, err := h.exec.Act(ctx, h.name, []string{target.ID}, p, h.emit)
		if err != nil || res.Failure != nil {
			t.Fatalf("%+v: %v %+v", p, err, res.Failure)
		}
	}
	act(state.ActionParams{Action: state.ActionStop})
	c := http.Client{Timeout: time.Second}
	if _, err := c.Get(fmt.Sprintf("http://%s:%d/", target.IPs[0], port)); err == nil {
		t.Error("a stopped instance answers")
	}
	act(state.ActionParams{Action: state.ActionStart})
	answers(t, ctx, target.IPs[0], port, "Yo from web/"+target.ID)
	act(state.ActionParams{Action: state.ActionRestart})
	answers(t, ctx, target.IPs[0], port, "Yo from web/"+target.ID)
	i := h.instances(ctx)[0]
	os.WriteFile(filepath.Join(dir, "vms", i.VMCID, "var/vcap/store/data.txt"), []byte("still here"), 0o644)
	act(state.ActionParams{Action: state.ActionRecreate})
	j := h.instances(ctx)[0]
	if j.VMCID == i.VMCID {
		t.Error("recreate kept the VM")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "vms", j.VMCID, "var/vcap/store/data.txt")); string(got) != "still here" {
		t.Errorf("disk data after recreate: %q", got)
	}
	answers(t, ctx, target.IPs[0], port, "Yo from web/"+target.ID)
	act(state.ActionParams{Action: state.ActionStop, Hard: true})
	if vms, _ := lc.ListVMs(ctx); len(vms) != 1 {
		t.Errorf("after a hard stop the CPI holds %d VMs, want 1", len(vms))
	}
	act(state.ActionParams{Action: state.ActionStart})
	answers(t, ctx, target.IPs[0], port, "Yo from web/"+target.ID)
	h.checkNoOrphans(ctx)
}
