package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/jackc/pgx/v5"

	"github.com/bosun-gitops/bosun/cpi/alicloud/fakealicloud"
	"github.com/bosun-gitops/bosun/cpi/openstack/fakeopenstack"
	"github.com/bosun-gitops/bosun/internal/localvm"
)

// cloudSetup is what a deploy against one fake cloud needs: the CPI and its config, the
// repository's cloud-config and stemcell reference for that cloud, the secrets that must
// leak nowhere, and how many VMs the cloud holds.
type cloudSetup struct {
	cpi         string
	config      []byte
	secrets     []string
	secretKey   string // the config key holding the secret
	cloudConfig string
	stemcell    string // stemcells/<cpi>.yml
	vms         func() int
	// faulted counts the injected faults the cloud answered with.
	faulted func() int
	// check makes the cloud's own checks after the deploy.
	check func(t *testing.T)
}

// TestCloudsJourney is issue #10's second "done when": the demo deployment converges
// through the reconciler on the OpenStack and Alibaba Cloud CPIs against their fakes, as
// it does on the local CPI. The fakes are real HTTP servers; a VM the CPI creates boots
// a real bosun-agent from the settings the CPI put in its user data, so the director
// reaches it over NATS and its job serves HTTP on the VM's (127.x) address. The cloud is
// busy (a throttled create, failed polls); a property change rolls out, a scale-down
// deletes a VM (and so its agent), and the CPI's credentials show nowhere.
func TestCloudsJourney(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the demo's Go package on agents booted by the fake clouds")
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, vms *localvm.Fleet, subnet string) cloudSetup
	}{
		{"openstack", openstackSetup},
		{"alicloud", alicloudSetup},
	} {
		t.Run(tc.name, func(t *testing.T) { cloudJourney(t, tc.setup) })
	}
}

// TestCloudsWrongCredentials: a director whose CPI config holds a wrong secret fails the
// deploy with the cloud's answer in the status commit, and neither the wrong secret nor
// the right one shows anywhere.
func TestCloudsWrongCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a director per fake cloud")
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, vms *localvm.Fleet, subnet string) cloudSetup
		says  string
	}{
		{"openstack", openstackSetup, "401"},
		{"alicloud", alicloudSetup, "SignatureDoesNotMatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const wrong = "wrong-secret-Hh4uX9"
			run := startOnCloud(t, tc.setup, wrong)
			msg, sf := run.m.awaitStatus(run.d, run.first, 5*time.Minute)
			if sf.Result != "failed" || sf.Error == nil || !strings.Contains(sf.Error.Message, tc.says) {
				t.Fatalf("deploy with a wrong secret: want failed, naming %q\n%s\n%+v", tc.says, msg, sf.Error)
			}
			t.Logf("status error: %s", sf.Error.Message)
			if n := run.vms.Running(); n != 0 {
				t.Errorf("%d VMs run with a wrong secret", n)
			}
			noSecrets(t, append(run.secrets, wrong), run.m, run.d, run.data)
			run.stop(t)
		})
	}
}

