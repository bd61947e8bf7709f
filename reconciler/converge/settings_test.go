package converge_test

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/bosun-gitops/bosun/blobstore/signed"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/state"
)

// A director whose blobstore settings changed (a new CA, say) gives each running agent
// the new ones with update_settings, once: before the apply of an instance a deploy
// changes, and to the instances it keeps as they are; records from before the blobstore
// hash was kept count as out of date. New VMs boot with the current ones and need none.
func TestBlobstoreSettingsUpdate(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	var mu sync.Mutex
	ca := "CA-1"
	setCA := func(s string) { mu.Lock(); ca = s; mu.Unlock() }
	blobstore := func() cpi.Blobstore {
		mu.Lock()
		defer mu.Unlock()
		return cpi.Blobstore{Provider: "dav", Options: map[string]any{"endpoint": "https://10.0.0.1:25250",
			"tls": map[string]any{"cert": map[string]any{"ca": ca}}}}
	}
	signer, err := signed.NewSigner([]byte("converge-test-blob-key"), time.Minute, "https://10.0.0.1:25250")
	if err != nil {
		t.Fatal(err)
	}
	h, _, agents := newFakeHarnessConfig(t, nil, func(c *converge.Config) {
		c.Signer = signer
		c.Settings = func(id string) (cpi.AgentSettings, error) {
			return cpi.AgentSettings{Mbus: "nats://" + id + ":secret@127.0.0.1:1", Blobstore: blobstore()}, nil
		}
	})
	// sent returns the CAs each instance's agent was sent with update_settings since
	// the last call, by agent id.
	sent := func() map[string][]string {
		agents.mu.Lock()
		defer agents.mu.Unlock()
		out := map[string][]string{}
		for id, calls := range agents.settings {
			for _, c := range calls {
				var args []struct {
					Blobstores []cpi.Blobstore `json:"blobstores"`
				}
				if err := json.Unmarshal(c, &args); err != nil || len(args) != 1 || len(args[0].Blobstores) != 1 {
					t.Fatalf("update_settings arguments %s (%v): want one object with one blobstore", c, err)
				}
				tls, _ := args[0].Blobstores[0].Options["tls"].(map[string]any)
				cert, _ := tls["cert"].(map[string]any)
				got, _ := cert["ca"].(string)
				out[id] = append(out[id], got)
			}
		}
		agents.settings = map[string][]json.RawMessage{}
		return out
	}
	each := func(ca string) map[string][]string {
		out := map[string][]string{}
		for _, i := range h.instances(ctx) {
			out[i.AgentID] = []string{ca}
		}
		return out
	}
	deploy := func(what string, s spec, want map[string][]string) {
		t.Helper()
		agents.resetCalls()
		if res := h.deploy(ctx, s); res.Failure != nil {
			t.Fatalf("%s: failure %+v", what, res.Failure)
		}
		if diff := cmp.Diff(want, sent(), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: update_settings CAs by agent (-want +got):\n%s", what, diff)
		}
	}

	deploy("create", spec{instances: 2, greeting: "hi"}, nil)

	setCA("CA-2")
	deploy("a change after the CA changed", spec{instances: 2, greeting: "hola"}, each("CA-2"))
	// BOSH's order: update_settings, then apply, for each instance.
	calls := func() []string { agents.mu.Lock(); defer agents.mu.Unlock(); return slices.Clone(agents.calls) }()
	for _, name := range []string{"web/0", "web/1"} {
		u, a := slices.Index(calls, "update_settings "+name), slices.Index(calls, "apply "+name)
		if u < 0 || a < 0 || u > a {
			t.Errorf("%s: update_settings at %d, apply at %d; want update_settings first:\n%q", name, u, a, calls)
		}
	}
	deploy("another change", spec{instances: 2, greeting: "hallo"}, nil)

	// Instances the deploy keeps are told too, without being applied again.
	setCA("CA-3")
	deploy("no change after the CA changed", spec{instances: 2, greeting: "hallo"}, each("CA-3"))
	if got := agents.callsOf("apply"); len(got) != 0 {
		t.Errorf("kept instances were applied: %v", got)
	}
	deploy("no change", spec{instances: 2, greeting: "hallo"}, nil)

	// A record without the hash (kept before it was) is out of date: once.
	is := h.instances(ctx)
	applied, err := h.store.AppliedByInstance(ctx, h.name)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(applied[is[0].ID].Record, &rec); err != nil {
		t.Fatal(err)
	}
	if rec["blobstore_hash"] == nil {
		t.Fatalf("record %v has no blobstore_hash", rec)
	}
	delete(rec, "blobstore_hash")
	b, _ := json.Marshal(rec)
	if err := h.store.SetApplied(ctx, state.Applied{InstanceID: is[0].ID, Record: b}); err != nil {
		t.Fatal(err)
	}
	deploy("an old record", spec{instances: 2, greeting: "hallo"}, map[string][]string{is[0].AgentID: {"CA-3"}})
	deploy("an old record, again", spec{instances: 2, greeting: "hallo"}, nil)
	deploy("a change", spec{instances: 2, greeting: "hi"}, nil)

	// A recreated VM boots with the current settings.
	setCA("CA-4")
	h.recreate = true
	deploy("recreate after the CA changed", spec{instances: 2, greeting: "hi"}, nil)
	h.recreate = false
	deploy("a change after recreating", spec{instances: 2, greeting: "hola"}, nil)
	h.checkNoOrphans(ctx)
}

// Without a Signer (the local CPI: agents read a path) no update_settings is sent.
func TestBlobstoreSettingsLocal(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	path := "/var/blobs/1"
	h, _, agents := newFakeHarnessConfig(t, nil, func(c *converge.Config) {
		c.Settings = func(id string) (cpi.AgentSettings, error) {
			return cpi.AgentSettings{Mbus: "nats://x", Blobstore: cpi.Blobstore{Provider: "local", Options: map[string]any{"blobstore_path": path}}}, nil
		}
	})
	h.deploy(ctx, spec{instances: 1, greeting: "hi"})
	path = "/var/blobs/2"
	h.deploy(ctx, spec{instances: 1, greeting: "hola"})
	h.deploy(ctx, spec{instances: 1, greeting: "hola"})
	if got := agents.callsOf("update_settings"); len(got) != 0 {
		t.Errorf("update_settings sent: %v", got)
	}
}
