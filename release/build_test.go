package release

import (
	"bytes"
	"context"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// The expected fingerprints below were computed outside Go, from bosh-cli's documented
// chunk layout, with printf and sha256sum (see the comments), so these tests check the
// algorithm rather than the code against itself.
func TestFingerprintMatchesBoshCLI(t *testing.T) {
	pkgFS := fstest.MapFS{
		"packages/p/spec":      {Data: []byte("name: p\ndependencies: [z, y]\nfiles: [a/**/*]\n")},
		"packages/p/packaging": {Data: []byte("echo hi\n"), Mode: 0o755},
		"packages/y/spec":      {Data: []byte("name: y\n")},
		"packages/y/packaging": {Data: []byte("")},
		"packages/z/spec":      {Data: []byte("name: z\n")},
		"packages/z/packaging": {Data: []byte("")},
		"src/a/b.txt":          {Data: []byte("x"), Mode: 0o700},
		"src/a/l":              {Data: []byte("b.txt"), Mode: fs.ModeSymlink | 0o777},
		"jobs/j/spec":          {Data: []byte("name: j\ntemplates:\n  run: bin/run\n")},
		"jobs/j/monit":         {Data: []byte("check process j\n")},
		"jobs/j/templates/run": {Data: []byte("#!/bin/sh\n"), Mode: 0o744},
	}
	r, err := BuildFS(context.Background(), pkgFS, "r")
	if err != nil {
		t.Fatal(err)
	}
	// printf 'v2a/b.txtsha256:<sha256 "x">100755a/lsha256:<sha256 "b.txt">symlink' \
	//        'packagingsha256:<sha256 "echo hi\n">y,z' | sha256sum
	if got, want := r.Package("p").Fingerprint, "f38a76fb5687853c1f22b7dbe702595d2d45c2b856416731f1fff5f91fa2536e"; got != want {
		t.Errorf("package fingerprint = %s, want %s", got, want)
	}
	// printf 'v2job.MFsha256:<spec>100644monitsha256:<monit>100644templates/runsha256:<run>100755' | sha256sum
	if got, want := r.Job("j").Fingerprint, "2c3f9f645e9e79423930e8b374e7027a14ece5543709664cdc6d824fb1d0ce82"; got != want {
		t.Errorf("job fingerprint = %s, want %s", got, want)
	}
}

func TestBuildDemoIsDeterministicAndRoundTrips(t *testing.T) {
	ctx := context.Background()
	tarball := func() ([]byte, *Release) {
		r, err := Build(ctx, "../repo-template/releases/demo")
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := r.WriteTarball(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes(), r
	}
	a, r := tarball()
	b, _ := tarball()
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same tree gave different tarballs")
	}
	if r.Manifest.Name != "demo" || !strings.HasPrefix(r.Manifest.Version, DevVersionPrefix) || len(r.Manifest.Version) != len(DevVersionPrefix)+12 {
		t.Errorf("name/version = %s/%s", r.Manifest.Name, r.Manifest.Version)
	}
	back, err := ReadTarball(ctx, bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r.Manifest, back.Manifest); diff != "" {
		t.Errorf("manifest after a round trip (-built +read):\n%s", diff)
	}
	if diff := cmp.Diff(r.Job("web").Templates, back.Job("web").Templates); diff != "" {
		t.Errorf("templates after a round trip:\n%s", diff)
	}
	if !bytes.Equal(r.Job("web").Monit, back.Job("web").Monit) || back.License == nil {
		t.Error("monit or license lost in a round trip")
	}
	entries, err := untgz(ctx, bytes.NewReader(r.Package("greeter").Archive))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"greeter/main.go", "packaging"}, slices.Sorted(maps.Keys(entries))); diff != "" {
		t.Errorf("package archive entries:\n%s", diff)
	}

	// A content change moves the version; an unrelated file does not.
	fsys := dirFS(t, "../repo-template/releases/demo")
	base, err := BuildFS(ctx, fsys, "demo")
	if err != nil {
		t.Fatal(err)
	}
	fsys["README.md"] = &fstest.MapFile{Data: []byte("notes")}
	same, _ := BuildFS(ctx, fsys, "demo")
	fsys["jobs/web/monit"] = &fstest.MapFile{Data: []byte("check process web\n")}
	changed, err := BuildFS(ctx, fsys, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if base.Manifest.Version != same.Manifest.Version || base.Manifest.Version == changed.Manifest.Version {
		t.Errorf("versions: base %s, unrelated change %s, monit change %s", base.Manifest.Version, same.Manifest.Version, changed.Manifest.Version)
	}
}