func openstackSetup(t *testing.T, vms *localvm.Fleet, subnet string) cloudSetup {
	cloud := fakeopenstack.New(t, fakeopenstack.Options{})
	cloud.OnServerCreate(func(s fakeopenstack.Server, userData []byte) { bootOrFail(t, vms, s.ID, userData) })
	cloud.OnServerDelete(func(s fakeopenstack.Server) { vms.Stop(s.ID) })
	netID, err := cloud.AddNetwork("bosun-local", subnet+".0/24")
	if err != nil {
		t.Fatal(err)
	}
	// A heavy stemcell, fetched by url as a team would reference one: the director
	// hands the CPI the whole BOSH tarball and root.img is what reaches Glance.
	const rootSize = 64 << 10
	tgz := boshStemcell(t, rootSize)
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(tgz) }))
	t.Cleanup(store.Close)
	sum := sha1.Sum(tgz)
	// A busy cloud: the first server create is throttled and two polls fail; the CPI
	// waits and retries, and the deploy does not notice.
	cloud.Inject(fakeopenstack.Fault{Method: "POST", Path: "/compute/v2.1/servers", Times: 1, Status: 429, RetryAfter: "1"})
	cloud.Inject(fakeopenstack.Fault{Method: "GET", Path: "/compute/v2.1/servers/", Times: 2, Status: 503})
	return cloudSetup{
		cpi: "openstack", config: cloud.ConfigJSON(), secrets: []string{fakeopenstack.Password}, secretKey: "api_key",
		cloudConfig: cloudConfigFor(subnet, `{availability_zone: nova}`, `{net_id: "`+netID+`"}`, `{instance_type: m1.small}`),
		stemcell: "name: bosh-openstack-kvm-ubuntu-jammy-go_agent\noperating_system: ubuntu-jammy\nversion: \"1.0\"\n" +
			"url: " + store.URL + "/bosh-stemcell-1.0-openstack-kvm-ubuntu-jammy-go_agent.tgz\nsha1: " + hex.EncodeToString(sum[:]) + "\n" +
			"cloud_properties: {name: bosh-openstack-kvm-ubuntu-jammy-go_agent, version: \"1.0\", disk_format: qcow2, container_format: bare}\n",
		vms: func() int { return len(cloud.Servers()) },
		check: func(t *testing.T) {
			images := cloud.Images()
			if len(images) != 1 || images[0].Size != rootSize || images[0].Status != "active" {
				t.Errorf("Glance images = %+v; want the stemcell's root.img (%d bytes), active", images, rootSize)
			}
		},
		faulted: func() int {
			n := 0
			for _, r := range cloud.Requests() {
				if r.Status == 429 || r.Status == 503 {
					n++
				}
			}
			return n
		},
	}
}

func alicloudSetup(t *testing.T, vms *localvm.Fleet, subnet string) cloudSetup {
	cloud := fakealicloud.New(t, fakealicloud.Options{})
	cloud.OnInstanceStart(func(i fakealicloud.Instance, userData []byte) { bootOrFail(t, vms, i.ID, userData) })
	cloud.OnInstanceStop(func(i fakealicloud.Instance) { vms.Stop(i.ID) })
	vsw, err := cloud.AddVSwitch(fakealicloud.ZoneA, subnet+".0/24")
	if err != nil {
		t.Fatal(err)
	}
	// A light stemcell naming an image per region, as BOSH's Alibaba Cloud stemcells
	// mostly are (heavy ones go through OSS; cpi/alicloud tests that path).
	image := cloud.AddImage("bosh-alicloud-kvm-ubuntu-jammy-go_agent", "Available")
	// A busy region: the first instance create is throttled and two polls fail; the
	// CPI waits and retries, and the deploy does not notice.
	cloud.Inject(fakealicloud.Fault{Action: "CreateInstance", Times: 1, Status: 400, Code: "Throttling.User", Message: "Request was denied due to user flow control."})
	cloud.Inject(fakealicloud.Fault{Action: "DescribeInstances", Times: 2, Status: 503})
	return cloudSetup{
		cpi: "alicloud", config: cloud.ConfigJSON(), secrets: []string{fakealicloud.AccessKeyID, fakealicloud.AccessKeySecret}, secretKey: "access_key_secret",
		cloudConfig: cloudConfigFor(subnet, `{availability_zone: `+fakealicloud.ZoneA+`}`,
			`{vswitch_id: `+vsw+`, security_group_id: `+fakealicloud.SecurityGroup+`}`, `{instance_type: ecs.g6.large}`),
		stemcell: lightStemcell(`{image_id: {` + fakealicloud.Region + `: ` + image + `}}`),
		vms:      func() int { return len(cloud.Instances()) },
		check:    func(*testing.T) {},
		faulted:  func() int { return cloud.Calls("CreateInstance", 400) + cloud.Calls("DescribeInstances", 503) },
	}
}

