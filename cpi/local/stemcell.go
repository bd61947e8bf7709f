package local

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/bosun-gitops/bosun/cpi"
)

// stemcellProps are the keys stemcell.MF's cloud_properties may carry for this CPI:
// the usual ones of BOSH's stemcells, none of which the local CPI needs.
type stemcellProps struct {
	Name            string `json:"name"`
	Version         string `json:"version"`
	Infrastructure  string `json:"infrastructure"`
	Hypervisor      string `json:"hypervisor"`
	Architecture    string `json:"architecture"`
	OSType          string `json:"os_type"`
	OSDistro        string `json:"os_distro"`
	Disk            int    `json:"disk"`
	DiskFormat      string `json:"disk_format"`
	ContainerFormat string `json:"container_format"`
	RootDeviceName  string `json:"root_device_name"`
}

// CreateStemcell implements cpi.CPI. imagePath may be a stemcell tarball (gzipped or
// not) holding stemcell.MF and perhaps an image, as a local stemcell may hold only the
// manifest; any other file is kept as the image; "" makes a manifest-only stemcell.
func (c *CPI) CreateStemcell(ctx context.Context, imagePath string, props json.RawMessage) (cpi.StemcellCID, error) {
	const method = "create_stemcell"
	var p stemcellProps
	if err := cpi.DecodeCloudProperties(props, &p); err != nil {
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err, "bad stemcell cloud_properties")
	}
	cid := newCID("sc-")
	if err := os.MkdirAll(c.path("stemcells"), 0o700); err != nil {
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err, "create stemcell store")
	}
	tmp, err := os.MkdirTemp(c.path("stemcells"), ".tmp-"+cid+"-")
	if err != nil {
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err, "create stemcell store")
	}
	defer os.RemoveAll(tmp)
	foundMF := false
	if imagePath != "" {
		foundMF, err = importImage(imagePath, tmp)
		if err != nil {
			return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err, "import stemcell image")
		}
	}
	if !foundMF {
		mf, _ := json.Marshal(map[string]any{"name": p.Name, "version": p.Version, "api_version": cpi.APIVersion,
			"stemcell_formats": []string{"bosun-local"}, "cloud_properties": json.RawMessage(orEmpty(props))})
		if err := writeFileAtomic(filepath.Join(tmp, "stemcell.MF"), mf, 0o600); err != nil {
			return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err, "write stemcell.MF")
		}
	}
	if err := os.Rename(tmp, c.path("stemcells", cid)); err != nil {
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err, "store stemcell")
	}
	c.log.Info("created stemcell", "stemcell_cid", cid, "name", p.Name, "version", p.Version)
	return cpi.StemcellCID(cid), nil
}

func orEmpty(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage(`{}`)
	}
	return raw
}

// importImage puts what imagePath holds into dir: from a stemcell tarball its
// stemcell.MF and image, else the file itself as image. It reports whether a
// stemcell.MF was found.
func importImage(imagePath, dir string) (bool, error) {
	f, err := os.Open(imagePath)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return false, err
	} else if st.IsDir() {
		return false, fmt.Errorf("%s is a directory, want a stemcell tarball or an image file", imagePath)
	}
	if found, err := extractStemcell(f, dir); err == nil && found {
		return true, nil
	}
	// Not a stemcell tarball: the director handed us the image itself.
	os.Remove(filepath.Join(dir, "stemcell.MF"))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	out, err := os.OpenFile(filepath.Join(dir, "image"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return false, err
	}
	if _, err := io.Copy(out, f); err != nil {
		out.Close()
		return false, err
	}
	return false, out.Close()
}

// extractStemcell reads a (gzipped) tar and writes its stemcell.MF and image into dir.
func extractStemcell(r io.Reader, dir string) (bool, error) {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return false, err
		}
		src = zr
	}
	tr := tar.NewReader(src)
	found := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return found, nil
		}
		if err != nil {
			return false, err
		}
		name := path.Clean(h.Name)
		if h.Typeflag != tar.TypeReg || (name != "stemcell.MF" && name != "image") {
			continue
		}
		out, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return false, err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return false, err
		}
		found = found || name == "stemcell.MF"
	}
}

// DeleteStemcell implements cpi.CPI.
func (c *CPI) DeleteStemcell(ctx context.Context, cid cpi.StemcellCID) error {
	if !validCID(string(cid)) {
		return nil
	}
	if err := removeAllAtomic(c.path("stemcells", string(cid))); err != nil {
		return c.errf(ctx, "delete_stemcell", string(cid), cpi.CloudError, false, err, "remove stemcell")
	}
	return nil
}
