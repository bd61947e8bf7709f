package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// compatDir finds ../shared/compat next to the repository root (the directory of go.mod).
func compatDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
	c := filepath.Join(dir, "..", "shared", "compat", "bosh-deployment")
	if _, err := os.Stat(filepath.Join(c, "cases")); err != nil {
		t.Skipf("BOSH compatibility cases not found at %s (they live in ../shared/compat next to the repository): %v", c, err)
	}
	return c
}

// TestInterpolateCompat runs every case of ../shared/compat as its README says: args after
// `interpolate`, bosh-deployment/ as the working directory, output byte for byte.
func TestInterpolateCompat(t *testing.T) {
	root := compatDir(t)
	cases, err := filepath.Glob(filepath.Join(root, "cases", "*"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases under %s: %v", root, err)
	}
	t.Chdir(filepath.Join(root, "bosh-deployment"))
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			argsText, err := os.ReadFile(filepath.Join(dir, "args"))
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{"interpolate"}, strings.Fields(string(argsText))...)
			stdout, stderr, code := runCLI(t, args...)
			if want, err := os.ReadFile(filepath.Join(dir, "expected.yml")); err == nil {
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				if diff := cmp.Diff(string(want), stdout); diff != "" {
					t.Errorf("output differs from bosh int (-bosh +bosun):\n%s", diff)
				}
				return
			}
			wantExit, err := os.ReadFile(filepath.Join(dir, "expected-exit"))
			if err != nil {
				t.Fatalf("case has neither expected.yml nor expected-exit: %v", err)
			}
			wantMissing, err := os.ReadFile(filepath.Join(dir, "expected-missing"))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(wantExit)); got != itoaTest(code) {
				t.Errorf("exit %d, want %s; stderr: %s", code, got, stderr)
			}
			if stdout != "" {
				t.Errorf("printed output despite missing variables:\n%s", stdout)
			}
			_, list, ok := strings.Cut(stderr, "Expected to find variables: ")
			if !ok {
				t.Fatalf("stderr does not list missing variables: %s", stderr)
			}
			if diff := cmp.Diff(strings.Fields(string(wantMissing)), strings.Fields(list)); diff != "" {
				t.Errorf("missing variables differ (-bosh +bosun):\n%s", diff)
			}
		})
	}
}

func itoaTest(i int) string { return strconv.Itoa(i) }

// TestInterpolateVarsStore runs the director cases with a fresh vars store instead of their
// creds.yml: the store gets the same variables with the same keys per type as BOSH's store,
// certificates verify against their CA, and a second run reuses the store unchanged and
// prints the same document.
func TestInterpolateVarsStore(t *testing.T) {
	root := compatDir(t)
	caseDir := filepath.Join(root, "cases", "director-aws")
	t.Chdir(filepath.Join(root, "bosh-deployment"))
	argsText, err := os.ReadFile(filepath.Join(caseDir, "args"))
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	fields := strings.Fields(string(argsText))
	for i := 0; i < len(fields); i++ {
		if fields[i] == "-l" && strings.HasSuffix(fields[i+1], "creds.yml") {
			i++
			continue
		}
		args = append(args, fields[i])
	}
	store := filepath.Join(t.TempDir(), "creds.yml")
	args = append([]string{"int"}, append(args, "--vars-store", store)...)
	first, stderr, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}

	got := readYAMLMap(t, store)
	want := readYAMLMap(t, filepath.Join(caseDir, "creds.yml"))
	// BOSH's store was made without the case's vars, so it lacks the certificates whose
	// options need ((internal_ip)); every entry it has must be in ours with the same keys.
	for name, w := range want {
		if diff := cmp.Diff(shape(w), shape(got[name])); diff != "" {
			t.Errorf("vars store entry %v differs from BOSH's (-bosh +bosun):\n%s", name, diff)
		}
	}
	ca := parseCert(t, got["nats_ca"].(map[any]any)["certificate"].(string))
	leaf := parseCert(t, got["nats_clients_director_tls"].(map[any]any)["certificate"].(string))
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Errorf("nats_clients_director_tls is not signed by nats_ca: %v", err)
	}
	if got["nats_clients_director_tls"].(map[any]any)["ca"] != got["nats_ca"].(map[any]any)["certificate"] {
		t.Error("nats_clients_director_tls.ca is not nats_ca's certificate")
	}
	if leaf.Subject.CommonName != "default.director.bosh-internal" || len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("leaf certificate: CN %q, extended key usage %v", leaf.Subject.CommonName, leaf.ExtKeyUsage)
	}

	before, _ := os.ReadFile(store)
	second, stderr, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("second run: exit %d: %s", code, stderr)
	}
	after, _ := os.ReadFile(store)
	if !bytes.Equal(before, after) {
		t.Error("second run rewrote a complete vars store")
	}
	if first != second {
		t.Error("second run with the same store printed a different document")
	}
}