// cloudConfigFor is the template's cloud-config with a cloud's properties: one manual
// network on a 127.x subnet (the cloud's network or VSwitch on the same range), so the
// jobs of the local agents bind to addresses this machine has.
func cloudConfigFor(subnet, az, net, vm string) string {
	return fmt.Sprintf(`azs:
- name: z1
  cloud_properties: %[2]s
networks:
- name: default
  type: manual
  subnets:
  - range: %[1]s.0/24
    gateway: %[1]s.1
    reserved: [%[1]s.1-%[1]s.9]
    azs: [z1]
    dns: [127.0.0.1]
    cloud_properties: %[3]s
vm_types:
- name: default
  cloud_properties: %[4]s
disk_types:
- name: default
  disk_size: 1024
  cloud_properties: {}
compilation:
  workers: 2
  az: z1
  vm_type: default
  network: default
  reuse_compilation_vms: true
`, subnet, az, net, vm)
}

// boshStemcell is a BOSH stemcell tarball: stemcell.MF beside "image", a tarball holding
// a root.img of rootSize bytes.
func boshStemcell(t *testing.T, rootSize int) []byte {
	t.Helper()
	tgz := func(files ...[2]string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		tw := tar.NewWriter(zw)
		for _, f := range files {
			if err := tw.WriteHeader(&tar.Header{Name: f[0], Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f[1]))}); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write([]byte(f[1])); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	image := tgz([2]string{"root.img", string(make([]byte, rootSize))})
	mf := "name: bosh-openstack-kvm-ubuntu-jammy-go_agent\noperating_system: ubuntu-jammy\nversion: \"1.0\"\napi_version: 3\n" +
		"stemcell_formats: [openstack-qcow2]\ncloud_properties: {disk_format: qcow2, container_format: bare}\n"
	return tgz([2]string{"stemcell.MF", mf}, [2]string{"image", string(image)})
}

// lightStemcell references an image the cloud already has, as BOSH's light stemcells do.
func lightStemcell(props string) string {
	return "name: bosh-ubuntu-jammy-light\noperating_system: ubuntu-jammy\nversion: \"1.0\"\ncloud_properties: " + props + "\n"
}

// cloudRun is a director converging a fresh `bosun init` repository on a fake cloud.
type cloudRun struct {
	cloudSetup
	m   *manifestRepo
	d   *directorProc
	vms *localvm.Fleet
	// vmsDir holds each VM's root, its settings.json among its files.
	vmsDir string
	data   string
	first  string // the commit that moves the demo onto the cloud
}

