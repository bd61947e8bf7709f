package api_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/api"
)

// fakePlanner answers which deployments of the tree the caller may read, and what it was
// given; a tree with a file "broken" is the caller's mistake.
type fakePlanner struct {
	mu    sync.Mutex
	calls int
	files []string
	req   api.PlanRequest
}

func (f *fakePlanner) Plan(ctx context.Context, tree fs.FS, req api.PlanRequest) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.files, f.req = nil, req
	_ = fs.WalkDir(tree, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			f.files = append(f.files, p)
		}
		return err
	})
	if _, err := fs.Stat(tree, "broken"); err == nil {
		return nil, fmt.Errorf("%w: deployments/web/manifest.yml: instances: want an integer", api.ErrPlanInput)
	}
	out := map[string]string{}
	for _, name := range []string{"web", "db"} {
		if req.Visible(name) {
			out[name] = "planned"
		} else {
			out[name] = "not planned"
		}
	}
	return out, nil
}

type entry struct {
	name, body string
	typ        byte
	link       string
}

func tgz(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Linkname: e.link}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func postPlan(t *testing.T, e *env, token, query string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctxFor(t), "POST", e.server.URL+"/plan"+query, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestPlanEndpoint(t *testing.T) {
	f := &fakePlanner{}
	e := newEnv(t, api.Options{Planner: f})
	good := tgz(t, entry{name: "./", typ: tar.TypeDir}, entry{name: "bosun.yml", body: "{}"}, entry{name: "deployments/", typ: tar.TypeDir},
		entry{name: "deployments/web/manifest.yml", body: "name: web\n"})
	// Over the limit, and incompressible, so that the compressed body is too.
	noise := make([]byte, api.MaxPlanUpload+1024)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(noise)
	big := tgz(t, entry{name: "releases/web/blobs/big", body: string(noise)})
	tests := []struct {
		name, token, query string
		body               []byte
		code               int
		want               map[string]string // the answer, for 200
		reason             string            // in the error message
	}{
		{"no token", "", "", good, 401, nil, "no token"},
		{"admin plans everything", adminToken, "", good, 200, map[string]string{"web": "planned", "db": "planned"}, ""},
		{"read token plans everything", readToken, "", good, 200, map[string]string{"web": "planned", "db": "planned"}, ""},
		{"team read token: its own only", webReadToken, "", good, 200, map[string]string{"web": "planned", "db": "not planned"}, ""},
		{"team admin token: its own only", webAdmToken, "", good, 200, map[string]string{"web": "planned", "db": "not planned"}, ""},
		{"with a base", readToken, "?base=" + strings.Repeat("a1", 20), good, 200, map[string]string{"web": "planned", "db": "planned"}, ""},
		{"a short base", readToken, "?base=abc123", good, 400, nil, "want a full commit sha"},
		{"not gzip", readToken, "", []byte("deployments/web/manifest.yml"), 400, nil, "not gzip"},
		{"gzip but not tar", readToken, "", gzipOf(t, []byte("just some text, no tar here at all............")), 400, nil, "not a readable tar"},
		{"too big", readToken, "", big, 413, nil, "over 32 MiB"},
		{"absolute path", readToken, "", tgz(t, entry{name: "/etc/passwd", body: "x"}), 400, nil, "is absolute"},
		{"traversal", readToken, "", tgz(t, entry{name: "deployments/../../etc/cron.d/x", body: "x"}), 400, nil, "climbs out of the tree"},
		{"traversal at the start", readToken, "", tgz(t, entry{name: "../x", body: "x"}), 400, nil, "climbs out"},
		{"symlink", readToken, "", tgz(t, entry{name: "deployments/web/manifest.yml", typ: tar.TypeSymlink, link: "/etc/shadow"}), 400, nil, "a link"},
		{"hard link", readToken, "", tgz(t, entry{name: "a", body: "x"}, entry{name: "b", typ: tar.TypeLink, link: "a"}), 400, nil, "a link"},
		{"device", readToken, "", tgz(t, entry{name: "dev", typ: tar.TypeChar}), 400, nil, "neither a file nor a directory"},
		{"a file twice", readToken, "", tgz(t, entry{name: "a", body: "x"}, entry{name: "./a", body: "y"}), 400, nil, "given twice"},
		{"a file under a file", readToken, "", tgz(t, entry{name: "a", body: "x"}, entry{name: "a/b", body: "y"}), 400, nil, "a file, yet a/b is under it"},
		{"the tree does not render", readToken, "", tgz(t, entry{name: "broken", body: "x"}), 422, nil, "instances: want an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.mu.Lock()
			f.calls = 0
			f.mu.Unlock()
			code, b := postPlan(t, e, tt.token, tt.query, tt.body)
			if code != tt.code {
				t.Fatalf("status %d, want %d; body %.300s", code, tt.code, b)
			}
			f.mu.Lock()
			calls, files, req := f.calls, f.files, f.req
			f.mu.Unlock()
			if code != 200 {
				var eb api.ErrorBody
				if err := json.Unmarshal(b, &eb); err != nil || eb.Status != tt.code || !strings.Contains(eb.Error, tt.reason) {
					t.Errorf("error %s (%v), want status %d and %q", b, err, tt.code, tt.reason)
				}
				if code != 422 && calls != 0 {
					t.Errorf("a refused request reached the planner")
				}
				return
			}
			var got map[string]string
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"bosun.yml", "deployments/web/manifest.yml"}, files); diff != "" {
				t.Errorf("tree (-want +got):\n%s", diff)
			}
			if want := strings.TrimPrefix(tt.query, "?base="); req.Base != want {
				t.Errorf("base = %q; want %q", req.Base, want)
			}
		})
	}

	// The client sends it, with the commit's author and message; the answer is raw JSON.
	raw, err := e.client(t, webReadToken).Plan(ctxFor(t), good, api.PlanOptions{Author: "Ada", Message: "scale web\n\nBosun-Allow-Delete: db\n"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"db":"not planned"`) || f.req.Author != "Ada" || !strings.Contains(f.req.Message, "Bosun-Allow-Delete: db") {
		t.Errorf("client: %s, request %+v", raw, f.req)
	}
	in, err := e.client(t, readToken).Info(ctxFor(t))
	if err != nil || !in.Features["plan"] {
		t.Errorf("info = %+v, %v; want feature plan", in, err)
	}
}

func gzipOf(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPlanNotWired(t *testing.T) {
	e := newEnv(t, api.Options{})
	_, err := e.client(t, readToken).Plan(ctxFor(t), tgz(t, entry{name: "a", body: "x"}), api.PlanOptions{})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 501 {
		t.Errorf("err = %v; want a 501", err)
	}
	in, err := e.client(t, readToken).Info(ctxFor(t))
	if err != nil || in.Features["plan"] {
		t.Errorf("info = %+v, %v; want feature plan false", in, err)
	}
}

// A gzip bomb stops at MaxPlanTree, whatever its compressed size.
func TestUnpackTreeStopsABomb(t *testing.T) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	for i := range 3 {
		size := int64(api.MaxPlanTree / 2)
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%d", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: size}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(tw, zeros{}, size); err != nil {
			t.Fatal(err)
		}
	}
	_ = tw.Close()
	_ = zw.Close()
	if buf.Len() > api.MaxPlanUpload {
		t.Fatalf("the bomb weighs %d bytes compressed; the test wants it under the upload limit", buf.Len())
	}
	if _, err := api.UnpackTree(&buf); err == nil || !strings.Contains(err.Error(), "unpacked") {
		t.Errorf("err = %v; want the unpacked limit", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// FuzzUnpackTree: whatever the bytes, the unpacker errs or yields a tree of valid,
// relative paths only, within its limits.
func FuzzUnpackTree(f *testing.F) {
	f.Add(tgz(f, entry{name: "bosun.yml", body: "{}"}, entry{name: "deployments/web/manifest.yml", body: "name: web"}))
	f.Add(tgz(f, entry{name: "../x", body: "x"}))
	f.Add(tgz(f, entry{name: "a", typ: tar.TypeSymlink, link: "../../etc"}))
	f.Add(tgz(f, entry{name: "./a/./b//c", body: "x"}, entry{name: "a/", typ: tar.TypeDir}))
	f.Add([]byte("not gzip"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tree, err := api.UnpackTree(bytes.NewReader(b))
		if err != nil {
			return
		}
		var total int64
		n := 0
		err = fs.WalkDir(tree, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			n++
			if !fs.ValidPath(p) || strings.HasPrefix(p, "/") || slices.Contains(strings.Split(p, "/"), "..") {
				t.Fatalf("path %q escapes", p)
			}
			if d.Type()&fs.ModeSymlink != 0 || !d.IsDir() && !d.Type().IsRegular() {
				t.Fatalf("%s: type %v", p, d.Type())
			}
			if !d.IsDir() {
				fi, err := d.Info()
				if err != nil {
					return err
				}
				total += fi.Size()
			}
			return nil
		})
		if err != nil {
			t.Fatalf("the tree does not walk: %v", err)
		}
		if total > api.MaxPlanTree || n > 2*api.MaxPlanFiles+1 {
			t.Fatalf("%d bytes in %d entries", total, n)
		}
	})
}
