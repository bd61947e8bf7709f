package source

import (
	"context"
	"fmt"
	"io/fs"
	"testing"
)

// BenchmarkCheckUnchanged is the poll that finds nothing new: one ref listing, no fetch.
func BenchmarkCheckUnchanged(b *testing.B) {
	for _, kind := range []string{"bare file:// remote", "local path"} {
		b.Run(kind, func(b *testing.B) {
			work := newWorkRepo(b)
			work.commit("x", map[string]string{"bosun.yml": "{}\n"})
			url := work.dir
			if kind != "local path" {
				url = "file://" + work.newBareRemote()
				work.push(false)
			}
			s := openSource(b, url, b.TempDir())
			ctx := context.Background()
			if _, _, err := s.Check(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, changed, err := s.Check(ctx); err != nil || changed {
					b.Fatalf("changed=%v err=%v", changed, err)
				}
			}
			b.StopTimer()
			if s.Stats().Fetches != 1 {
				b.Fatalf("fetches = %d", s.Stats().Fetches)
			}
		})
	}
}

// BenchmarkRevisionFS500 reads 500 manifests (50 deployments × manifest, vars and 8 ops
// files) straight from the object store of a fetched revision.
func BenchmarkRevisionFS500(b *testing.B) {
	work := newWorkRepo(b)
	files := map[string]string{}
	for d := range 50 {
		dir := fmt.Sprintf("deployments/d%02d", d)
		files[dir+"/manifest.yml"] = fmt.Sprintf("name: d%02d\ninstance_groups:\n- name: web\n  instances: 2\n", d)
		files[dir+"/vars.yml"] = "greeting: hello\n"
		for o := range 8 {
			files[fmt.Sprintf("%s/ops/op%d.yml", dir, o)] = fmt.Sprintf("- type: replace\n  path: /x%d\n  value: %d\n", o, o)
		}
	}
	work.commit("500 files", files)
	bare := work.newBareRemote()
	work.push(false)
	s := openSource(b, "file://"+bare, b.TempDir())
	rev, _, err := s.Check(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		fsys := rev.FS()
		n := 0
		err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if _, err := fs.ReadFile(fsys, p); err != nil {
				return err
			}
			n++
			return nil
		})
		if err != nil || n != 500 {
			b.Fatalf("read %d files: %v", n, err)
		}
	}
}