// startOnCloud makes the cloud, commits the repository's move onto it and starts a
// director with the cloud's CPI. badSecret, when given, replaces the CPI config's secret.
func startOnCloud(t *testing.T, setupCloud func(*testing.T, *localvm.Fleet, string) cloudSetup, badSecret string) *cloudRun {
	base := reachableTempDir(t)
	dir := filepath.Join(base, "repo")
	if out, err := exec.Command(directorBinary(t), "init", dir).CombinedOutput(); err != nil {
		t.Fatalf("bosun init: %v\n%s", err, out)
	}
	agentBinary(t)
	vmsDir := filepath.Join(base, "vms")
	vms := localvm.New(filepath.Join(filepath.Dir(directorBinary(t)), "bosun-agent"), vmsDir)
	t.Cleanup(vms.StopAll)
	// A subnet of its own, so runs in parallel (other helpers', other journeys) never
	// collide on addresses.
	var r [2]byte
	_, _ = rand.Read(r[:])
	subnet := fmt.Sprintf("127.%d.%d", 100+int(r[0])%100, r[1])
	c := setupCloud(t, vms, subnet)

	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifestRepo{t: t, dir: dir, repo: repo}
	first := m.commitFiles("run on "+c.cpi, map[string]string{
		"cloud-config.yml":              c.cloudConfig,
		"stemcells/local.yml":           "",
		"stemcells/" + c.cpi + ".yml":   c.stemcell,
		"deployments/demo/manifest.yml": "", // edited below
	}, func(manifest string) string { return strings.Replace(manifest, "os: local", "os: ubuntu-jammy", 1) })

	config := c.config
	if badSecret != "" {
		var fields map[string]any
		if err := json.Unmarshal(config, &fields); err != nil {
			t.Fatal(err)
		}
		fields[c.secretKey] = badSecret
		if config, err = json.Marshal(fields); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(base, "cpi.json")
	if err := os.WriteFile(cfg, config, 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(base, "data")
	d := startDirector(t, "--dev", "--data-dir", data, "--repo", dir, "--cpi", c.cpi, "--cpi-config", cfg,
		"--listen", directorFreePort(t), "--nats-listen", directorFreePort(t), "--blobstore-listen", directorFreePort(t), "--poll-interval", "2s")
	d.healthy(t)
	return &cloudRun{cloudSetup: c, m: m, d: d, vms: vms, vmsDir: vmsDir, data: data, first: first}
}

// stop ends the director as an operator would and checks it exits cleanly.
func (r *cloudRun) stop(t *testing.T) {
	t.Helper()
	if err := r.d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := r.d.wait(t); code != 0 {
		t.Errorf("director exited %d on SIGTERM; output:\n%s", code, r.d.stderr)
	}
}

func cloudJourney(t *testing.T, setupCloud func(*testing.T, *localvm.Fleet, string) cloudSetup) {
	run := startOnCloud(t, setupCloud, "")
	c, m, d, vms, first, data := run.cloudSetup, run.m, run.d, run.vms, run.first, run.data

	// The first commit converges: both instances answer with the manifest's greeting.
	start := time.Now()
	msg, sf := m.awaitStatus(d, first, 15*time.Minute)
	t.Logf("%s: first deploy (stemcell, compile, 2 VMs) reported after %s", c.cpi, time.Since(start).Round(100*time.Millisecond))
	if sf.Result != "succeeded" || len(sf.Instances) != 2 {
		t.Fatalf("first deploy on %s: %s\n%+v\nagents:\n%s", c.cpi, msg, sf, vms.Output())
	}
	answers(t, sf, "Hello from Bosun")
	before := ids(sf)
	// Every job, package and template reached the agents over the director's HTTPS
	// blobstore, and the compiled packages came back through it.
	served := blobRequests(t, d)
	if served["GET 200 https"] == 0 || served["PUT 201 https"] == 0 {
		t.Errorf("the blobstore answered %v; want blob downloads and compile uploads over TLS", served)
	}
	t.Logf("%s: after the first deploy the blobstore answered %v", c.cpi, served)

	// A property change rolls out through the same CPI.
	greet := m.edit("greet in French", func(s string) string { return strings.Replace(s, "Hello from Bosun", "Bonjour", 1) })
	start = time.Now()
	msg, sf = m.awaitStatus(d, greet, 5*time.Minute)
	t.Logf("%s: property change on 2 instances reported after %s", c.cpi, time.Since(start).Round(100*time.Millisecond))
	if sf.Result != "succeeded" || !strings.Contains(msg, "Bosun-Result: succeeded") {
		t.Fatalf("new greeting on %s: %s\nagents:\n%s", c.cpi, msg, vms.Output())
	}
	answers(t, sf, "Bonjour")
	if got := ids(sf); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("instance ids moved: %v → %v", before, got)
	}
	// The new templates were fetched over HTTPS too.
	if now := blobRequests(t, d); now["GET 200 https"] <= served["GET 200 https"] {
		t.Errorf("the rollout fetched no blob over HTTPS: %v, then %v", served, now)
	}
	// The cloud holds the two instances' VMs and no compilation VM; each runs an agent.
	awaitVMs(t, c, vms, 2)

	// Scaling down deletes a VM through the cloud, which stops its agent.
	down := m.edit("scale down", func(s string) string { return strings.Replace(s, "instances: 2", "instances: 1", 1) })
	start = time.Now()
	msg, sf = m.awaitStatus(d, down, 5*time.Minute)
	t.Logf("%s: scale 2 → 1 reported after %s", c.cpi, time.Since(start).Round(100*time.Millisecond))
	if sf.Result != "succeeded" || len(sf.Instances) != 1 || sf.Instances[0].ID != before["web/0"] {
		t.Fatalf("scale down on %s: %s\n%+v; want web/0 (%s) alone", c.cpi, msg, sf, before["web/0"])
	}
	answers(t, sf, "Bonjour")
	awaitVMs(t, c, vms, 1)

	c.check(t)
	if n := c.faulted(); n != 3 {
		t.Errorf("the cloud answered %d injected faults; want 3 (one throttled create, two failed polls)", n)
	}
	// The agents were never told where the blobs lie on disk, so every blob they used came
	// through a signed URL, over TLS to a certificate of the director's CA; the
	// signatures, the key they are made with and the TLS keys leak nowhere.
	agentsUseHTTPS(t, run.vmsDir, data)
	if served := blobRequests(t, d); len(served) != 2 || served["GET 200 https"] == 0 || served["PUT 201 https"] == 0 {
		t.Errorf("the blobstore answered %v; want only successful downloads and uploads, over TLS", served)
	} else {
		t.Logf("%s: the blobstore answered %v", c.cpi, served)
	}
	key, err := os.ReadFile(filepath.Join(data, "blobstore.key"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := append(c.secrets, strings.TrimSpace(string(key)), "sig=")
	for _, f := range []string{"blobstore-ca.key", "blobstore-tls.key"} {
		b, err := os.ReadFile(filepath.Join(data, f))
		if err != nil {
			t.Fatal(err)
		}
		// The key's first base64 line stands for all of it.
		secrets = append(secrets, strings.Split(string(b), "\n")[1])
	}
	noSecrets(t, secrets, m, d, data)
	if out := vms.Output(); strings.Contains(out, "sig=") {
		t.Errorf("the agents' output holds a signed URL:\n%s", out)
	}
	run.stop(t)
}

// blobRequests reads the director's count of its blobstore's answers, keyed by
// "METHOD CODE SCHEME" (https: over TLS).
func blobRequests(t *testing.T, d *directorProc) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + d.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "bosun_blobstore_requests_total{")
		if !ok {
			continue
		}
		var code, method, scheme string
		var n float64
		if _, err := fmt.Sscanf(strings.NewReplacer(`code="`, "", `",method="`, " ", `",scheme="`, " ", `"}`, " ").Replace(rest), "%s %s %s %g", &code, &method, &scheme, &n); err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		got[method+" "+code+" "+scheme] = n
	}
	return got
}

