package release

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
)

// demoTarballEntries returns the demo release's tarball as files, to be altered.
func demoTarballEntries(t testing.TB) (map[string][]byte, []string) {
	t.Helper()
	r, err := Build(context.Background(), "../repo-template/releases/demo")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := r.WriteTarball(&buf); err != nil {
		t.Fatal(err)
	}
	entries, err := untgz(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	return entries, []string{"release.MF", "license.tgz", "jobs/web.tgz", "packages/greeter.tgz"}
}

func retar(t testing.TB, entries map[string][]byte, order []string) []byte {
	t.Helper()
	var files []file
	for _, n := range order {
		if d, ok := entries[n]; ok {
			files = append(files, file{Path: "./" + n, Data: d})
		}
	}
	b, err := tgz(files)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadTarballAcceptsSHA256Digests(t *testing.T) {
	entries, order := demoTarballEntries(t)
	sum := sha1Hex(entries["jobs/web.tgz"])
	entries["release.MF"] = bytes.Replace(entries["release.MF"], []byte(sum), []byte(digestString(entries["jobs/web.tgz"])), 1)
	r, err := ReadTarball(context.Background(), bytes.NewReader(retar(t, entries, order)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Job("web") == nil || r.Package("greeter") == nil {
		t.Error("jobs or packages missing after read")
	}
}

func TestReadTarballErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(map[string][]byte)
		want   string
	}{
		{"altered job", func(e map[string][]byte) { e["jobs/web.tgz"] = append(e["jobs/web.tgz"], 0) },
			`job "web": digest mismatch: release.MF says sha1:`},
		{"altered package", func(e map[string][]byte) { e["packages/greeter.tgz"] = []byte("not gzip") },
			`package "greeter": digest mismatch: release.MF says sha1:`},
		{"missing job archive", func(e map[string][]byte) { delete(e, "jobs/web.tgz") },
			`release.MF lists job "web" but the tarball has no jobs/web.tgz`},
		{"no release.MF", func(e map[string][]byte) { delete(e, "release.MF") },
			"no release.MF in it; is this a BOSH release?"},
		{"bad release.MF", func(e map[string][]byte) { e["release.MF"] = []byte("name: demo\njobs: {}\n") },
			"release.MF: line 2: cannot unmarshal"},
		{"path in a job name", func(e map[string][]byte) {
			e["release.MF"] = bytes.Replace(e["release.MF"], []byte("- name: web"), []byte("- name: ../web"), 1)
		}, `job name "../web" is not a valid name`},
		{"job listed twice", func(e map[string][]byte) {
			mf := string(e["release.MF"])
			i, j := strings.Index(mf, "\njobs:\n")+len("\njobs:\n"), strings.Index(mf, "\npackages:\n")+1
			e["release.MF"] = []byte(mf[:j] + mf[i:j] + mf[j:])
		}, `release.MF lists job "web" twice`},
		{"license missing", func(e map[string][]byte) { delete(e, "license.tgz") },
			"lists a license but the tarball has no license.tgz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, order := demoTarballEntries(t)
			tt.change(entries)
			_, err := ReadTarball(context.Background(), bytes.NewReader(retar(t, entries, order)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v\nwant it to contain %s", err, tt.want)
			}
		})
	}
	if _, err := ReadTarball(context.Background(), strings.NewReader("plain text")); err == nil || !strings.Contains(err.Error(), "not a gzipped tarball") {
		t.Errorf("plain text: %v", err)
	}
}

func FuzzReadTarball(f *testing.F) {
	entries, order := demoTarballEntries(f)
	f.Add(retar(f, entries, order))
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte("release.MF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ReadTarball(context.Background(), bytes.NewReader(data))
		if err == nil && r.Manifest.Name == "" {
			t.Error("read a release without a name")
		}
	})
}

func FuzzParseJobSpec(f *testing.F) {
	f.Add([]byte("name: web\ntemplates:\n  a: bin/a\npackages: [p]\nproperties:\n  x.y: {default: 1}\nconsumes:\n- {name: db, type: pg, optional: true}\n"))
	f.Add([]byte("- a"))
	f.Add([]byte("name: [1]\n"))
	f.Add([]byte("templates: {../a: /b}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseJobSpec("spec", data)
		if err != nil {
			return
		}
		for src, dst := range s.Templates {
			if relPath(src) != nil || relPath(dst) != nil {
				t.Errorf("accepted template path %q → %q", src, dst)
			}
		}
	})
}

func FuzzParsePackageSpec(f *testing.F) {
	f.Add([]byte("name: p\ndependencies: [a, b]\nfiles: [p/**/*]\nexcluded_files: ['*.md']\n"))
	f.Add([]byte("name: p\nfiles: ['[']\n"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParsePackageSpec("spec", data)
		if err == nil && !nameRE.MatchString(s.Name) {
			t.Errorf("accepted name %q", s.Name)
		}
	})
}

func FuzzParseStemcellManifest(f *testing.F) {
	f.Add([]byte(stemcellMF))
	f.Add([]byte("version: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := ReadStemcell(context.Background(), bytes.NewReader(data)); err != nil {
			return
		}
	})
}

