package postgres_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/google/go-cmp/cmp"
)

func TestConvergeRecords(t *testing.T) {
	ctx := ctxFor(t)
	s := openStore(t, pgtestDatabase(t))
	if err := s.PutDeployment(ctx, state.Deployment{Name: "web", Revision: "abc"}); err != nil {
		t.Fatal(err)
	}
	// EnsureDeployment leaves an existing deployment alone and creates a missing one.
	for _, name := range []string{"web", "web", "db"} {
		if err := s.EnsureDeployment(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := s.Deployment(ctx, "web"); err != nil || d.Revision != "abc" {
		t.Errorf("web after ensure: %+v, %v", d, err)
	}
	if _, err := s.Deployment(ctx, "db"); err != nil {
		t.Errorf("db: %v", err)
	}

	in, err := s.PutInstance(ctx, state.Instance{Deployment: "web", Group: "web", Index: 0})
	if err != nil {
		t.Fatal(err)
	}
	fp := json.RawMessage(`{"jobs":"j1"}`)
	rec := json.RawMessage(`{"spec":{"name":"web"}}`)
	if err := s.SetApplied(ctx, state.Applied{InstanceID: in.ID, Fingerprint: fp}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetApplied(ctx, state.Applied{InstanceID: in.ID, Record: rec}); err != nil {
		t.Fatal(err)
	}
	got, err := s.AppliedByInstance(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	got = compactApplied(got)
	want := map[string]state.Applied{in.ID: {InstanceID: in.ID, Fingerprint: fp, Record: rec}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("applied (-want +got)\n%s", diff)
	}
	// PutInstance keeps what was applied.
	in.VMCID = "vm-1"
	if _, err := s.PutInstance(ctx, in); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.AppliedByInstance(ctx, "web"); string(compactApplied(got)[in.ID].Fingerprint) != string(fp) {
		t.Errorf("applied after PutInstance: %+v", got)
	}
	if err := s.SetApplied(ctx, state.Applied{InstanceID: "00000000-0000-4000-8000-000000000000", Fingerprint: fp}); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("set applied of a missing instance: %v", err)
	}

	if _, err := s.StemcellCID(ctx, "local", "sc", "1"); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("missing stemcell: %v", err)
	}
	if cid, err := s.PutStemcell(ctx, "local", "sc", "1", "sc-a"); err != nil || cid != "sc-a" {
		t.Errorf("put stemcell = %q, %v", cid, err)
	}
	if cid, err := s.PutStemcell(ctx, "local", "sc", "1", "sc-b"); err != nil || cid != "sc-a" {
		t.Errorf("second put of the same stemcell = %q, %v; the first stands", cid, err)
	}
	if cid, err := s.StemcellCID(ctx, "local", "sc", "1"); err != nil || cid != "sc-a" {
		t.Errorf("stemcell cid = %q, %v", cid, err)
	}
	if cid, _ := s.PutStemcell(ctx, "openstack", "sc", "1", "img-1"); cid != "img-1" {
		t.Errorf("another CPI's upload = %q", cid)
	}

	p := state.CompiledPackage{Key: "k1", Name: "greeter", Version: "f1", Stemcell: "ubuntu/1", Blob: "sha256:00"}
	if _, err := s.CompiledPackage(ctx, "k1"); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("missing compiled package: %v", err)
	}
	if err := s.PutCompiledPackage(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got, err := s.CompiledPackage(ctx, "k1"); err != nil || got != p {
		t.Errorf("compiled package = %+v, %v", got, err)
	}
}

// compactApplied drops the spaces jsonb adds, so values compare with what was stored.
func compactApplied(m map[string]state.Applied) map[string]state.Applied {
	compact := func(b json.RawMessage) json.RawMessage {
		var buf bytes.Buffer
		if json.Compact(&buf, b) != nil {
			return b
		}
		return buf.Bytes()
	}
	for k, a := range m {
		a.Fingerprint, a.Record = compact(a.Fingerprint), compact(a.Record)
		m[k] = a
	}
	return m
}
