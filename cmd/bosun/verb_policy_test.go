package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// templatePolicies copies repo-template/policies into a temp dir named policies.
func templatePolicies(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "policies")
	if err := os.CopyFS(dir, os.DirFS("../../repo-template/policies")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPolicyTest(t *testing.T) {
	t.Run("repo-template passes", func(t *testing.T) {
		o, e, code := runCLI(t, "policy", "test", "../../repo-template/policies")
		if code != 0 || !strings.Contains(o, "0 failed") || strings.Contains(o, "FAIL") {
			t.Errorf("code %d\nstdout: %s\nstderr: %s", code, o, e)
		}
	})
	t.Run("a broken test fails with exit 1", func(t *testing.T) {
		dir := templatePolicies(t)
		broken := "package policies.stemcells_test\n\nimport data.policies.stemcells\n\ntest_upgrade_denied if {\n\tcount(stemcells.deny_downgrade) == 1 with input as moved(\"up\")\n}\n"
		if err := os.WriteFile(filepath.Join(dir, "broken_test.rego"), []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		o, e, code := runCLI(t, "policy", "test", dir)
		if code != 1 || !strings.Contains(strings.Join(strings.Fields(o), " "), "FAIL policies.stemcells_test.test_upgrade_denied policies/broken_test.rego:5") || !strings.Contains(e, "1 of 17 policy tests failed") {
			t.Errorf("code %d\nstdout: %s\nstderr: %s", code, o, e)
		}
	})
	t.Run("a test that errors fails with exit 1", func(t *testing.T) {
		dir := templatePolicies(t)
		if err := os.WriteFile(filepath.Join(dir, "err_test.rego"), []byte("package policies.err_test\n\ntest_errors if {\n\tto_number(\"x\") == 1\n}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		o, e, code := runCLI(t, "policy", "test", dir)
		if code != 1 || !strings.Contains(o, "ERROR") || !strings.Contains(o, "policies/err_test.rego:4") || !strings.Contains(e, "1 of 17 policy tests failed") {
			t.Errorf("code %d\nstdout: %s\nstderr: %s", code, o, e)
		}
	})
	t.Run("a syntax error fails with exit 1 naming file and line", func(t *testing.T) {
		dir := templatePolicies(t)
		if err := os.WriteFile(filepath.Join(dir, "bad.rego"), []byte("package policies.bad\n\ndeny contains msg if {\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, e, code := runCLI(t, "policy", "test", dir)
		if code != 1 || !strings.Contains(e, "policies/bad.rego:4: rego_parse_error") {
			t.Errorf("code %d\nstderr: %s", code, e)
		}
	})
	t.Run("json, from the default directory", func(t *testing.T) {
		t.Chdir(filepath.Dir(templatePolicies(t)))
		o, e, code := runCLI(t, "policy", "test", "--json")
		var results []struct{ Package, Name, File, Outcome string }
		if err := json.Unmarshal([]byte(o), &results); err != nil || code != 0 || len(results) != 16 {
			t.Fatalf("code %d, %d results, %v\nstdout: %s\nstderr: %s", code, len(results), err, o, e)
		}
		if r := results[0]; r.Package != "policies.deletion_test" || r.File != "policies/deletion_test.rego" || r.Outcome != "PASS" {
			t.Errorf("first result %+v", r)
		}
	})
	t.Run("usage", func(t *testing.T) {
		if _, e, code := runCLI(t, "policy", "run"); code != 2 || !strings.Contains(e, "bosun policy test [DIR]") {
			t.Errorf("code %d, stderr %s", code, e)
		}
		if _, e, code := runCLI(t, "policy", "test", "a", "b"); code != 2 {
			t.Errorf("code %d, stderr %s", code, e)
		}
	})
}