func FuzzRenderTemplate(f *testing.F) {
	f.Add(`{{ p "a" }}`, "a")
	f.Add(`{{ with link "db" }}{{ .P "x" }}{{ end }}`, "db")
	f.Add(`{{ if_p }}{{ p }}{{ link }}`, "")
	f.Fuzz(func(t *testing.T, tmpl, prop string) {
		j := jobWith(map[string]string{"t.tmpl": tmpl}, map[string]Property{prop: {Default: "v"}, "a": {}})
		_, _ = NewRenderer().Render(demoInstance(0), []JobInput{{Release: "r", Job: j, Properties: map[string]any{prop: map[string]any{"b": 1}}}})
	})
}

func BenchmarkBuild50Packages(b *testing.B) {
	m := benchRelease(50)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BuildFS(context.Background(), m, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRender1000Instances(b *testing.B) {
	r, err := Build(context.Background(), "../repo-template/releases/demo")
	if err != nil {
		b.Fatal(err)
	}
	rn := NewRenderer()
	props := map[string]any{"greeting": "Hi"}
	b.ReportAllocs()
	for b.Loop() {
		for i := range 1000 {
			if _, err := rn.Render(demoInstance(i), []JobInput{{Release: "demo", Job: r.Job("web"), Properties: props}}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// benchRelease is a release of n packages, each depending on the one before and holding
// 20 source files of 4 KiB, and one job per package.
func benchRelease(n int) fstest.MapFS {
	m := fstest.MapFS{}
	content := bytes.Repeat([]byte("package main // filler\n"), 4096/23)
	for i := range n {
		name := fmt.Sprintf("pkg%02d", i)
		deps := "[]"
		if i > 0 {
			deps = fmt.Sprintf("[pkg%02d]", i-1)
		}
		m["packages/"+name+"/spec"] = &fstest.MapFile{Data: []byte(fmt.Sprintf("name: %s\ndependencies: %s\nfiles: [%s/**/*]\n", name, deps, name))}
		m["packages/"+name+"/packaging"] = &fstest.MapFile{Data: []byte("cp -a . $BOSH_INSTALL_TARGET\n")}
		for f := range 20 {
			m[fmt.Sprintf("src/%s/f%02d.go", name, f)] = &fstest.MapFile{Data: content}
		}
		job := "job" + name
		m["jobs/"+job+"/spec"] = &fstest.MapFile{Data: []byte(fmt.Sprintf("name: %s\ntemplates: {run.tmpl: bin/run}\npackages: [%s]\n", job, name))}
		m["jobs/"+job+"/templates/run.tmpl"] = &fstest.MapFile{Data: []byte("#!/bin/sh\nexec /var/vcap/packages/x\n")}
	}
	return m
}