// agentsUseHTTPS checks every VM the cloud booted (compilation VMs included) had settings
// naming no blobstore path, only the director's blobstore as BOSH names a dav one: its
// https:// endpoint and the director's CA (data dir's blobstore-ca.crt), which the
// agent verifies the blobstore's certificate with.
func agentsUseHTTPS(t *testing.T, vmsDir, dataDir string) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(vmsDir, "*", "var", "vcap", "bosh", "settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 3 {
		t.Errorf("%d VMs booted; want the 2 instances' and a compilation VM", len(paths))
	}
	ca, err := os.ReadFile(filepath.Join(dataDir, "blobstore-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d VMs' agents had the director's https blobstore and its CA in their settings", len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var s struct {
			Blobstore struct {
				Provider string `json:"provider"`
				Options  struct {
					Endpoint string `json:"endpoint"`
					TLS      struct {
						Cert struct {
							CA string `json:"ca"`
						} `json:"cert"`
					} `json:"tls"`
					Path string `json:"blobstore_path"`
				} `json:"options"`
			} `json:"blobstore"`
		}
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		bs := s.Blobstore
		// Only the blobstore part in messages: the settings also hold the agent's NATS
		// password.
		if bs.Provider != "dav" || !strings.HasPrefix(bs.Options.Endpoint, "https://") || bs.Options.TLS.Cert.CA != string(ca) {
			t.Errorf("%s: blobstore %s at %q with CA %v; want dav at https:// with the director's CA", p, bs.Provider, bs.Options.Endpoint, bs.Options.TLS.Cert.CA == string(ca))
		}
		if bs.Options.Path != "" || strings.Contains(string(b), dataDir) {
			t.Errorf("%s names a blobstore the agent could read directly", p)
		}
	}
}

