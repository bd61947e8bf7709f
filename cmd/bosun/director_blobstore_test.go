package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/blobstore/signed"
	"github.com/bosun-gitops/bosun/cpi"
)

func TestBlobstoreFlagsCheck(t *testing.T) {
	for _, tt := range []struct {
		name    string
		f       blobstoreFlags
		wantErr string // "" means no error
	}{
		{name: "defaults: https with the director's own CA"},
		{name: "https URL", f: blobstoreFlags{url: "https://director.example.com/blobstore"}},
		{name: "own certificate", f: blobstoreFlags{url: "https://10.0.0.5:25250", tlsCert: "c.pem", tlsKey: "k.pem"}},
		{name: "own certificate and CA", f: blobstoreFlags{tlsCert: "c.pem", tlsKey: "k.pem", tlsCA: "ca.pem"}},
		{name: "plain HTTP, opted out", f: blobstoreFlags{url: "http://10.0.0.5:25250", insecureHTTP: true}},
		{name: "opted out, default URL", f: blobstoreFlags{insecureHTTP: true}},
		{name: "TLS proxy in front", f: blobstoreFlags{url: "https://proxy.example.com", insecureHTTP: true, tlsCA: "ca.pem"}},
		{name: "plain HTTP without opting out", f: blobstoreFlags{url: "http://10.0.0.5:25250"}, wantErr: "passwords and private keys"},
		{name: "cert without key", f: blobstoreFlags{tlsCert: "c.pem"}, wantErr: "go together"},
		{name: "key without cert", f: blobstoreFlags{tlsKey: "k.pem"}, wantErr: "go together"},
		{name: "opted out with a cert", f: blobstoreFlags{insecureHTTP: true, tlsCert: "c.pem", tlsKey: "k.pem"}, wantErr: "does not go with"},
		{name: "CA without cert", f: blobstoreFlags{tlsCA: "ca.pem"}, wantErr: "makes its own CA"},
		{name: "CA for plain HTTP", f: blobstoreFlags{url: "http://10.0.0.5", insecureHTTP: true, tlsCA: "ca.pem"}, wantErr: "no certificate to check"},
		{name: "no scheme", f: blobstoreFlags{url: "10.0.0.5:25250"}, wantErr: "want https://"},
		{name: "ftp", f: blobstoreFlags{url: "ftp://10.0.0.5"}, wantErr: "want https://"},
		{name: "query", f: blobstoreFlags{url: "https://10.0.0.5:25250/?x=1"}, wantErr: "no query"},
		{name: "credentials", f: blobstoreFlags{url: "https://user:pw@10.0.0.5:25250"}, wantErr: "no query or credentials"},
	} {
		err := tt.f.check()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: err = %v; want one saying %q", tt.name, err, tt.wantErr)
		case err != nil && !errors.Is(err, errUsage):
			t.Errorf("%s: %v is not a usage error", tt.name, err)
		}
	}
}

func TestAdvertised(t *testing.T) {
	for _, tt := range []struct {
		addr     string
		wantHost string // "" means: any address but the unspecified one
	}{
		{addr: "127.0.0.1:25250", wantHost: "127.0.0.1"},
		{addr: "10.1.2.3:25250", wantHost: "10.1.2.3"},
		{addr: "0.0.0.0:25250"},
		{addr: "[::]:25250"},
	} {
		tcp, err := net.ResolveTCPAddr("tcp", tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		host, port, err := net.SplitHostPort(advertised(tcp))
		if err != nil {
			t.Fatalf("%s: %v", tt.addr, err)
		}
		if port != "25250" {
			t.Errorf("%s: port %s; want 25250", tt.addr, port)
		}
		switch ip := net.ParseIP(host); {
		case tt.wantHost != "" && host != tt.wantHost:
			t.Errorf("%s: advertised host %s; want %s", tt.addr, host, tt.wantHost)
		case ip == nil || ip.IsUnspecified():
			t.Errorf("%s: advertised host %s is not dialable", tt.addr, host)
		}
	}
}

func TestLoopback(t *testing.T) {
	for base, want := range map[string]bool{
		"http://127.0.0.1:25250":       true,
		"http://localhost:25250":       true,
		"http://[::1]:25250":           true,
		"http://10.0.0.5:25250":        false,
		"https://director.example.com": false,
	} {
		if got := loopback(base); got != want {
			t.Errorf("loopback(%s) = %v; want %v", base, got, want)
		}
	}
}

func TestBlobSigningKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := blobSigningKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != 32 {
		t.Errorf("key is %d bytes; want 32", len(k1))
	}
	fi, err := os.Stat(filepath.Join(dir, blobstoreKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v; want 0600", fi.Mode().Perm())
	}
	// A restarted director signs with the same key: URLs it handed out still work.
	k2, err := blobSigningKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, k2) {
		t.Error("the key changed on the second load")
	}
	if err := os.WriteFile(filepath.Join(dir, blobstoreKeyFile), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := blobSigningKey(dir); err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("a bad key file: err = %v; want an error that does not quote it", err)
	}
}