// dirFS copies a directory into a MapFS so a test can edit it.
func dirFS(t *testing.T, dir string) fstest.MapFS {
	t.Helper()
	out := fstest.MapFS{}
	src := os.DirFS(dir)
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = &fstest.MapFile{Data: data, Mode: info.Mode()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBuildRejectsBadReleases(t *testing.T) {
	good := func() fstest.MapFS {
		return fstest.MapFS{
			"jobs/web/spec":               {Data: []byte("name: web\ntemplates:\n  run.tmpl: bin/run\npackages: [app]\n")},
			"jobs/web/templates/run.tmpl": {Data: []byte("#!/bin/sh\n")},
			"packages/app/spec":           {Data: []byte("name: app\ndependencies: [lib]\nfiles: [app/*]\n")},
			"packages/app/packaging":      {Data: []byte("cp -a app $BOSH_INSTALL_TARGET\n")},
			"packages/lib/spec":           {Data: []byte("name: lib\n")},
			"packages/lib/packaging":      {Data: []byte("true\n")},
			"src/app/main.sh":             {Data: []byte("echo\n")},
		}
	}
	if _, err := BuildFS(context.Background(), good(), "r"); err != nil {
		t.Fatalf("the base case must build: %v", err)
	}
	tests := []struct {
		name   string
		change func(fstest.MapFS)
		want   string
	}{
		{"job needs a missing package", func(m fstest.MapFS) {
			m["jobs/web/spec"] = &fstest.MapFile{Data: []byte("name: web\ntemplates:\n  run.tmpl: bin/run\npackages: [app, nope]\n")}
		}, `build release "r": job "web" needs package "nope", which the release does not have`},
		{"missing dependency", func(m fstest.MapFS) {
			m["packages/lib/spec"] = &fstest.MapFile{Data: []byte("name: lib\ndependencies: [ghost]\n")}
		}, `release "r": package "lib" depends on package "ghost", which the release does not have`},
		{"dependency cycle", func(m fstest.MapFS) {
			m["packages/lib/spec"] = &fstest.MapFile{Data: []byte("name: lib\ndependencies: [app]\n")}
		}, `release "r": package dependency cycle: app → lib → app`},
		{"bad job spec YAML", func(m fstest.MapFS) {
			m["jobs/web/spec"] = &fstest.MapFile{Data: []byte("name: web\ntemplates:\n\trun.tmpl: bin/run\n")}
		}, `job "web": jobs/web/spec: line 3: found character that cannot start any token`},
		{"duplicate key in job spec", func(m fstest.MapFS) {
			m["jobs/web/spec"] = &fstest.MapFile{Data: []byte("name: web\nname: web\n")}
		}, `job "web": jobs/web/spec: line 2: mapping key "name" already defined at line 1`},
		{"wrong type in package spec", func(m fstest.MapFS) {
			m["packages/lib/spec"] = &fstest.MapFile{Data: []byte("name: lib\n\ndependencies: {a: b}\n")}
		}, `package "lib": packages/lib/spec: line 3: cannot unmarshal`},
		{"missing template file", func(m fstest.MapFS) { delete(m, "jobs/web/templates/run.tmpl") },
			`job "web": template "run.tmpl" (for bin/run) is missing: no file jobs/web/templates/run.tmpl`},
		{"missing packaging", func(m fstest.MapFS) { delete(m, "packages/lib/packaging") },
			`package "lib": packages/lib/packaging is missing`},
		{"files match nothing", func(m fstest.MapFS) { delete(m, "src/app/main.sh") },
			`package "app": packages/app/spec: files pattern "app/*" matches nothing in src/ or blobs/`},
		{"name differs from directory", func(m fstest.MapFS) {
			m["packages/lib/spec"] = &fstest.MapFile{Data: []byte("name: library\n")}
		}, `packages/lib/spec: name "library" does not match the directory name`},
		{"template escapes the job dir", func(m fstest.MapFS) {
			m["jobs/web/spec"] = &fstest.MapFile{Data: []byte("name: web\ntemplates:\n  run.tmpl: ../../etc/passwd\n")}
		}, `jobs/web/spec: line 2: template "run.tmpl" destination "../../etc/passwd": must not contain '..'`},
		{"blob listed but absent", func(m fstest.MapFS) {
			m["config/blobs.yml"] = &fstest.MapFile{Data: []byte("app/big.tgz:\n  size: 3\n  sha: abc\n")}
		}, `config/blobs.yml lists blob "app/big.tgz" but blobs/app/big.tgz is missing`},
		{"two templates, one destination", func(m fstest.MapFS) {
			m["jobs/web/spec"] = &fstest.MapFile{Data: []byte("name: web\ntemplates:\n  run.tmpl: bin/run\n  other: bin/run\n")}
		}, `jobs/web/spec: line 2: templates "other" and "run.tmpl" both render to "bin/run"`},
		{"link without type", func(m fstest.MapFS) {
			m["jobs/web/spec"] = &fstest.MapFile{Data: []byte("name: web\nconsumes:\n- name: db\n")}
		}, `jobs/web/spec: line 2: every link needs a name and a type`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := good()
			tt.change(m)
			_, err := BuildFS(context.Background(), m, "r")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v\nwant it to contain %s", err, tt.want)
			}
		})
	}
}