// awaitVMs waits until the cloud holds n VMs and n agents run.
func awaitVMs(t *testing.T, c cloudSetup, vms *localvm.Fleet, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for c.vms() != n || vms.Running() != n {
		if time.Now().After(deadline) {
			t.Fatalf("the cloud holds %d VMs running %d agents; want %d", c.vms(), vms.Running(), n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// commitFiles writes (or, when empty, removes) files and edits the manifest, as one commit.
func (m *manifestRepo) commitFiles(msg string, files map[string]string, manifest func(string) string) string {
	m.t.Helper()
	wt, err := m.repo.Worktree()
	if err != nil {
		m.t.Fatal(err)
	}
	for name, body := range files {
		p := filepath.Join(m.dir, name)
		switch {
		case name == "deployments/demo/manifest.yml":
			b, err := os.ReadFile(p)
			if err != nil {
				m.t.Fatal(err)
			}
			body = manifest(string(b))
		case body == "":
			if _, err := wt.Remove(name); err != nil {
				m.t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			m.t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			m.t.Fatal(err)
		}
	}
	sig := &object.Signature{Name: "Dee Ployer", Email: "dee@example.com", When: time.Now()}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		m.t.Fatal(err)
	}
	return h.String()
}

// noSecrets checks the CPI's credentials appear nowhere the director writes: its output,
// the status branch (messages and files) and the tables a user reads tasks, events and
// instances from.
func noSecrets(t *testing.T, secrets []string, m *manifestRepo, d *directorProc, data string) {
	t.Helper()
	var where []struct{ name, text string }
	add := func(name, text string) { where = append(where, struct{ name, text string }{name, text}) }
	add("director output", d.stderr.String())

	ref, err := m.repo.Reference(plumbing.NewBranchReferenceName("bosun/status"), true)
	if err != nil {
		t.Fatal(err)
	}
	iter, err := m.repo.Log(&git.LogOptions{From: ref.Hash()})
	if err != nil {
		t.Fatal(err)
	}
	defer iter.Close()
	err = iter.ForEach(func(c *object.Commit) error {
		add("status commit "+c.Hash.String()[:7], c.Message)
		files, err := c.Files()
		if err != nil {
			return err
		}
		return files.ForEach(func(f *object.File) error {
			s, err := f.Contents()
			add("status commit "+c.Hash.String()[:7]+" "+f.Name, s)
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}

	_, port := postmaster(t, data)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgSocketURL(data, port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, table := range []string{"tasks", "task_events", "events", "revisions", "instances", "vms", "intents", "stemcell_uploads"} {
		rows, err := conn.Query(ctx, "SELECT t::text FROM "+table+" t")
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		if table == "task_events" && len(lines) == 0 {
			t.Errorf("no task events to check")
		}
		add("table "+table, strings.Join(lines, "\n"))
	}
	for _, w := range where {
		for _, s := range secrets {
			if strings.Contains(w.text, s) {
				t.Errorf("%s holds the CPI's credential %q", w.name, s)
			}
		}
	}
}

// bootOrFail boots a fake cloud's VM as a local agent; the fake calls it from its own
// goroutine, so a failure is reported, not fatal.
func bootOrFail(t *testing.T, vms *localvm.Fleet, id string, userData []byte) {
	if err := vms.Boot(id, userData); err != nil {
		t.Error(err)
	}
}
