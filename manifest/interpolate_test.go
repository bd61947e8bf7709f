package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestInterpolate(t *testing.T) {
	static := StaticVars{}
	for _, kv := range []string{"s=str", "i=5", "m={a: {b: deep}}", "l=[1, 2]", "k=key", "sp=a b"} {
		if err := static.AddVar(kv); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, doc, want, err string
		opts                 InterpolateOptions
	}{
		{name: "whole value keeps type", doc: "a: ((i))\nb: ((m))\nc: ((l))", want: "a: 5\nb:\n  a:\n    b: deep\nc:\n- 1\n- 2\n"},
		{name: "embedded", doc: "a: x-((s))-((i))-((!s))", want: "a: x-str-5-str\n"},
		{name: "spaces inside parens", doc: "a: (( s ))", want: "a: str\n"},
		{name: "dotted", doc: "a: ((m.a.b))", want: "a: deep\n"},
		{name: "dotted missing key", doc: "a: ((m.z))", err: `doc.yml:1:4: finding variable "m.z": variable "m" has no key "z"`},
		{name: "map keys", doc: "((k)): v", want: "key: v\n"},
		{name: "missing kept", doc: "a: ((nope))", want: "a: ((nope))\n"},
		{name: "missing reported", doc: "a: ((nope))\nb: ((also.x))", opts: InterpolateOptions{ExpectAllKeys: true}, err: "Expected to find variables: also\nnope"},
		{name: "map in string", doc: "a: x((m))", err: `doc.yml:1:4: variable "m" is a map; only strings and integers`},
		{name: "unused", doc: "a: ((s))", opts: InterpolateOptions{ExpectAllVarsUsed: true}, err: "Expected to use variables: i\nk\nl\nm\nsp"},
		{name: "string with space", doc: "a: ((sp))", want: "a: a b\n"},
		{name: "values are not interpolated again", doc: "a: ((v))", want: "a: ((s))\n"},
	}
	static["v"] = Scalar("((s))", Pos{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Interpolate(mustParse(t, tt.doc), static, nil, tt.opts)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, mustMarshal(t, out)); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestInterpolateRecursion(t *testing.T) {
	doc := mustParse(t, "variables:\n- name: a\n  type: certificate\n  options: {common_name: ((a.certificate))}\n")
	store, err := OpenStore(filepath.Join(t.TempDir(), "s.yml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Interpolate(doc, StaticVars{}, store, InterpolateOptions{})
	if err == nil || !strings.Contains(err.Error(), `variable "a" refers to itself`) {
		t.Fatalf("error %v, want recursion reported", err)
	}
}

func TestVarsStoreReusedAndAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "store.yml")
	if err := os.WriteFile(path, []byte("kept: old-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := `variables:
- {name: kept, type: password}
- {name: pw, type: password}
- {name: u, type: user}
- {name: k, type: rsa}
- {name: s, type: ssh}
- {name: ca, type: certificate, options: {is_ca: true, common_name: ca}}
- {name: leaf, type: certificate, options: {ca: ca, common_name: leaf, alternative_names: [10.0.0.1, x.example]}}
a: ((kept))
`
	store, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Interpolate(mustParse(t, doc), StaticVars{}, store, InterpolateOptions{ExpectAllKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustMarshal(t, out); got != "a: old-value\nvariables: []\n" {
		t.Errorf("document:\n%s", got)
	}
	if err := store.Save(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left next to the store: %v", entries)
	}
	reread, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, p := range reread.Values().Pairs {
		var ks []string
		for _, q := range p.Value.Pairs {
			ks = append(ks, q.Key.Value.(string))
		}
		keys[p.Key.Value.(string)] = ks
	}
	want := map[string][]string{"kept": nil, "pw": nil, "u": {"password", "password_hash", "username"}, "k": {"private_key", "public_key"},
		"s": {"private_key", "public_key", "public_key_fingerprint"}, "ca": {"ca", "certificate", "private_key"}, "leaf": {"ca", "certificate", "private_key"}}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("store keys (-want +got):\n%s", diff)
	}
	if v, _ := reread.Values().Get("pw").scalarString(); len(v) != 20 {
		t.Errorf("password %q is not 20 characters", v)
	}
	ca, caKey, err := parseCA(mustStr(t, reread, "ca", "certificate"), mustStr(t, reread, "ca", "private_key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, err := parseCA(mustStr(t, reread, "leaf", "certificate"), mustStr(t, reread, "leaf", "private_key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil || !ca.IsCA || caKey.N.BitLen() != certKeyBits {
		t.Errorf("leaf not signed by ca (%v), or ca not a %d-bit CA", err, certKeyBits)
	}
	if len(leaf.IPAddresses) != 1 || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "x.example" {
		t.Errorf("SANs: %v %v", leaf.IPAddresses, leaf.DNSNames)
	}
}

func mustStr(t *testing.T, s *Store, name, key string) string {
	t.Helper()
	v, ok := s.Values().Get(name).Get(key).scalarString()
	if !ok {
		t.Fatalf("%s.%s missing", name, key)
	}
	return v
}

func TestStoreUnchangedOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.yml")
	store, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := mustParse(t, "variables: [{name: p, type: password}, {name: x, type: frob}]\n")
	_, err = Interpolate(doc, StaticVars{}, store, InterpolateOptions{})
	if err == nil || !strings.Contains(err.Error(), `variables/name=x: generating variable "x" of type "frob"`) {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("store written although interpolation failed: %v", err)
	}
}

// A CA given as a variable (say, exported from CredHub) signs certificates generated into
// the store; the CA itself is not copied into it.
func TestStoreSignsWithGivenCA(t *testing.T) {
	gen, err := OpenStore(filepath.Join(t.TempDir(), "ca.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Interpolate(mustParse(t, "variables: [{name: ca, type: certificate, options: {is_ca: true, common_name: ca}}]"), StaticVars{}, gen, InterpolateOptions{}); err != nil {
		t.Fatal(err)
	}
	store, err := OpenStore(filepath.Join(t.TempDir(), "s.yml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := "variables: [{name: leaf, type: certificate, options: {ca: ca, common_name: leaf}}]"
	if _, err := Interpolate(mustParse(t, doc), StaticVars{"ca": gen.Values().Get("ca")}, store, InterpolateOptions{ExpectAllKeys: true}); err != nil {
		t.Fatal(err)
	}
	if store.Values().Get("ca") != nil {
		t.Error("given CA copied into the store")
	}
	ca, _, err := parseCA(mustStr(t, gen, "ca", "certificate"), mustStr(t, gen, "ca", "private_key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, err := parseCA(mustStr(t, store, "leaf", "certificate"), mustStr(t, store, "leaf", "private_key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Error(err)
	}
}
