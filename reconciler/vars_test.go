package reconciler

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/manifest"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/bosun-gitops/bosun/state/postgres/pgtest"
)

func TestVaultStoresEncryptedReusesAndRotates(t *testing.T) {
	ctx := testCtx(t)
	st, err := postgres.Open(ctx, pgtest.NewDatabase(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key := bytes.Repeat([]byte{7}, KeySize)
	v, err := NewVault(st, key)
	if err != nil {
		t.Fatal(err)
	}
	m, err := fsRead("deployments/demo/manifest.yml")
	if err != nil {
		t.Fatal(err)
	}
	withVar := strings.Replace(m, "greeting: Hello from Bosun", "greeting: ((admin_password))", 1) + "\nvariables:\n- name: admin_password\n  type: password\n"
	fsys := templateFS(t, map[string]string{"deployments/demo/manifest.yml": withVar})
	rr := &Renderer{Vars: v}
	a, err := rr.Render(ctx, "a", fsys)
	if err != nil {
		t.Fatal(err)
	}
	pw := a.Secrets[0]
	sealed, err := st.SealedVariables(ctx, "demo")
	if err != nil || len(sealed) != 1 {
		t.Fatalf("stored = %d, %v; want one variable", len(sealed), err)
	}
	if bytes.Contains(sealed["admin_password"], []byte(pw)) {
		t.Fatal("the database holds the password in clear")
	}
	// A second director (a new vault, same key) renders the same value.
	v2, _ := NewVault(st, key)
	b, err := (&Renderer{Vars: v2}).Render(ctx, "b", fsys)
	if err != nil {
		t.Fatal(err)
	}
	if b.Deployments["demo"].Digest != a.Deployments["demo"].Digest {
		t.Fatal("the stored password was not reused")
	}
	// Another key cannot open it, and says which variable without showing it.
	wrong, _ := NewVault(st, bytes.Repeat([]byte{8}, KeySize))
	_, err = (&Renderer{Vars: wrong}).Render(ctx, "c", fsys)
	if err == nil || !strings.Contains(err.Error(), "admin_password") || strings.Contains(err.Error(), pw) {
		t.Fatalf("render with the wrong key: %v", err)
	}
	// A value sealed for one deployment does not open as another's.
	if err := st.AddSealedVariables(ctx, "other", map[string][]byte{"admin_password": sealed["admin_password"]}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Load(ctx, "other"); err == nil {
		t.Fatal("a value moved to another deployment decrypted")
	}
	// Rotation: the next render generates a new value, so the digest moves.
	if err := v.Rotate(ctx, "demo", "admin_password"); err != nil {
		t.Fatal(err)
	}
	if err := v.Rotate(ctx, "demo", "nope"); err == nil {
		t.Error("rotating a missing variable succeeded")
	}
	c, err := rr.Render(ctx, "d", fsys)
	if err != nil {
		t.Fatal(err)
	}
	if c.Secrets[0] == pw || c.Deployments["demo"].Digest == a.Deployments["demo"].Digest {
		t.Fatal("rotation kept the old password")
	}
}

func TestVaultKeyFile(t *testing.T) {
	p := t.TempDir() + "/vars.key"
	k1, err := EnsureKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := EnsureKeyFile(p)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load = %x, %v; want the same key", k2, err)
	}
	if _, err := NewVault(nil, k1[:5]); err == nil {
		t.Error("a short key was accepted")
	}
}

func TestMemoryStoreRefusesSave(t *testing.T) {
	s := manifest.NewStore(nil)
	if _, _, err := s.Get(manifest.VarDef{Name: "x", Type: "password"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(); err == nil {
		t.Error("a memory store saved")
	}
}

// The vault read-only: stored values are used, missing ones get throwaway values, and
// nothing is ever written, whatever renders.
func TestVaultReadOnlyWritesNothing(t *testing.T) {
	ctx := testCtx(t)
	st, err := postgres.Open(ctx, pgtest.NewDatabase(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v, err := NewVault(st, bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	m, err := fsRead("deployments/demo/manifest.yml")
	if err != nil {
		t.Fatal(err)
	}
	one := strings.Replace(m, "greeting: Hello from Bosun", "greeting: ((admin_password))", 1) + "\nvariables:\n- name: admin_password\n  type: password\n"
	stored, err := (&Renderer{Vars: v}).Render(ctx, "a", templateFS(t, map[string]string{"deployments/demo/manifest.yml": one}))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := st.SealedVariables(ctx, "demo")

	two := strings.Replace(one, "greeting: ((admin_password))", "greeting: ((admin_password))\n      other: ((new_password))", 1) + "- name: new_password\n  type: password\n"
	ro := v.ReadOnly()
	rr := &Renderer{Vars: ro}
	a, err := rr.Render(ctx, "b", templateFS(t, map[string]string{"deployments/demo/manifest.yml": two}))
	if err != nil {
		t.Fatal(err)
	}
	// The stored password is the one rendered; the new one is throwaway, and kept for the
	// plan (a second render sees the same value).
	props := func(r *Rendered) map[string]any {
		return r.Deployments["demo"].Manifest.InstanceGroups[0].Jobs[0].Properties
	}
	if got, want := sprint(props(a)["greeting"]), sprint(props(stored)["greeting"]); got != want {
		t.Errorf("greeting = %s; want the stored %s", got, want)
	}
	again, err := rr.Render(ctx, "c", templateFS(t, map[string]string{"deployments/demo/manifest.yml": two}))
	if err != nil {
		t.Fatal(err)
	}
	if sprint(props(a)["other"]) != sprint(props(again)["other"]) || sprint(props(a)["other"]) == "" {
		t.Errorf("throwaway value moved between renders of one plan: %v, %v", props(a)["other"], props(again)["other"])
	}
	if got := ro.Throwaway(ctx, "demo"); len(got) != 1 || got[0] != "new_password" {
		t.Errorf("throwaway = %v; want [new_password]", got)
	}
	if err := ro.Save(ctx, "other", nil); err != nil {
		t.Fatal(err)
	}
	after, _ := st.SealedVariables(ctx, "demo")
	if len(after) != len(before) || string(after["admin_password"]) != string(before["admin_password"]) {
		t.Errorf("stored after a read-only render: %d variables (was %d)", len(after), len(before))
	}
	if others, _ := st.SealedVariables(ctx, "other"); len(others) != 0 {
		t.Errorf("stored for other: %v", others)
	}
	// The vault itself, not read-only, would have stored it: the test can tell.
	if _, err := (&Renderer{Vars: v}).Render(ctx, "d", templateFS(t, map[string]string{"deployments/demo/manifest.yml": two})); err != nil {
		t.Fatal(err)
	}
	if now, _ := st.SealedVariables(ctx, "demo"); len(now) != 2 {
		t.Errorf("the writable vault stored %d variables; want 2", len(now))
	}
}
