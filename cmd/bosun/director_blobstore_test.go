package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/blobstore/signed"
	"github.com/bosun-gitops/bosun/cpi"
)

func TestBlobstoreFlagsCheck(t *testing.T) {
	for _, tt := range []struct {
		url     string
		wantErr bool
	}{
		{url: ""},
		{url: "http://10.0.0.5:25250"},
		{url: "https://director.example.com/blobstore"},
		{url: "10.0.0.5:25250", wantErr: true},
		{url: "ftp://10.0.0.5", wantErr: true},
		{url: "http://10.0.0.5:25250/?x=1", wantErr: true},
		{url: "http://user:pw@10.0.0.5:25250", wantErr: true},
	} {
		err := blobstoreFlags{url: tt.url}.check()
		if (err != nil) != tt.wantErr {
			t.Errorf("--blobstore-url %q: err = %v; want error %v", tt.url, err, tt.wantErr)
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

// A director on a cloud serves its blobstore over HTTP: agents are told no path, converge
// signs, and a signed URL fetches the blob from the listener; a forged one does not.
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
	if want := "http://" + l.Addr().String(); d.blobSigner.Base != want {
		t.Errorf("base URL %s; want %s", d.blobSigner.Base, want)
	}
	got, err := d.agentSettings("a1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cpi.Blobstore{}, got.Blobstore); diff != "" {
		t.Errorf("cloud agents' blobstore settings (-want +got):\n%s", diff)
	}

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
	var buf bytes.Buffer
	if err := (signed.Client{}).Download(ctx, d.blobSigner.SignGet(dg), nil, dg, &buf); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "a package" {
		t.Errorf("downloaded %q", buf.String())
	}
	// A compile result goes up through a PUT URL and lands in the director's blobstore.
	up, err := (signed.Client{}).Upload(ctx, d.blobSigner.SignPut(""), nil, strings.NewReader("compiled"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := store.Exists(ctx, up); !ok {
		t.Error("the uploaded blob is not in the data dir's blobstore")
	}
	forged := strings.Replace(d.blobSigner.SignGet(dg), "sig=", "sig=00", 1)
	resp, err := http.Get(forged)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged URL answered %s; want 403", resp.Status)
	}

	var metrics bytes.Buffer
	mw := api.NewMetricsWriter(&metrics)
	for _, m := range d.api.Metrics {
		m(ctx, mw)
	}
	if err := mw.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`bosun_blobstore_requests_total{code="200",method="GET"} 1`,
		`bosun_blobstore_requests_total{code="201",method="PUT"} 1`,
		`bosun_blobstore_requests_total{code="403",method="GET"} 1`,
	} {
		if !strings.Contains("\n"+metrics.String(), "\n"+want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, metrics.String())
		}
	}
	key, err := blobSigningKey(d.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{hex.EncodeToString(key), "sig="} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the director's log holds %q:\n%s", secret, logs.String())
		}
	}
}
