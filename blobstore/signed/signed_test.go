package signed

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/blobstore/local"
)

func setup(t *testing.T) (*Signer, *local.Store, *httptest.Server) {
	t.Helper()
	store, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner([]byte("0123456789abcdef0123"), time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(store, s, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	s.Base = srv.URL
	return s, store, srv
}

func TestGetAndPut(t *testing.T) {
	ctx := context.Background()
	s, store, _ := setup(t)
	content := []byte("package bits")
	d, err := store.Put(ctx, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := (Client{}).Download(ctx, s.SignGet(d), nil, d, &buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), content) {
		t.Fatalf("downloaded %q", buf.Bytes())
	}
	up := []byte("compiled result")
	got, err := (Client{}).Upload(ctx, s.SignPut(""), nil, bytes.NewReader(up))
	if err != nil {
		t.Fatal(err)
	}
	if got != blobstore.DigestOf(up) {
		t.Fatalf("upload digest %s, want %s", got, blobstore.DigestOf(up))
	}
	if ok, _ := store.Exists(ctx, got); !ok {
		t.Fatal("uploaded blob not in store")
	}
	// A PUT URL for a named digest refuses other content.
	if _, err := (Client{}).Upload(ctx, s.SignPut(blobstore.DigestOf([]byte("a"))), nil, strings.NewReader("b")); err == nil {
		t.Fatal("upload of content not matching the signed digest succeeded")
	}
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	s, store, srv := setup(t)
	d, _ := store.Put(ctx, strings.NewReader("x"))
	other := blobstore.DigestOf([]byte("y"))
	expired := *s
	expired.now = func() time.Time { return time.Now().Add(-2 * time.Minute) }
	tests := []struct {
		name, method, url, want string
		status                  int
	}{
		{"expired", "GET", expired.SignGet(d), "signature expired", 403},
		{"forged", "GET", strings.Replace(s.SignGet(d), "sig=", "sig=00", 1), "signature does not match", 403},
		{"other digest", "GET", strings.Replace(s.SignGet(d), d.Hex(), other.Hex(), 1), "signature does not match", 403},
		{"get url used to put", "PUT", s.SignGet(d), "signature is for GET, not PUT", 403},
		{"unsigned", "GET", srv.URL + "/blobs/" + d.Hex(), "signature is for , not GET", 403},
		{"bad digest", "GET", srv.URL + "/blobs/zz", "malformed blob digest", 400},
		{"missing", "GET", s.SignGet(other), "blob not found", 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, tc.method, tc.url, strings.NewReader("x"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
				t.Fatalf("got %d %q, want %d containing %q", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}
}

func TestDownloadVerifiesDigest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "not what was promised")
	}))
	defer srv.Close()
	err := (Client{}).Download(context.Background(), srv.URL+"/blobs/x?sig=secret", nil, blobstore.DigestOf([]byte("promised")), io.Discard)
	if !errors.Is(err, blobstore.ErrDigestMismatch) {
		t.Fatalf("Download = %v, want ErrDigestMismatch", err)
	}
}

func TestErrorsDoNotLeakSignature(t *testing.T) {
	for _, tt := range []struct {
		name string
		call func(url string) error
		url  string
	}{
		{"download unreachable", download, "http://127.0.0.1:1/blobs/x?sig=topsecret"},
		{"upload unreachable", upload, "http://127.0.0.1:1/blobs/any?sig=topsecret"},
		// A URL that does not parse fails before any request; its error names the URL.
		{"download malformed", download, "http://bad host/blobs/x?sig=topsecret"},
		{"upload malformed", upload, "http://bad host/blobs/any?sig=topsecret"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(tt.url)
			if err == nil || strings.Contains(err.Error(), "topsecret") {
				t.Fatalf("error %v leaks the signature", err)
			}
		})
	}
}

func download(u string) error {
	return (Client{}).Download(context.Background(), u, nil, blobstore.DigestOf(nil), io.Discard)
}

func upload(u string) error {
	_, err := (Client{}).Upload(context.Background(), u, nil, strings.NewReader("x"))
	return err
}

func BenchmarkSignAndCheck(b *testing.B) {
	s, _ := NewSigner([]byte("0123456789abcdef0123"), time.Minute, "http://x")
	d := blobstore.DigestOf([]byte("x"))
	for b.Loop() {
		u := s.SignGet(d)
		q := u[strings.IndexByte(u, '?')+1:]
		vals, _ := urlParseQuery(q)
		if s.check("GET", d.Hex(), vals) != "" {
			b.Fatal("check failed")
		}
	}
}

func urlParseQuery(q string) (map[string][]string, error) { return url.ParseQuery(q) }
