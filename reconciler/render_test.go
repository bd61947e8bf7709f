package reconciler

import (
	"bytes"
	"context"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	repotemplate "github.com/bosun-gitops/bosun/repo-template"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// templateFS is the repo-template as a MapFS, with files replaced (empty content deletes).
func templateFS(t testing.TB, edits map[string]string) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(repotemplate.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(repotemplate.FS(), p)
		m[p] = &fstest.MapFile{Data: b, Mode: 0o644}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, c := range edits {
		if c == "" {
			delete(m, p)
			continue
		}
		m[p] = &fstest.MapFile{Data: []byte(c), Mode: 0o644}
	}
	return m
}

func TestRenderTemplatePlansAndBuildsTask(t *testing.T) {
	ctx := testCtx(t)
	rr := &Renderer{}
	rd, err := rr.Render(ctx, "abc", templateFS(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	d := rd.Deployments["demo"]
	if d == nil || len(rd.Deployments) != 1 {
		t.Fatalf("deployments = %v; want demo", rd.Names())
	}
	if got := d.Desired.Groups[0]; got.Name != "web" || got.Instances != 2 || got.Stemcell.OS != "local" || got.Jobs[0].Version == "" {
		t.Fatalf("desired group = %+v", got)
	}
	n := 0
	p, err := plan.Compute(d.Desired, plan.Observed{}, plan.Options{NewID: func() string {
		n++
		return []string{"", "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"}[n]
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Groups) != 1 || len(p.Groups[0].Instances) != 2 || p.Groups[0].Instances[0].Action != plan.Create {
		t.Fatalf("plan = %s", p)
	}
	if b := p.Groups[0].Batches; len(b) < 2 || b[0].Kind != plan.BatchCanary || len(b[0].Instances) != 1 {
		t.Fatalf("batches = %+v; want one canary first", b)
	}
	blobs, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	task, err := BuildTask(ctx, rd, d, p, blobs, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(task.Instances) != 2 || len(task.Packages) != 1 || task.Packages[0].Name != "greeter" || task.Stemcell.OS != "local" {
		t.Fatalf("task = %+v", task)
	}
	if task.Compilation.Workers != 2 || len(task.Compilation.Networks) != 2 {
		t.Fatalf("compilation = %+v", task.Compilation)
	}
	for _, in := range task.Instances {
		ip := in.VM.Networks["default"].IP
		if !strings.HasPrefix(ip, "127.77.0.") || in.VM.Networks["default"].Netmask != "255.255.255.0" {
			t.Errorf("instance %s network = %+v", in.ID, in.VM.Networks)
		}
		rc, err := blobs.Get(ctx, in.RenderedTemplates)
		if err != nil {
			t.Fatal(err)
		}
		files, err := untgzForTest(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		bpm := string(files["web/config/bpm.yml"])
		for _, want := range []string{`"` + ip + `:8080"`, `"Hello from Bosun"`, `"web/` + in.ID + `"`} {
			if !strings.Contains(bpm, want) {
				t.Errorf("bpm.yml of %s lacks %s:\n%s", in.ID, want, bpm)
			}
		}
		for _, c := range task.Compilation.Networks {
			if c["default"].IP == ip {
				t.Errorf("compilation worker got instance address %s", ip)
			}
		}
	}
}

func TestRenderDigestMovesOnlyWithInputs(t *testing.T) {
	ctx := testCtx(t)
	rr := &Renderer{}
	base, err := rr.Render(ctx, "a", templateFS(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := rr.Render(ctx, "b", templateFS(t, map[string]string{"README.md": "changed\n", "policies/extra.rego": "package policies.extra\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if base.Deployments["demo"].Digest != readme.Deployments["demo"].Digest {
		t.Error("a README and policy change moved the demo's digest")
	}
	m, _ := fs.ReadFile(repotemplate.FS(), "deployments/demo/manifest.yml")
	greet, err := rr.Render(ctx, "c", templateFS(t, map[string]string{"deployments/demo/manifest.yml": strings.Replace(string(m), "Hello from Bosun", "Bonjour", 1)}))
	if err != nil {
		t.Fatal(err)
	}
	if base.Deployments["demo"].Digest == greet.Deployments["demo"].Digest {
		t.Error("a new greeting did not move the digest")
	}
}

func TestRenderBadInput(t *testing.T) {
	m, _ := fs.ReadFile(repotemplate.FS(), "deployments/demo/manifest.yml")
	manifestWith := func(old, new string) string { return strings.Replace(string(m), old, new, 1) }
	tests := []struct {
		name  string
		edits map[string]string
		want  []string
	}{
		{"broken yaml", map[string]string{"deployments/demo/manifest.yml": manifestWith("instances: 2", "instances: [2")}, []string{"deployments/demo/manifest.yml:"}},
		{"unknown vm_type", map[string]string{"deployments/demo/manifest.yml": manifestWith("vm_type: default", "vm_type: huge")}, []string{"deployments/demo/manifest.yml:", "huge"}},
		{"missing release", map[string]string{"deployments/demo/manifest.yml": strings.ReplaceAll(manifestWith("- name: demo\n  version: latest", "- name: nginx\n  version: latest"), "release: demo", "release: nginx")}, []string{"deployments/demo/manifest.yml:", `release "nginx"`}},
		{"job not in release", map[string]string{"deployments/demo/manifest.yml": manifestWith("  - name: web\n    release: demo", "  - name: db\n    release: demo")}, []string{"deployments/demo/manifest.yml:", `job "db" is not in release demo`}},
		{"release version", map[string]string{"deployments/demo/manifest.yml": manifestWith("  version: latest\n\nstemcells", "  version: \"7\"\n\nstemcells")}, []string{"release demo version \"7\""}},
		{"no stemcell", map[string]string{"stemcells/local.yml": ""}, []string{"stemcell default local/latest"}},
		{"name mismatch", map[string]string{"deployments/demo/manifest.yml": manifestWith("name: demo", "name: other")}, []string{`name is "other" but the directory is "demo"`}},
		{"bosun.yml unknown key", map[string]string{"bosun.yml": "status_branch: x\nnope: 1\n"}, []string{"bosun.yml:2: unknown key nope"}},
		{"bosun.yml broken", map[string]string{"bosun.yml": "deployments: {\n"}, []string{"bosun.yml:"}},
		{"broken cloud-config", map[string]string{"cloud-config.yml": "azs: [\n"}, []string{"cloud-config.yml:"}},
		{"missing cloud-config", map[string]string{"cloud-config.yml": ""}, []string{"cloud-config.yml: missing"}},
		{"manifest missing", map[string]string{"deployments/demo/manifest.yml": "", "deployments/demo/ops/x.yml": "[]\n"}, []string{"deployments/demo/manifest.yml: missing"}},
		{"missing variable", map[string]string{"deployments/demo/manifest.yml": manifestWith("Hello from Bosun", "((greeting))")}, []string{"greeting"}},
		{"release ref without sha1", map[string]string{"releases/other.yml": "name: other\nurl: file:///nonexistent.tgz\n"}, []string{"releases/other.yml", "sha1"}},
		{"release ref bad sha1", map[string]string{"releases/other.yml": "name: other\nurl: file:///etc/hostname\nsha1: 0000\n"}, []string{"releases/other.yml", "sha1 mismatch"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := (&Renderer{}).Render(testCtx(t), "x", templateFS(t, tt.edits))
			if err == nil {
				t.Fatal("rendered")
			}
			t.Log(err)
			if _, ok := err.(*RenderError); !ok {
				t.Fatalf("error %T %v is not a *RenderError", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestRenderGeneratesVariablesOnce(t *testing.T) {
	ctx := testCtx(t)
	m, _ := fs.ReadFile(repotemplate.FS(), "deployments/demo/manifest.yml")
	withVar := strings.Replace(string(m), "greeting: Hello from Bosun", "greeting: Hello from Bosun\n      secret: ((admin_password))", 1) +
		"\nvariables:\n- name: admin_password\n  type: password\n"
	vars := &MemoryVariables{}
	rr := &Renderer{Vars: vars}
	fsys := templateFS(t, map[string]string{"deployments/demo/manifest.yml": withVar})
	a, err := rr.Render(ctx, "a", fsys)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rr.Render(ctx, "b", fsys)
	if err != nil {
		t.Fatal(err)
	}
	if a.Deployments["demo"].Digest != b.Deployments["demo"].Digest {
		t.Fatal("the second render generated the password again")
	}
	if len(a.Secrets) != 1 || len(a.Secrets[0]) < 16 {
		t.Fatalf("secrets = %d values; want the generated password", len(a.Secrets))
	}
	snap := a.Snapshot.Deployments["demo"]
	if !strings.Contains(fmtAny(snap), a.Secrets[0]) {
		t.Fatal("the snapshot lost the interpolated value (policy.Evaluate redacts it, given Secrets)")
	}
}

func fmtAny(v any) string {
	var b bytes.Buffer
	b.WriteString(strings.TrimSpace(strings.ReplaceAll(sprint(v), "\n", " ")))
	return b.String()
}

func TestBuildTaskResolvesLinks(t *testing.T) {
	ctx := testCtx(t)
	m, _ := fs.ReadFile(repotemplate.FS(), "deployments/demo/manifest.yml")
	manifest := strings.Replace(string(m), "releases:\n", "releases:\n- name: client\n  version: latest\n", 1) +
		"  - name: client\n    release: client\n"
	edits := map[string]string{
		"deployments/demo/manifest.yml":                    manifest,
		"releases/client/config/final.yml":                 "name: client\n",
		"releases/client/jobs/client/spec":                 "name: client\ntemplates:\n  peers.tmpl: config/peers\nconsumes:\n- name: backend\n  type: http\n",
		"releases/client/jobs/client/templates/peers.tmpl": `{{ with link "backend" }}port={{ .P "port" }}{{ range .Instances }} {{ .Address }}{{ end }}{{ end }}` + "\n",
	}
	fsys := templateFS(t, edits)
	fsys["releases/client/jobs/client/monit"] = &fstest.MapFile{Data: nil, Mode: 0o644}
	rd, err := (&Renderer{}).Render(ctx, "x", fsys)
	if err != nil {
		t.Fatal(err)
	}
	d := rd.Deployments["demo"]
	p, err := plan.Compute(d.Desired, plan.Observed{}, plan.Options{NewID: seqIDs("i")})
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	task, err := BuildTask(ctx, rd, d, p, blobs, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := blobs.Get(ctx, task.Instances["i-1"].RenderedTemplates)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files, err := untgzForTest(rc)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(files["client/config/peers"])); got != "port=8080 127.77.0.10 127.77.0.11" {
		t.Errorf("peers = %q; want the web link's port and both addresses", got)
	}
}

func TestSuspendedDeploymentIsJudgedButNotConverged(t *testing.T) {
	rd, err := (&Renderer{}).Render(testCtx(t), "x", templateFS(t, map[string]string{
		"bosun.yml": "deployment_order: [demo]\ndeployments:\n  demo:\n    suspended: true\n    drift: report\n    resurrection:\n      enabled: false\n      meltdown: 3\n",
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := rd.Config
	if !c.Suspended("demo") || c.DriftMode("demo") != DriftReport || c.Protected("demo") {
		t.Errorf("config = %+v", c)
	}
	res := c.EffectiveResurrection("demo")
	if res.Enabled == nil || *res.Enabled || res.Raw["meltdown"] != 3 {
		t.Errorf("resurrection = %+v", res)
	}
	if on := c.EffectiveResurrection("other").Enabled; on == nil || !*on {
		t.Error("resurrection is not on by default")
	}
	if got := c.Order([]string{"b", "demo", "a"}); strings.Join(got, ",") != "demo,a,b" {
		t.Errorf("order = %v", got)
	}
}
