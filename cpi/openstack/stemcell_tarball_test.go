package openstack_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/bosun-gitops/bosun/cpi/openstack/fakeopenstack"
)

// TestCreateStemcellFromBOSHTarball: the director hands create_stemcell the stemcell as
// fetched, a BOSH stemcell tarball (stemcell.MF beside an "image" tarball holding
// root.img); root.img is what reaches Glance.
func TestCreateStemcellFromBOSHTarball(t *testing.T) {
	const size = 70000
	inner := stemcellImage(t, size)
	img, err := os.ReadFile(inner)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "stemcell.tgz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	mf := []byte("name: bosh-openstack-kvm-ubuntu-noble\noperating_system: ubuntu-noble\nversion: \"1.5\"\n")
	for _, e := range []struct {
		name string
		data []byte
	}{{"stemcell.MF", mf}, {"image", img}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []io.Closer{tw, zw, f} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}

	e := newEnv(t, fakeopenstack.Options{}, nil)
	if _, err := e.cpi.CreateStemcell(context.Background(), path, json.RawMessage(stemcellProps)); err != nil {
		t.Fatal(err)
	}
	images := e.cloud.Images()
	if len(images) != 1 || images[0].Size != size || images[0].Status != "active" {
		t.Errorf("images = %+v; want one active image of root.img's %d bytes", images, size)
	}
}