func TestPackageFilesBlobsAndExclusions(t *testing.T) {
	m := fstest.MapFS{
		"packages/p/spec":      {Data: []byte("name: p\nfiles: [p/**/*, big.tgz]\nexcluded_files: [p/**/*_test.go]\n")},
		"packages/p/packaging": {Data: []byte("true\n")},
		"src/p/main.go":        {Data: []byte("package main\n")},
		"src/p/x/y.go":         {Data: []byte("package x\n")},
		"src/p/x/y_test.go":    {Data: []byte("package x\n")},
		"blobs/big.tgz":        {Data: []byte("blob")},
		"config/blobs.yml":     {Data: []byte("big.tgz:\n  size: 4\n  sha: whatever\n")},
	}
	r, err := BuildFS(context.Background(), m, "r")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := untgz(context.Background(), bytes.NewReader(r.Package("p").Archive))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"big.tgz", "p/main.go", "p/x/y.go", "packaging"}, slices.Sorted(maps.Keys(entries))); diff != "" {
		t.Errorf("archive entries (-want +got):\n%s", diff)
	}
}

func TestBuildRefusesSymlinksOutOfTheTree(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	for p, body := range map[string]string{
		"jobs/j/spec": "name: j\ntemplates:\n  x: config/x\n",
		secret:        "director credentials",
	} {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "jobs/j/templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "jobs/j/templates/x")); err != nil {
		t.Fatal(err)
	}
	_, err := Build(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), `job "j": read template "x"`) || !strings.Contains(err.Error(), "escapes") {
		t.Errorf("error = %v, want a refusal naming the job and template", err)
	}
}

// TestFingerprintsMatchBoshCLIIntegration rebuilds the release of bosh-cli's own
// create-release integration test (init-release, generate-job job1, generate-package pkg1
// and pkg2, a LICENSE, then in-src and in-blobs files for pkg1) and expects the
// fingerprints that test expects of bosh-cli.
func TestFingerprintsMatchBoshCLIIntegration(t *testing.T) {
	m := fstest.MapFS{
		"LICENSE":                 {Data: []byte("LICENSE")},
		"jobs/job1/spec":          {Data: []byte("---\nname: job1\n\ntemplates: {}\n\npackages: [pkg1, pkg2]\n\nproperties: {}\n")},
		"jobs/job1/monit":         {Data: []byte("")},
		"packages/pkg1/spec":      {Data: []byte("---\nname: pkg1\n\ndependencies: [pkg2]\n\nfiles: []\n")},
		"packages/pkg1/packaging": {Data: []byte("set -e\n")},
		"packages/pkg2/spec":      {Data: []byte("---\nname: pkg2\n\ndependencies: []\n\nfiles: []\n")},
		"packages/pkg2/packaging": {Data: []byte("set -e\n")},
	}
	check := func(want map[string]string) {
		t.Helper()
		r, err := BuildFS(context.Background(), m, "release")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{"job1": r.Job("job1").Fingerprint, "pkg1": r.Package("pkg1").Fingerprint, "pkg2": r.Package("pkg2").Fingerprint, "license": r.Manifest.License.Fingerprint}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("fingerprints (-bosh-cli +bosun):\n%s", diff)
		}
	}
	check(map[string]string{
		"job1":    "f54520d6563c438bf0bc5bb674777db171b78d848a057a3faec0e9b572c3a76c",
		"pkg1":    "08441a1962e8141645edb0f2ddb91330454f2f1a3954d7f27fa256eb5e7b4ed6",
		"pkg2":    "34581dd0d93735e444a32450e3ae3951258c936479b45e08f1fa074740c7e392",
		"license": "42a33a7295936a632c8f54e70f2553975ee38a476d6aae93f3676e68c9db2f86",
	})
	m["src/in-src"] = &fstest.MapFile{Data: []byte("in-src"), Mode: 0o644}
	m["blobs/in-blobs"] = &fstest.MapFile{Data: []byte("in-blobs"), Mode: 0o644}
	m["packages/pkg1/spec"] = &fstest.MapFile{Data: []byte("---\nname: pkg1\n\ndependencies: [pkg2]\n\nfiles:\n- in-src\n- in-blobs\n")}
	check(map[string]string{
		"job1":    "f54520d6563c438bf0bc5bb674777db171b78d848a057a3faec0e9b572c3a76c",
		"pkg1":    "00ebebd8dd5a533a91f9de34b0cf708772fca87ada7e37e63bec00ece2e0634c",
		"pkg2":    "34581dd0d93735e444a32450e3ae3951258c936479b45e08f1fa074740c7e392",
		"license": "42a33a7295936a632c8f54e70f2553975ee38a476d6aae93f3676e68c9db2f86",
	})
}
