package reconciler

import (
	"io/fs"
	"testing/fstest"

	"archive/tar"
	"compress/gzip"
	"fmt"
	repotemplate "github.com/bosun-gitops/bosun/repo-template"
	"io"
)

func sprint(v any) string { return fmt.Sprint(v) }

func untgzForTest(r io.Reader) (map[string][]byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		out[h.Name] = b
	}
}

func fsRead(p string) (string, error) {
	b, err := fs.ReadFile(repotemplate.FS(), p)
	return string(b), err
}

func cloneFile(b []byte) *fstest.MapFile {
	return &fstest.MapFile{Data: append([]byte(nil), b...), Mode: 0o644}
}