// The local CPI's agents read the blobs directory; no signer is set.
func TestAgentSettingsLocal(t *testing.T) {
	d := &director{dataDir: "/data", natsURL: "nats://x"}
	got, err := d.agentSettings("a1")
	if err != nil {
		t.Fatal(err)
	}
	want := cpi.Blobstore{Provider: "local", Options: map[string]any{"blobstore_path": filepath.Join("/data", "blobs")}}
	if diff := cmp.Diff(want, got.Blobstore); diff != "" {
		t.Errorf("blobstore settings (-want +got):\n%s", diff)
	}
	if d.urlSigner() != nil {
		t.Error("converge gets a signer with the local CPI")
	}
}

// A director on a cloud serves its blobstore over HTTPS with a CA of its own: agents are
// told no path but the CA, converge signs, and a signed URL fetches the blob from the
// listener through a client trusting that CA; a forged one does not.
func TestServeBlobstore(t *testing.T) {
	var logs bytes.Buffer
	d := &director{log: slog.New(slog.NewTextHandler(&logs, nil)), dataDir: t.TempDir(), natsURL: "nats://x", status: map[string]string{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := serveBlobstore(d, blobstoreFlags{}, l); err != nil {
		t.Fatal(err)
	}
	if d.urlSigner() == nil {
		t.Fatal("converge gets no signer")
	}
	if want := "https://" + l.Addr().String(); d.blobSigner.Base != want {
		t.Errorf("base URL %s; want %s", d.blobSigner.Base, want)
	}
	got, err := d.agentSettings("a1")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(d.dataDir, blobCACertFile))
	if err != nil {
		t.Fatal(err)
	}
	want := cpi.Blobstore{Provider: "dav", Options: map[string]any{
		"endpoint": d.blobSigner.Base,
		"tls":      map[string]any{"cert": map[string]any{"ca": string(caPEM)}},
	}}
	if diff := cmp.Diff(want, got.Blobstore); diff != "" {
		t.Errorf("cloud agents' blobstore settings (-want +got):\n%s", diff)
	}

	ctx, store, dg := serveAPackage(t, d)
	// The agent's client, made from what its settings say.
	client, err := signed.NewClient(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := client.Download(ctx, d.blobSigner.SignGet(dg), nil, dg, &buf); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "a package" {
		t.Errorf("downloaded %q", buf.String())
	}
	// A compile result goes up through a PUT URL and lands in the director's blobstore.
	up, err := client.Upload(ctx, d.blobSigner.SignPut(""), nil, strings.NewReader("compiled"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := store.Exists(ctx, up); !ok {
		t.Error("the uploaded blob is not in the data dir's blobstore")
	}
	forged := strings.Replace(d.blobSigner.SignGet(dg), "sig=", "sig=00", 1)
	resp, err := client.HTTP.Get(forged)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged URL answered %s; want 403", resp.Status)
	}
	// Plain HTTP reaches no blob: the listener speaks TLS only.
	if resp, err := http.Get(strings.Replace(d.blobSigner.SignGet(dg), "https://", "http://", 1)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the blob was served over plain HTTP")
		}
	}
	// A client with the system roots does not take the director's certificate.
	if err := (signed.Client{}).Download(ctx, d.blobSigner.SignGet(dg), nil, dg, io.Discard); err == nil {
		t.Error("a client without the director's CA downloaded the blob")
	}

	metrics := scrape(t, d)
	for _, want := range []string{
		`bosun_blobstore_requests_total{code="200",method="GET",scheme="https"} 1`,
		`bosun_blobstore_requests_total{code="201",method="PUT",scheme="https"} 1`,
		`bosun_blobstore_requests_total{code="403",method="GET",scheme="https"} 1`,
	} {
		if !strings.Contains("\n"+metrics, "\n"+want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, metrics)
		}
	}
	if strings.Contains(metrics, `scheme="http"`) {
		t.Errorf("the blobstore answered plain HTTP:\n%s", metrics)
	}
	key, err := blobSigningKey(d.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{hex.EncodeToString(key), "sig=", "PRIVATE KEY"}
	for _, f := range []string{blobCAKeyFile, blobTLSKeyFile} {
		secrets = append(secrets, pemBody(t, filepath.Join(d.dataDir, f)))
	}
	for _, secret := range secrets {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the director's log holds %q:\n%s", secret, logs.String())
		}
	}
}

// With --blobstore-insecure-http the blobstore is plain HTTP, agents get no CA, and the
// log says what that exposes.
func TestServeBlobstoreInsecureHTTP(t *testing.T) {
	var logs bytes.Buffer
	d := &director{log: slog.New(slog.NewTextHandler(&logs, nil)), dataDir: t.TempDir(), natsURL: "nats://x", status: map[string]string{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := serveBlobstore(d, blobstoreFlags{insecureHTTP: true}, l); err != nil {
		t.Fatal(err)
	}
	want := cpi.Blobstore{Provider: "dav", Options: map[string]any{"endpoint": "http://" + l.Addr().String()}}
	if diff := cmp.Diff(want, d.agentBlobstore()); diff != "" {
		t.Errorf("blobstore settings (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(d.dataDir, blobCAKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a plain HTTP blobstore made a CA: %v", err)
	}
	ctx, _, dg := serveAPackage(t, d)
	if err := (signed.Client{}).Download(ctx, d.blobSigner.SignGet(dg), nil, dg, io.Discard); err != nil {
		t.Fatal(err)
	}
	if m := scrape(t, d); !strings.Contains(m, `bosun_blobstore_requests_total{code="200",method="GET",scheme="http"} 1`) {
		t.Errorf("metrics:\n%s", m)
	}
	if !strings.Contains(logs.String(), "plain HTTP") {
		t.Errorf("the log does not warn of plain HTTP:\n%s", logs.String())
	}
}

// A bad --blobstore-url or TLS flag set is refused at start, even when serveBlobstore is
// reached without the verb's own check.
func TestServeBlobstoreRefusesPlainHTTP(t *testing.T) {
	d := &director{log: slog.New(slog.DiscardHandler), dataDir: t.TempDir(), natsURL: "nats://x", status: map[string]string{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = serveBlobstore(d, blobstoreFlags{url: "http://" + l.Addr().String()}, l)
	if err == nil || !strings.Contains(err.Error(), "--blobstore-insecure-http") {
		t.Errorf("err = %v; want one naming --blobstore-insecure-http", err)
	}
	if d.blobSigner != nil {
		t.Error("a signer was set up anyway")
	}
}

func scrape(t *testing.T, d *director) string {
	t.Helper()
	var metrics bytes.Buffer
	mw := api.NewMetricsWriter(&metrics)
	for _, m := range d.api.Metrics {
		m(context.Background(), mw)
	}
	if err := mw.Flush(); err != nil {
		t.Fatal(err)
	}
	return metrics.String()
}

// pemBody is a PEM file's first base64 line: a part of a key no log may hold.
func pemBody(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 2 || len(lines[1]) < 20 {
		t.Fatalf("%s is no PEM file", path)
	}
	return lines[1]
}

// serveAPackage runs the director's roles until the test ends and puts "a package" in its
// blobstore.
func serveAPackage(t *testing.T, d *director) (context.Context, *local.Store, blobstore.Digest) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("blobstore role: %v", err)
		}
	})
	store, err := local.Open(d.blobDir())
	if err != nil {
		t.Fatal(err)
	}
	dg, err := store.Put(ctx, strings.NewReader("a package"))
	if err != nil {
		t.Fatal(err)
	}
	return ctx, store, dg
}
