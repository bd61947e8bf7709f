package release

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func graphRelease(deps map[string][]string) *Release {
	r := &Release{Manifest: Manifest{Name: "r"}}
	for _, n := range []string{"app", "base", "lib", "ruby", "tool"} {
		if d, ok := deps[n]; ok {
			r.Packages = append(r.Packages, &Package{Name: n, Fingerprint: "fp-" + n, Dependencies: d})
		}
	}
	return r
}

func names(ps []*Package) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func TestCompileOrder(t *testing.T) {
	r := graphRelease(map[string][]string{
		"app":  {"ruby", "lib"},
		"lib":  {"base"},
		"ruby": {"base"},
		"base": nil,
		"tool": nil,
	})
	all, err := r.CompileOrder()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"base", "lib", "ruby", "app", "tool"}, names(all)); diff != "" {
		t.Errorf("order of all (-want +got):\n%s", diff)
	}
	some, err := r.CompileOrder("lib")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"base", "lib"}, names(some)); diff != "" {
		t.Errorf("order for lib (-want +got):\n%s", diff)
	}
	deps, err := r.Dependencies("app")
	if err != nil {
		t.Fatal(err)
	}
	want := []PackageVersion{{"base", "fp-base"}, {"lib", "fp-lib"}, {"ruby", "fp-ruby"}}
	if diff := cmp.Diff(want, deps); diff != "" {
		t.Errorf("transitive dependencies of app (-want +got):\n%s", diff)
	}
	if _, err := r.CompileOrder("nope"); err == nil || !strings.Contains(err.Error(), `release "r" has no package "nope"`) {
		t.Errorf("unknown package: %v", err)
	}
}

func TestCompileOrderCycle(t *testing.T) {
	r := graphRelease(map[string][]string{"app": {"lib"}, "lib": {"ruby"}, "ruby": {"app"}, "base": nil})
	_, err := r.CompileOrder()
	if err == nil || !strings.Contains(err.Error(), `release "r": package dependency cycle: app → lib → ruby → app`) {
		t.Errorf("error = %v", err)
	}
}

func TestCompiledPackageKey(t *testing.T) {
	r := graphRelease(map[string][]string{"app": {"lib"}, "lib": {"base"}, "base": nil})
	key := func(r *Release, pkg, os, ver string) string {
		t.Helper()
		k, err := r.CompiledPackageKey(pkg, os, ver)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k := key(r, "app", "ubuntu-jammy", "1.1")
	if k != key(r, "app", "ubuntu-jammy", "1.1") || len(k) != 64 {
		t.Fatalf("key %q is not a stable sha256", k)
	}
	// Same package on another stemcell, or with an indirect dependency changed: another key.
	changed := graphRelease(map[string][]string{"app": {"lib"}, "lib": {"base"}, "base": nil})
	changed.Package("base").Fingerprint = "fp-base-2"
	for name, other := range map[string]string{
		"stemcell version":      key(r, "app", "ubuntu-jammy", "1.2"),
		"stemcell os":           key(r, "app", "ubuntu-noble", "1.1"),
		"transitive dependency": key(changed, "app", "ubuntu-jammy", "1.1"),
		"another package":       key(r, "lib", "ubuntu-jammy", "1.1"),
	} {
		if other == k {
			t.Errorf("%s does not change the key", name)
		}
	}
	// Dependency order given by the caller does not matter.
	a := CompiledPackageKey(PackageVersion{"p", "1"}, []PackageVersion{{"x", "1"}, {"y", "2"}}, "os", "1")
	b := CompiledPackageKey(PackageVersion{"p", "1"}, []PackageVersion{{"y", "2"}, {"x", "1"}}, "os", "1")
	if a != b {
		t.Error("key depends on the order dependencies are given in")
	}
}
