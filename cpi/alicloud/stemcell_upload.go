package alicloud

import (
	"archive/tar"
	"bufio"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/cpi"
)

// importTarball makes an image of a heavy stemcell as BOSH's Alibaba Cloud CPI does:
// ECS imports only from OSS, so root.img goes to a private bucket made for this one
// upload, is imported from there, and the object and bucket are deleted once the
// import has ended, well or not. The image is streamed from the stemcell's image file,
// never held in memory.
func (c *CPI) importTarball(ctx context.Context, imagePath string, p stemcellProps) (cpi.StemcellCID, error) {
	const method = "create_stemcell"
	f, err := os.Open(imagePath)
	if err != nil {
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err,
			"open stemcell image (a heavy stemcell is uploaded to OSS, then imported; a light one names image_id)")
	}
	defer f.Close()
	img, size, err := rootImage(f)
	if err != nil {
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err, "read stemcell image %s", imagePath)
	}
	if size > c.maxPut {
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, nil,
			"the stemcell's disk image is %d bytes: one OSS PutObject takes at most %d, and this CPI makes no multipart uploads; upload it yourself and give oss_bucket and oss_object, or use a light stemcell",
			size, c.maxPut)
	}
	suffix := randomHex(8)
	// Bucket names are global to OSS: lower-case letters, digits and hyphens, 3 to 63.
	bucket := "bosh-stemcell-" + suffix
	object := objectName(cmp.Or(p.Name, "bosh-stemcell"), string(p.Version)) + "-" + suffix + ".raw"
	subject := "oss://" + bucket + "/" + object

	if err := c.ossDo(ctx, ossRequest{op: "PutBucket", method: http.MethodPut, bucket: bucket,
		header: http.Header{"X-Oss-Acl": {"private"}}}); err != nil {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, err, "create OSS bucket %s at %s for the stemcell's image", bucket, c.oss.host)
	}
	c.log.Info("created temporary OSS bucket", "bucket", bucket)
	uploaded := false
	defer func() { c.removeUpload(ctx, bucket, object, uploaded) }()

	start := time.Now()
	err = c.ossDo(ctx, ossRequest{op: "PutObject", method: http.MethodPut, bucket: bucket, object: object,
		header: http.Header{"Content-Type": {"application/octet-stream"}}, body: io.LimitReader(img, size), size: size})
	// Even a failed upload may have left an object behind (the answer was lost).
	uploaded = true
	if err != nil {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, err, "upload the stemcell's image (%d bytes) to OSS bucket %s", size, bucket)
	}
	c.log.Info("uploaded stemcell image to OSS", "bucket", bucket, "object", object, "bytes", size, "took", time.Since(start).Round(time.Millisecond))
	p.OSSBucket, p.OSSObject = bucket, object
	if p.DiskFormat == "" {
		p.DiskFormat = "raw"
	}
	if p.Disk == 0 {
		p.Disk = mib((size + 1<<20 - 1) >> 20)
	}
	return c.importImage(ctx, p)
}

// removeUpload deletes the uploaded object and the temporary bucket, best effort:
// failures are logged, the stemcell's outcome stands.
func (c *CPI) removeUpload(ctx context.Context, bucket, object string, uploaded bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if uploaded {
		if err := c.ossDo(ctx, ossRequest{op: "DeleteObject", method: http.MethodDelete, bucket: bucket, object: object}); err != nil {
			c.log.Error("could not delete the stemcell's image from OSS; delete it and its bucket yourself", "bucket", bucket, "object", object, "err", err)
			return
		}
	}
	if err := c.ossDo(ctx, ossRequest{op: "DeleteBucket", method: http.MethodDelete, bucket: bucket}); err != nil && !codeIs(err, "NoSuchBucket") {
		c.log.Error("could not delete the temporary OSS bucket; delete it yourself", "bucket", bucket, "err", err)
		return
	}
	c.log.Info("deleted temporary OSS bucket", "bucket", bucket)
}

// objectName keeps an object key to letters, digits, '.', '_' and '-'.
func objectName(name, version string) string {
	if version != "" {
		name += "-" + version
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, name)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// rootImage finds the disk image in r and its size: root.img out of a (gzipped)
// tarball, which may be the whole stemcell tarball holding an "image" member that
// holds root.img; or r itself, a bare disk image. The size comes from the tar header
// or the file, before any upload: OSS wants it up front.
func rootImage(f *os.File) (io.Reader, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	return findRootImage(f, st.Size(), true)
}

func findRootImage(r io.Reader, size int64, nested bool) (io.Reader, int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(512)
	in := io.Reader(br)
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, 0, err
		}
		zb := bufio.NewReaderSize(zr, 64<<10)
		if h, _ := zb.Peek(512); !isTar(h) {
			// A gzipped bare image: its size is known only once inflated.
			return nil, 0, errors.New("a gzipped disk image outside a tarball: its size cannot be told before the upload; give root.img in a tarball")
		}
		in = zb
	} else if !isTar(head) {
		if size < 0 {
			return nil, 0, errors.New("a bare disk image inside a tarball member of unknown size")
		}
		return br, size, nil
	}
	tr := tar.NewReader(in)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, 0, errors.New("the tarball holds no root.img (nor a stemcell's image holding one)")
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read tarball: %w", err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch {
		case h.Typeflag == tar.TypeReg && name == "root.img":
			return tr, h.Size, nil
		case h.Typeflag == tar.TypeReg && name == "image" && nested:
			return findRootImage(tr, h.Size, false)
		}
	}
}

// isTar recognises a ustar or GNU tar header by its magic.
func isTar(b []byte) bool { return len(b) >= 262 && string(b[257:262]) == "ustar" }