// shape replaces leaf values by their kind so two stores compare by names and keys.
func shape(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := map[string]any{}
		for k, v := range x {
			m[k.(string)] = shape(v)
		}
		return m
	case string:
		return "string"
	}
	return v
}

func readYAMLMap(t *testing.T, path string) map[any]any {
	t.Helper()
	var o, e bytes.Buffer
	if code := run(context.Background(), &cli{stdout: &o, stderr: &e}, []string{"int", path}); code != 0 {
		t.Fatalf("reading %s: %s", path, e.String())
	}
	m, err := yamlv2Map(o.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func parseCert(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatalf("not PEM: %q", s)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestInterpolateBadInput: every bad input fails with exit 1, a located message, no output
// and an untouched vars store.
func TestInterpolateBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("m.yml", "name: ((n))\nlist: [a]\nvariables: [{name: p, type: password}]\n")
	store := write("store.yml", "p: kept\n")
	big := filepath.Join(dir, "big.yml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(50 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"malformed YAML", []string{write("bad.yml", "a: [\n")}, "bad.yml:1:1: malformed YAML"},
		{"missing ops path", []string{good, "-o", write("ops.yml", "- {type: replace, path: /nope/x, value: 1}\n")}, "ops.yml:1:3: /nope/x: operation [0] replace failed: no key 'nope'"},
		{"missing variable", []string{good, "--var-errs"}, "Expected to find variables: n"},
		{"unused variable", []string{good, "-v", "n=x", "-v", "extra=1", "--var-errs-unused"}, "Expected to use variables: extra"},
		{"wrong type in string", []string{write("t.yml", "a: x-((m))\n"), "-v", "m={k: v}"}, `t.yml:1:4: variable "m" is a map`},
		{"recursion", []string{write("r.yml", "variables: [{name: c, type: certificate, options: {common_name: ((c.ca))}}]\n"), "--vars-store", store}, `refers to itself`},
		{"unknown variable type", []string{write("u.yml", "variables: [{name: q, type: frob}]\n"), "--vars-store", store}, `u.yml:1:13: variables/name=q: generating variable "q" of type "frob"`},
		{"bad path", []string{good, "--path", "/nope"}, "no key 'nope'"},
		{"50 MB document", []string{big}, "larger than the"},
		{"missing file", []string{filepath.Join(dir, "absent.yml")}, "reading document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, append([]string{"int"}, tt.args...)...)
			if code != 1 || stdout != "" || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, no output, stderr containing %q", code, stdout, stderr, tt.stderr)
			}
			if got, _ := os.ReadFile(store); string(got) != "p: kept\n" {
				t.Errorf("vars store changed: %q", got)
			}
		})
	}
}

func TestInterpolateVarSourcesAndPath(t *testing.T) {
	dir := t.TempDir()
	m := filepath.Join(dir, "m.yml")
	os.WriteFile(m, []byte("a: ((a))\nb: ((b))\nc: ((c))\nd: ((d.k))\n"), 0o644)
	l := filepath.Join(dir, "vars.yml")
	os.WriteFile(l, []byte("a: from-l\nb: from-l\nc: from-l\nd: {k: [1, 2]}\n"), 0o644)
	vf := filepath.Join(dir, "b.txt")
	os.WriteFile(vf, []byte("line1\nline2\n"), 0o644)
	// -v wins over --var-file, which wins over -l, whatever their order on the line.
	stdout, stderr, code := runCLI(t, "int", m, "-v", "c=from-v", "--var-file", "b="+vf, "-l", l)
	want := "a: from-l\nb: |\n  line1\n  line2\nc: from-v\nd:\n- 1\n- 2\n"
	if code != 0 || stdout != want {
		t.Errorf("exit %d, stderr %s\n%s", code, stderr, cmp.Diff(want, stdout))
	}
	stdout, _, code = runCLI(t, "int", m, "-l", l, "--path", "/d/1")
	if code != 0 || stdout != "2\n" {
		t.Errorf("--path: exit %d, %q", code, stdout)
	}
	stdout, _, code = runCLI(t, "int", m, "--path", "/zz?/y")
	if code != 0 || stdout != "null\n" {
		t.Errorf("--path optional: exit %d, %q", code, stdout)
	}
}

func TestInterpolateVarsEnv(t *testing.T) {
	m := filepath.Join(t.TempDir(), "m.yml")
	os.WriteFile(m, []byte("a: ((a))\nb: ((b))\n"), 0o644)
	t.Setenv("BOSUN_TEST_a", "{k: 1}")
	t.Setenv("BOSUN_TEST_b", "env")
	stdout, stderr, code := runCLI(t, "int", m, "--vars-env", "BOSUN_TEST", "-v", "b=flag")
	if want := "a:\n  k: 1\nb: flag\n"; code != 0 || stdout != want {
		t.Errorf("exit %d, stderr %s\n%s", code, stderr, cmp.Diff(want, stdout))
	}
}
