package alicloud_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/alicloud"
	"github.com/bosun-gitops/bosun/cpi/alicloud/fakealicloud"
)

// heavyProps are a heavy Alibaba Cloud stemcell's cloud_properties: no image_id, no
// OSS object.
const heavyProps = `{"name":"bosh-alicloud-kvm-ubuntu-noble-go_agent","version":"1.5","infrastructure":"alicloud","hypervisor":"kvm","disk":5120,"disk_format":"RAW","container_format":"bare","os_type":"linux","os_distro":"ubuntu","architecture":"x86_64"}`

// diskImage is size bytes of reproducible noise and its SHA-256.
func diskImage(size int) ([]byte, string) {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(size), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

func tarball(t *testing.T, w io.Writer, gz bool, members map[string][]byte, order ...string) {
	t.Helper()
	zw := gzip.NewWriter(w)
	out := io.Writer(zw)
	if !gz {
		out = w
	}
	tw := tar.NewWriter(out)
	tw.WriteHeader(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755})
	for _, name := range order {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(members[name]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(members[name])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if gz {
		zw.Close()
	}
}

// stemcellImageFile writes the file create_stemcell is given, in one of its forms:
// "image" (the stemcell's image member: a gzipped tarball holding root.img), "stemcell"
// (a whole stemcell tarball, stemcell.MF beside image), or "raw" (the disk image).
func stemcellImageFile(t *testing.T, form string, root []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	switch form {
	case "image":
		tarball(t, f, true, map[string][]byte{"./root.img": root}, "./root.img")
	case "stemcell":
		var inner strings.Builder
		tarball(t, &inner, true, map[string][]byte{"./root.img": root}, "./root.img")
		tarball(t, f, true, map[string][]byte{"stemcell.MF": []byte("name: s\n"), "image": []byte(inner.String())}, "stemcell.MF", "image")
	case "raw":
		f.Write(root)
	}
	return path
}

// ossLeft is what is in the fake's OSS beyond the seeded bucket.
func ossLeft(cloud *fakealicloud.Cloud) (buckets []string, objects []string) {
	for _, b := range cloud.OSSBuckets() {
		if b != fakealicloud.OSSBucket {
			buckets = append(buckets, b)
		}
	}
	for _, o := range cloud.OSSObjects() {
		if o.Bucket != fakealicloud.OSSBucket {
			objects = append(objects, o.Bucket+"/"+o.Key)
		}
	}
	return buckets, objects
}

func wantOSSClean(t *testing.T, cloud *fakealicloud.Cloud) {
	t.Helper()
	if b, o := ossLeft(cloud); len(b)+len(o) > 0 {
		t.Errorf("left in OSS: buckets %v, objects %v", b, o)
	}
}

// ossCalls are the OSS and import calls made, in order, with their statuses.
func ossCalls(cloud *fakealicloud.Cloud) []string {
	var out []string
	for _, r := range cloud.Requests() {
		switch r.Action {
		case "PutBucket", "PutObject", "DeleteObject", "DeleteBucket", "ImportImage":
			out = append(out, r.Action+" "+strconv.Itoa(r.Status))
		}
	}
	return out
}

func TestHeavyStemcell(t *testing.T) {
	ctx := context.Background()
	root, sum := diskImage(3<<20 + 123)
	for _, form := range []string{"image", "stemcell", "raw"} {
		t.Run(form, func(t *testing.T) {
			e := newEnv(t, fakealicloud.Options{}, nil)
			sc, err := e.cpi.CreateStemcell(ctx, stemcellImageFile(t, form, root), json.RawMessage(heavyProps))
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"PutBucket 200", "PutObject 200", "ImportImage 200", "DeleteObject 204", "DeleteBucket 204"}
			if diff := cmp.Diff(want, ossCalls(e.cloud)); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			var put fakealicloud.Request
			for _, r := range e.cloud.Requests() {
				if r.Action == "PutObject" {
					put = r
				}
			}
			if put.Params["SHA256"] != sum || put.Params["Size"] != strconv.Itoa(len(root)) {
				t.Errorf("uploaded %s bytes, sha256 %s; want root.img's %d, %s", put.Params["Size"], put.Params["SHA256"], len(root), sum)
			}
			if !strings.HasPrefix(put.Params["Bucket"], "bosh-stemcell-") || !strings.HasPrefix(put.Params["Key"], "bosh-alicloud-kvm-ubuntu-noble-go_agent-1.5-") ||
				!strings.HasSuffix(put.Params["Key"], ".raw") {
				t.Errorf("uploaded to %s/%s", put.Params["Bucket"], put.Params["Key"])
			}
			imgs := e.cloud.Images()
			if len(imgs) != 1 || imgs[0].ID != string(sc) || imgs[0].Status != "Available" || imgs[0].Format != "RAW" || imgs[0].Size != 5 ||
				imgs[0].OSSObject != put.Params["Bucket"]+"/"+put.Params["Key"] {
				t.Errorf("images = %+v", imgs)
			}
			wantOSSClean(t, e.cloud)
			if err := e.cpi.DeleteStemcell(ctx, sc); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("each upload has its own bucket and object", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{}, nil)
		path := stemcellImageFile(t, "image", root[:4096])
		seen := map[string]bool{}
		for range 2 {
			if _, err := e.cpi.CreateStemcell(ctx, path, json.RawMessage(heavyProps)); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range e.cloud.Requests() {
			if r.Action == "PutObject" {
				seen[r.Params["Bucket"]+"/"+r.Params["Key"]] = true
			}
		}
		if len(seen) != 2 {
			t.Errorf("uploads went to %v", seen)
		}
	})

	t.Run("with STS credentials", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{}, func(c *alicloud.Config) { c.SecurityToken = fakealicloud.SecurityToken })
		if _, err := e.cpi.CreateStemcell(ctx, stemcellImageFile(t, "image", root[:4096]), json.RawMessage(heavyProps)); err != nil {
			t.Fatal(err)
		}
		wantOSSClean(t, e.cloud)
		if strings.Contains(e.logs.String(), fakealicloud.SecurityToken) {
			t.Error("the STS token was logged")
		}
	})
}

func TestHeavyStemcellFailures(t *testing.T) {
	ctx := context.Background()
	root, _ := diskImage(64 << 10)

	creds := []struct {
		name     string
		mod      func(*alicloud.Config)
		contains []string
		secret   string
	}{
		{"wrong secret", func(c *alicloud.Config) { c.AccessKeySecret = "wrong-" + fakealicloud.AccessKeySecret },
			[]string{"create OSS bucket bosh-stemcell-", "oss PutBucket answered 403 SignatureDoesNotMatch (request "}, "wrong-"},
		{"unknown key", func(c *alicloud.Config) { c.AccessKeyID = "LTAI-nope" },
			[]string{"create OSS bucket bosh-stemcell-", "oss PutBucket answered 403 InvalidAccessKeyId"}, fakealicloud.AccessKeySecret},
		{"bad STS token", func(c *alicloud.Config) { c.SecurityToken = "wrong-" + fakealicloud.SecurityToken },
			[]string{"create OSS bucket bosh-stemcell-", "oss PutBucket answered 403 InvalidSecurityToken"}, "wrong-"},
	}
	for _, tt := range creds {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fakealicloud.Options{}, tt.mod)
			_, err := e.cpi.CreateStemcell(ctx, stemcellImageFile(t, "image", root), json.RawMessage(heavyProps))
			wantCPIError(t, err, cpi.CloudError, false, tt.contains...)
			// The fake quotes its string to sign, as OSS does; it holds the STS token.
			if strings.Contains(err.Error(), tt.secret) || strings.Contains(err.Error(), "x-oss-") || strings.Contains(e.logs.String(), tt.secret) {
				t.Errorf("error or log holds a credential or the string to sign: %v", err)
			}
			if got := e.cloud.Calls("PutBucket", 0); got != 1 {
				t.Errorf("PutBucket tries = %d: an authentication failure is not retried", got)
			}
			if len(e.cloud.Images()) != 0 {
				t.Error("an image was imported")
			}
			wantOSSClean(t, e.cloud)
		})
	}

	t.Run("failed import still removes the object and bucket", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{}, nil)
		e.cloud.SetImageFate("CreateFailed")
		_, err := e.cpi.CreateStemcell(ctx, stemcellImageFile(t, "image", root), json.RawMessage(heavyProps))
		wantCPIError(t, err, cpi.CloudError, false, "ECS could not import the image: it is CreateFailed", "oss://bosh-stemcell-")
		if len(e.cloud.Images()) != 0 {
			t.Errorf("images left: %+v", e.cloud.Images())
		}
		wantOSSClean(t, e.cloud)
	})

	t.Run("refused import still removes the object and bucket", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{}, nil)
		e.cloud.Inject(fakealicloud.Fault{Action: "ImportImage", Status: 403, Code: "NoSetRoletoECSServiceAcount", Message: "authorize ECS to read OSS"})
		_, err := e.cpi.CreateStemcell(ctx, stemcellImageFile(t, "image", root), json.RawMessage(heavyProps))
		wantCPIError(t, err, cpi.CloudError, false, "ecs ImportImage answered 403 NoSetRoletoECSServiceAcount")
		wantOSSClean(t, e.cloud)
	})

	t.Run("failed upload is not repeated and removes the bucket", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{}, nil)
		e.cloud.Inject(fakealicloud.Fault{Action: "PutObject", Status: 500})
		_, err := e.cpi.CreateStemcell(ctx, stemcellImageFile(t, "image", root), json.RawMessage(heavyProps))
		wantCPIError(t, err, cpi.CloudError, false, "upload the stemcell's image (65536 bytes) to OSS bucket bosh-stemcell-", "oss PutObject answered 500 InternalError")
		if got := e.cloud.Calls("PutObject", 0); got != 1 {
			t.Errorf("PutObject tries = %d", got)
		}
		if e.cloud.Calls("ImportImage", 0) != 0 {
			t.Error("imported after a failed upload")
		}
		wantOSSClean(t, e.cloud)
	})

	t.Run("image over the PutObject limit", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{}, nil)
		alicloud.SetMaxPutObject(e.cpi, 32<<10)
		_, err := e.cpi.CreateStemcell(ctx, stemcellImageFile(t, "image", root), json.RawMessage(heavyProps))
		wantCPIError(t, err, cpi.CloudError, false, "disk image is 65536 bytes: one OSS PutObject takes at most 32768", "no multipart uploads")
		if got := ossCalls(e.cloud); len(got) != 0 {
			t.Errorf("calls made: %v", got)
		}
	})

	t.Run("cleanup that fails is logged, the stemcell stands", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{}, nil)
		e.cloud.Inject(fakealicloud.Fault{Action: "DeleteObject", Status: 403, Code: "AccessDenied"})
		sc, err := e.cpi.CreateStemcell(ctx, stemcellImageFile(t, "image", root), json.RawMessage(heavyProps))
		if err != nil || sc == "" {
			t.Fatalf("create_stemcell = %q, %v", sc, err)
		}
		if !strings.Contains(e.logs.String(), "could not delete the stemcell's image from OSS") {
			t.Errorf("log:\n%s", e.logs)
		}
		if b, o := ossLeft(e.cloud); len(b) != 1 || len(o) != 1 {
			t.Errorf("left: %v %v", b, o)
		}
	})

	t.Run("transient cleanup failures are retried", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{}, nil)
		e.cloud.Inject(fakealicloud.Fault{Action: "DeleteBucket", Status: 503, Times: 2})
		if _, err := e.cpi.CreateStemcell(ctx, stemcellImageFile(t, "image", root), json.RawMessage(heavyProps)); err != nil {
			t.Fatal(err)
		}
		wantOSSClean(t, e.cloud)
	})

	t.Run("unreadable image", func(t *testing.T) {
		e := newEnv(t, fakealicloud.Options{}, nil)
		_, err := e.cpi.CreateStemcell(ctx, filepath.Join(t.TempDir(), "nope"), json.RawMessage(heavyProps))
		wantCPIError(t, err, cpi.CloudError, false, "open stemcell image")
		p := filepath.Join(t.TempDir(), "image")
		var b strings.Builder
		tarball(t, &b, true, map[string][]byte{"./other": []byte("x")}, "./other")
		os.WriteFile(p, []byte(b.String()), 0o644)
		_, err = e.cpi.CreateStemcell(ctx, p, json.RawMessage(heavyProps))
		wantCPIError(t, err, cpi.CloudError, false, "holds no root.img")
		if got := ossCalls(e.cloud); len(got) != 0 {
			t.Errorf("calls made: %v", got)
		}
	})
}
