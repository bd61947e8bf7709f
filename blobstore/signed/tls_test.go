package signed

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/internal/testcert"
)

// tlsSetup serves a store over TLS with a self-signed certificate of its own (httptest's
// built-in one is the same for every server) and returns its PEM, the CA clients trust.
func tlsSetup(t *testing.T, redirectTo string) (*Signer, *local.Store, []byte) {
	t.Helper()
	store, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner([]byte("0123456789abcdef0123"), time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/blobs/", Handler(store, s, slog.New(slog.DiscardHandler)))
	if redirectTo != "" {
		mux.Handle("/elsewhere", http.RedirectHandler(redirectTo, http.StatusFound))
	}
	cert, caPEM := testcert.SelfSigned(t)
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.Base = srv.URL
	return s, store, caPEM
}

// A client given a CA downloads and uploads from a server whose certificate chains to
// it, and refuses a server with another CA, plain HTTP, and redirects to plain HTTP.
func TestNewClientTrustsExactlyItsCA(t *testing.T) {
	ctx := context.Background()
	plain, plainStore, _ := setup(t)
	pd, err := plainStore.Put(ctx, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	s, store, ca := tlsSetup(t, plain.SignGet(pd))
	other, otherStore, _ := tlsSetup(t, "")
	c, err := NewClient(ca)
	if err != nil {
		t.Fatal(err)
	}
	d, err := store.Put(ctx, strings.NewReader("rendered templates"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.Download(ctx, s.SignGet(d), nil, d, &buf); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "rendered templates" {
		t.Errorf("downloaded %q", buf.String())
	}
	if _, err := c.Upload(ctx, s.SignPut(""), nil, strings.NewReader("compiled")); err != nil {
		t.Fatal(err)
	}

	if _, err := otherStore.Put(ctx, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	for name, url := range map[string]string{
		"another CA": other.SignGet(pd),
		"plain HTTP": plain.SignGet(pd),
	} {
		err := c.Download(ctx, url, nil, pd, io.Discard)
		if err == nil {
			t.Errorf("%s: downloaded", name)
			continue
		}
		if strings.Contains(err.Error(), "sig=") {
			t.Errorf("%s: the error holds the signature: %v", name, err)
		}
		if want := map[string]string{"another CA": "unknown authority", "plain HTTP": "TLS only"}[name]; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v; want one saying %q", name, err, want)
		}
	}
	if _, err := c.Upload(ctx, plain.SignPut(""), nil, strings.NewReader("compiled")); err == nil || !strings.Contains(err.Error(), "TLS only") {
		t.Errorf("upload over plain HTTP: err = %v; want a refusal", err)
	}

	// The right server, redirecting to plain HTTP.
	if err := c.Download(ctx, s.Base+"/elsewhere", nil, pd, io.Discard); err == nil || !strings.Contains(err.Error(), "TLS only") {
		t.Errorf("redirect to plain HTTP: err = %v; want a refusal", err)
	}
}

// Without a CA, the client verifies with the system roots: a self-signed server is
// refused (nothing skips verification), and plain HTTP is allowed.
func TestNewClientWithoutCA(t *testing.T) {
	ctx := context.Background()
	s, store, _ := tlsSetup(t, "")
	c, err := NewClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := store.Put(ctx, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Download(ctx, s.SignGet(d), nil, d, io.Discard); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a self-signed server with the system roots: err = %v; want a certificate error", err)
	}
	plain, plainStore, _ := setup(t)
	pd, err := plainStore.Put(ctx, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Download(ctx, plain.SignGet(pd), nil, pd, io.Discard); err != nil {
		t.Errorf("plain HTTP without a CA: %v", err)
	}
}

func TestCertPool(t *testing.T) {
	_, _, ca := tlsSetup(t, "")
	key := "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"
	for _, tt := range []struct {
		name, in, wantErr string
	}{
		{name: "one CA", in: string(ca)},
		{name: "two CAs", in: string(ca) + string(ca)},
		{name: "empty", in: "", wantErr: "no PEM certificate"},
		{name: "not PEM", in: "hello", wantErr: "no PEM certificate"},
		{name: "a key beside", in: string(ca) + key, wantErr: `"PRIVATE KEY" block`},
		{name: "garbled certificate", in: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", wantErr: "blobstore CA"},
	} {
		_, err := CertPool([]byte(tt.in))
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: err = %v; want one saying %q", tt.name, err, tt.wantErr)
		case err != nil && strings.Contains(err.Error(), "c2VjcmV0"):
			t.Errorf("%s: the error quotes the key: %v", tt.name, err)
		}
	}
	if _, err := NewClient([]byte("hello")); err == nil {
		t.Error("NewClient took a CA with no certificate")
	}
}
