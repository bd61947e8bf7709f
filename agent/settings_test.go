package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/blobstore/signed"
	"github.com/bosun-gitops/bosun/internal/testcert"
)

// davSettings are settings.json with the blobstore section the director gives cloud
// agents (BOSH's dav shape, without credentials).
func davSettings(t *testing.T, endpoint string, ca []byte) []byte {
	t.Helper()
	opts := map[string]any{"endpoint": endpoint}
	if ca != nil {
		opts["tls"] = map[string]any{"cert": map[string]any{"ca": string(ca)}}
	}
	b, err := json.Marshal(map[string]any{"agent_id": "a1", "mbus": "nats://x", "blobstore": map[string]any{"provider": "dav", "options": opts}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSettingsBlobstoreCA(t *testing.T) {
	_, ca := testcert.SelfSigned(t)
	s, err := ParseSettings(davSettings(t, "https://10.0.0.5:25250", ca))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(ca), s.Blobstore.CA()); diff != "" {
		t.Errorf("CA (-want +got):\n%s", diff)
	}
	if s, err := ParseSettings(davSettings(t, "https://10.0.0.5:25250", nil)); err != nil || s.Blobstore.CA() != "" {
		t.Errorf("no CA: %v, CA %q", err, s.Blobstore.CA())
	}
	for _, tc := range []struct{ in, err string }{
		{`{"agent_id":"a","mbus":"x","blobstore":{"provider":"dav","options":{"tls":{"cert":{"ca":"hello"}}}}}`, "blobstore.options.tls.cert.ca: blobstore CA: no PEM certificate"},
		{`{"agent_id":"a","mbus":"x","blobstore":{"provider":"dav","options":{"tls":{"cert":{"ca":7}}}}}`, `blobstore.options.tls: want {"cert": {"ca": "<PEM>"}}`},
		{`{"agent_id":"a","mbus":"x","blobstore":{"provider":"dav","options":{"tls":"yes"}}}`, `blobstore.options.tls: want`},
		{`{"agent_id":"a","mbus":"x","blobstore":{"provider":"dav","options":{"tls":{"cert":{"ca":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}}}}}`, `"PRIVATE KEY" block`},
	} {
		if _, err := ParseSettings([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseSettings(%s) = %v, want %q", tc.in, err, tc.err)
		}
	}
}

// The agent's signed-URL client trusts exactly the CA in its settings: it fetches from
// the director's blobstore and refuses a server whose certificate another CA signed (a
// machine on the VMs' network answering for the director).
func TestAgentClientTrustsSettingsCA(t *testing.T) {
	ctx := context.Background()
	director, directorCA := testcert.SelfSigned(t)
	impostor, _ := testcert.SelfSigned(t)
	serve := func(cert tls.Certificate) (*signed.Signer, *local.Store) {
		store, err := local.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		s, err := signed.NewSigner([]byte("agent-tls-test-key-0123"), time.Minute, "")
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(signed.Handler(store, s, slog.New(slog.DiscardHandler)))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		s.Base = srv.URL
		return s, store
	}
	good, goodStore := serve(director)
	bad, badStore := serve(impostor)
	d, err := goodStore.Put(ctx, strings.NewReader("rendered templates"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := badStore.Put(ctx, strings.NewReader("rendered templates")); err != nil {
		t.Fatal(err)
	}

	s, err := ParseSettings(davSettings(t, good.Base, directorCA))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(s, nil, Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.blobs().http.Download(ctx, good.SignGet(d), nil, d, io.Discard); err != nil {
		t.Errorf("from the director's blobstore: %v", err)
	}
	if err := a.blobs().http.Download(ctx, bad.SignGet(d), nil, d, io.Discard); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("from a server with another CA: err = %v; want an unknown authority", err)
	}

	// Without a CA, https URLs are checked with the system roots, which know neither.
	s, err = ParseSettings(davSettings(t, good.Base, nil))
	if err != nil {
		t.Fatal(err)
	}
	if a, err = New(s, nil, Options{Root: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if err := a.blobs().http.Download(ctx, good.SignGet(d), nil, d, io.Discard); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a private CA's server with the system roots: err = %v; want a certificate error", err)
	}
}

// update_settings' blobstores: the first entry is used; an empty list goes back to
// settings.json's blobstore; what is not a list of blobstores is refused.
func TestUpdateSettingsBlobstoresShape(t *testing.T) {
	ctx := context.Background()
	_, ca1 := testcert.SelfSigned(t)
	_, ca2 := testcert.SelfSigned(t)
	s, err := ParseSettings(davSettings(t, "https://10.0.0.5:25250", ca1))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(s, nil, Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dav := func(endpoint string, ca []byte) map[string]any {
		return map[string]any{"provider": "dav", "options": map[string]any{"endpoint": endpoint, "tls": map[string]any{"cert": map[string]any{"ca": string(ca)}}}}
	}
	update := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.updateSettings(ctx, []json.RawMessage{b})
		return err
	}
	current := func() (string, string) {
		a.settingsMu.Lock()
		defer a.settingsMu.Unlock()
		e, _ := a.settings.Blobstore.Options["endpoint"].(string)
		return e, a.settings.Blobstore.CA()
	}
	for _, tc := range []struct {
		name     string
		in       any
		err      string
		endpoint string
		ca       []byte
	}{
		{"first of two", map[string]any{"blobstores": []any{dav("https://10.0.0.6:25250", ca2), dav("https://10.0.0.7:25250", ca1)}}, "", "https://10.0.0.6:25250", ca2},
		{"not a list", map[string]any{"blobstores": dav("https://10.0.0.8:25250", ca1)}, "blobstores: want a list", "https://10.0.0.6:25250", ca2},
		{"a bad second entry", map[string]any{"blobstores": []any{dav("https://10.0.0.8:25250", ca1), dav("https://10.0.0.9:25250", []byte("x"))}}, "blobstores[1].options.tls.cert.ca", "https://10.0.0.6:25250", ca2},
		{"null", map[string]any{"blobstores": nil}, "", "https://10.0.0.6:25250", ca2},
		{"empty: back to settings.json", map[string]any{"blobstores": []any{}}, "", "https://10.0.0.5:25250", ca1},
	} {
		err := update(tc.in)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: update_settings = %v; want error %q", tc.name, err, tc.err)
		}
		e, ca := current()
		if diff := cmp.Diff([]string{tc.endpoint, string(tc.ca)}, []string{e, ca}); diff != "" {
			t.Errorf("%s: blobstore (-want +got):\n%s", tc.name, diff)
		}
	}
}
