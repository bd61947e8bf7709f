package agent_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/blobstore/signed"
	"github.com/bosun-gitops/bosun/internal/testcert"
)

// tlsBlobstore is a director's blobstore served over TLS with a certificate of its own.
type tlsBlobstore struct {
	signer *signed.Signer
	store  *local.Store
	ca     []byte
}

func newTLSBlobstore(t *testing.T) tlsBlobstore {
	t.Helper()
	cert, ca := testcert.SelfSigned(t)
	store, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := signed.NewSigner([]byte("tls-blobstore-test-key"), time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(signed.Handler(store, s, slog.New(slog.DiscardHandler)))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the test's
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.Base = srv.URL
	return tlsBlobstore{signer: s, store: store, ca: ca}
}

// settings is the blobstore section the director hands agents for it (BOSH's dav shape).
func (b tlsBlobstore) settings(ca []byte) map[string]any {
	return map[string]any{"provider": "dav", "options": map[string]any{
		"endpoint": b.signer.Base, "tls": map[string]any{"cert": map[string]any{"ca": string(ca)}}}}
}

func (b tlsBlobstore) put(t *testing.T, content []byte) protocol.BlobRef {
	t.Helper()
	dg, err := b.store.Put(context.Background(), bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	return protocol.BlobRef{BlobstoreID: dg.Hex(), SHA1: string(dg), SignedURL: b.signer.SignGet(dg)}
}

// TestUpdateSettingsBlobstores: a director whose blobstore CA changed tells a running
// agent with update_settings (BOSH's blobstores list); the agent trusts the new CA at
// once, no longer the old one, and keeps to that after a restart, although its
// settings.json still names the old CA.
func TestUpdateSettingsBlobstores(t *testing.T) {
	ctx := context.Background()
	d := newDirector(t)
	old, cur := newTLSBlobstore(t), newTLSBlobstore(t)
	const id = "agent-ca"
	root := t.TempDir()
	kill := d.runAgentWith(t, id, root, nil, old.settings(old.ca))

	n := 0
	// applyFrom has the agent download a package (a new version each time, so it is
	// fetched and not found installed) from b.
	applyFrom := func(b tlsBlobstore) error {
		n++
		ref := b.put(t, tgz(t, file{"bin/hello", 0o755, fmt.Sprintf("#!/bin/sh\necho %d\n", n)}))
		return d.client.Apply(ctx, id, protocol.ApplySpec{Deployment: "demo", Name: "web", ID: "uuid-ca",
			Job:      protocol.JobSpec{Name: "web", Templates: []protocol.JobTemplate{}},
			Packages: map[string]protocol.PackageSpec{"hello": {Name: "hello", Version: strconv.Itoa(n), BlobRef: ref}}})
	}
	refused := func(what string, b tlsBlobstore) {
		t.Helper()
		err := applyFrom(b)
		if protocol.CodeOf(err) != protocol.CodeBlobFetch || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Errorf("%s: apply = %v; want a blob fetch error for an unknown authority", what, err)
		}
	}
	trusted := func(what string, b tlsBlobstore) {
		t.Helper()
		if err := applyFrom(b); err != nil {
			t.Errorf("%s: apply: %v", what, err)
		}
	}

	trusted("the blobstore of settings.json's CA", old)
	refused("before update_settings, a blobstore with another CA", cur)

	if err := d.client.UpdateSettings(ctx, id, map[string]any{"blobstores": []any{cur.settings(cur.ca)}}); err != nil {
		t.Fatalf("update_settings: %v", err)
	}
	trusted("after update_settings, the new CA's blobstore", cur)
	refused("after update_settings, the old CA's blobstore", old)

	// A CA that is no certificate is refused and changes nothing.
	err := d.client.UpdateSettings(ctx, id, map[string]any{"blobstores": []any{cur.settings([]byte("not a PEM"))}})
	if protocol.CodeOf(err) != protocol.CodeBadArguments || !strings.Contains(err.Error(), "blobstores[0].options.tls.cert.ca: blobstore CA: no PEM certificate") {
		t.Errorf("update_settings with a bad CA = %v; want bad arguments naming blobstores[0].options.tls.cert.ca", err)
	}
	err = d.client.UpdateSettings(ctx, id, map[string]any{"blobstores": []any{map[string]any{"provider": "s3"}}})
	if protocol.CodeOf(err) != protocol.CodeBadArguments || !strings.Contains(err.Error(), `blobstores[0].provider "s3" is not supported`) {
		t.Errorf("update_settings with an unknown provider = %v; want bad arguments", err)
	}
	trusted("after refused update_settings, the new CA's blobstore", cur)

	// Without blobstores, update_settings leaves the blobstore alone.
	if err := d.client.UpdateSettings(ctx, id, map[string]any{"trusted_certs": "", "disk_associations": []any{}}); err != nil {
		t.Fatalf("update_settings without blobstores: %v", err)
	}
	trusted("after update_settings without blobstores", cur)

	// settings.json still names the old CA; the director's update outlives the agent.
	kill()
	d.runAgentWith(t, id, root, nil, old.settings(old.ca))
	trusted("after a restart, the new CA's blobstore", cur)
	refused("after a restart, the old CA's blobstore", old)
}
