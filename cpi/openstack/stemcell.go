package openstack

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
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/bosun-gitops/bosun/cpi"
)

// lightSuffix marks a light stemcell's cid, as BOSH's Ruby CPI does, so that deleting
// the stemcell leaves the shared image alone.
const lightSuffix = " light"

// imageID is the Glance image behind a stemcell cid.
func imageID(sc cpi.StemcellCID) string { return strings.TrimSuffix(string(sc), lightSuffix) }

// CreateStemcell implements cpi.CPI. With image_id in the cloud properties the
// stemcell is light: the image must exist and be active, and nothing is uploaded.
// Otherwise imagePath is the stemcell's image: a gzipped tarball holding root.img
// (streamed out of it) or the disk image itself.
func (c *CPI) CreateStemcell(ctx context.Context, imagePath string, props json.RawMessage) (cpi.StemcellCID, error) {
	const method = "create_stemcell"
	var p stemcellProps
	if err := cpi.DecodeCloudProperties(props, &p); err != nil {
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err, "bad stemcell cloud_properties")
	}
	api, err := c.services(ctx)
	if err != nil {
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err, "connect to OpenStack")
	}
	if p.ImageID != "" {
		img, err := images.Get(ctx, api.image, p.ImageID).Extract()
		if err != nil {
			return "", c.errf(ctx, method, p.ImageID, cpi.CloudError, false, apiErr("glance get image", err), "light stemcell image %s", p.ImageID)
		}
		if img.Status != images.ImageStatusActive {
			return "", c.errf(ctx, method, p.ImageID, cpi.CloudError, false, nil, "light stemcell image %s is %s, not active", p.ImageID, img.Status)
		}
		return cpi.StemcellCID(img.ID + lightSuffix), nil
	}

	f, err := os.Open(imagePath)
	if err != nil {
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err, "open stemcell image")
	}
	defer f.Close()
	data, err := rootImage(f)
	if err != nil {
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err, "read stemcell image %s", imagePath)
	}
	opts := images.CreateOpts{
		Name:            imageName(p),
		DiskFormat:      orDefault(p.DiskFormat, "qcow2"),
		ContainerFormat: orDefault(p.ContainerFormat, "bare"),
		Properties:      map[string]string{},
	}
	vis := images.ImageVisibilityPrivate
	if c.cfg.StemcellPublicVisibility {
		vis = images.ImageVisibilityPublic
	}
	opts.Visibility = &vis
	for k, v := range map[string]string{"version": p.Version, "os_type": p.OSType, "os_distro": p.OSDistro,
		"architecture": p.Architecture, "hypervisor_type": p.Hypervisor} {
		if v != "" {
			opts.Properties[k] = v
		}
	}
	if p.AutoDiskConfig {
		opts.Properties["auto_disk_config"] = "true"
	}
	img, err := images.Create(ctx, api.image, opts).Extract()
	if err != nil {
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, apiErr("glance create image", err), "create image")
	}
	fail := func(err error, format string, a ...any) (cpi.StemcellCID, error) {
		if derr := images.Delete(context.WithoutCancel(ctx), api.image, img.ID).ExtractErr(); derr != nil && !isNotFound(derr) {
			c.log.Error("could not delete the image of a failed stemcell upload", "image", img.ID, "err", describe(derr))
		}
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err, format, a...)
	}
	if err := imagedata.Upload(ctx, api.image, img.ID, data).ExtractErr(); err != nil {
		return fail(apiErr("glance upload image data", err), "upload image %s", img.ID)
	}
	err = c.waitFor(ctx, "image "+img.ID, func(ctx context.Context) (bool, string, error) {
		got, err := images.Get(ctx, api.image, img.ID).Extract()
		if err != nil {
			return false, "", apiErr("glance get image", err)
		}
		switch got.Status {
		case images.ImageStatusActive:
			return true, "", nil
		case images.ImageStatusKilled, images.ImageStatusDeleted, images.ImageStatusPendingDelete:
			return false, "", fmt.Errorf("glance rejected the image: it is %s", got.Status)
		}
		return false, string(got.Status), nil
	})
	if err != nil {
		return fail(err, "image %s did not become active", img.ID)
	}
	c.log.Info("created stemcell", "image", img.ID, "name", opts.Name)
	return cpi.StemcellCID(img.ID), nil
}

func imageName(p stemcellProps) string {
	name := orDefault(p.Name, "bosh-stemcell")
	if p.Version != "" {
		name += "/" + p.Version
	}
	return name
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// rootImage returns a reader of the disk image in r: root.img out of a (gzipped)
// tarball, or r itself. Nothing is read ahead beyond a small buffer, so the upload
// streams whatever the image's size.
func rootImage(r io.Reader) (io.Reader, error) { return findRootImage(r, true) }

// findRootImage reads a disk image, a tarball holding root.img, or a whole BOSH stemcell
// tarball (the director hands the CPI the stemcell as fetched): stemcell.MF beside an
// "image" tarball, which is opened in turn when nested is true.
func findRootImage(r io.Reader, nested bool) (io.Reader, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(512)
	var in io.Reader = br
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		zb := bufio.NewReader(zr)
		if h, _ := zb.Peek(512); !isTar(h) {
			return zb, nil // a gzipped disk image
		}
		in = zb
	} else if !isTar(head) {
		return br, nil
	}
	tr := tar.NewReader(in)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the tarball holds no root.img (nor a stemcell's image holding one)")
		}
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag == tar.TypeReg && name == "root.img" {
			return tr, nil
		}
		if h.Typeflag == tar.TypeReg && name == "image" && nested {
			return findRootImage(tr, false)
		}
	}
}

// isTar recognises a ustar or GNU tar header by its magic.
func isTar(b []byte) bool {
	return len(b) >= 262 && string(b[257:262]) == "ustar"
}

// DeleteStemcell implements cpi.CPI. A light stemcell's image belongs to someone else
// and stays; an image already gone is not an error.
func (c *CPI) DeleteStemcell(ctx context.Context, sc cpi.StemcellCID) error {
	const method = "delete_stemcell"
	if strings.HasSuffix(string(sc), lightSuffix) {
		return nil
	}
	api, err := c.services(ctx)
	if err != nil {
		return c.errf(ctx, method, string(sc), cpi.CloudError, false, err, "connect to OpenStack")
	}
	if err := images.Delete(ctx, api.image, string(sc)).ExtractErr(); err != nil && !isNotFound(err) {
		return c.errf(ctx, method, string(sc), cpi.CloudError, false, apiErr("glance delete image", err), "delete image")
	}
	c.log.Info("deleted stemcell", "image", sc)
	return nil
}
