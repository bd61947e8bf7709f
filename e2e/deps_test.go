package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/bosun-gitops/bosun"

type goPackage struct {
	ImportPath string
	Dir        string
	Name       string
	Standard   bool
	GoFiles    []string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rel(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

// isStd reports whether an import path belongs to the standard library.
func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// under reports whether pkg is dir or inside it.
func under(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

// rule forbids packages under From from depending (directly or not) on anything matched.
type rule struct {
	from     string
	forbid   []string // module-relative dirs, or third-party path prefixes
	allow    []string // exceptions inside forbid
	why      string
	directly bool // only direct imports count (for rules about our own layering)
}

var rules = []rule{
	{from: "reconciler/plan", forbid: []string{"github.com/jackc/pgx", "github.com/nats-io", "github.com/open-policy-agent", "github.com/go-git", "state/postgres", "cpi/local", "cpi/external", "cpi/openstack", "cpi/alicloud"}, why: "plan is pure: no I/O libraries"},
	{from: "reconciler", forbid: []string{"state/postgres", "cpi/local", "cpi/external", "cpi/openstack", "cpi/alicloud", "cpi/cpitest", "agent", "health", "api", "bus"}, allow: []string{"agent/protocol"}, why: "reconciler reaches concrete parts only through its own interfaces; cmd/bosun wires them", directly: true},
	{from: "agent", forbid: []string{"github.com/open-policy-agent", "github.com/jackc/pgx", "github.com/go-git", "reconciler", "state", "policy", "health", "api"}, why: "the agent is small and knows nothing of the director"},
	{from: "cmd/bosun-agent", forbid: []string{"github.com/open-policy-agent", "github.com/jackc/pgx", "github.com/go-git", "reconciler", "state", "policy"}, why: "the agent binary is small"},
	{from: "health", forbid: []string{"reconciler", "api"}, why: "health calls a Resurrector it declares; cmd/bosun connects it", directly: true},
	{from: "manifest", forbid: []string{"state", "policy", "reconciler", "cpi", "agent", "release", "health", "api"}, why: "manifest is the leaf vocabulary", directly: true},
	{from: "state", forbid: []string{"reconciler", "policy", "agent", "health", "api"}, why: "state is below the reconciler", directly: true},
	{from: "policy", forbid: []string{"reconciler", "state", "cpi", "agent", "health", "api"}, why: "policy sees only manifests and its input", directly: true},
	{from: "cpi", forbid: []string{"reconciler", "state", "agent", "health", "api", "policy", "manifest"}, why: "CPIs know only the cpi contract", directly: true},
	{from: "api", forbid: []string{"reconciler", "state/postgres", "agent", "health"}, why: "api declares what it needs", directly: true},
}

// contracts import only the standard library.
var contracts = []string{"cpi", "agent/protocol", "blobstore"}

func TestImportRules(t *testing.T) {
	for _, v := range violations(listPackages(t)) {
		t.Error(v)
	}
}

// TestImportRulesCatch proves the checker sees what it must.
func TestImportRulesCatch(t *testing.T) {
	pkgs := []goPackage{
		{ImportPath: module + "/cpi", Imports: []string{"context", "github.com/x/y"}},
		{ImportPath: module + "/reconciler/plan", Imports: []string{module + "/state"}, Deps: []string{"github.com/jackc/pgx/v5"}},
		{ImportPath: module + "/reconciler/converge", Imports: []string{module + "/agent/protocol", module + "/cpi"}},
		{ImportPath: module + "/reconciler", Imports: []string{module + "/agent"}},
		{ImportPath: module + "/agent", Imports: []string{module + "/agent/protocol"}, Deps: []string{"github.com/open-policy-agent/opa/v1/rego"}},
	}
	got := violations(pkgs)
	want := []string{"cpi is a contract", "reconciler/plan must not depend on github.com/jackc/pgx/v5", "reconciler must not depend on " + module + "/agent ", "agent must not depend on github.com/open-policy-agent"}
	if len(got) != len(want) {
		t.Fatalf("got %d violations, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("violation %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
}

func violations(pkgs []goPackage) []string {
	var out []string
	for _, p := range pkgs {
		name := rel(p.ImportPath)
		for _, c := range contracts {
			if name != c {
				continue
			}
			for _, imp := range p.Imports {
				if !isStd(imp) {
					out = append(out, fmt.Sprintf("%s is a contract package and may import only the standard library, but imports %s", name, imp))
				}
			}
		}
		for _, r := range rules {
			if !under(name, r.from) {
				continue
			}
			deps := p.Deps
			if r.directly {
				deps = p.Imports
			}
			for _, d := range deps {
				for _, f := range r.forbid {
					target := d
					if strings.HasPrefix(d, module+"/") {
						target = rel(d)
					} else if !strings.Contains(f, ".") {
						continue
					}
					if under(target, f) || (strings.Contains(f, ".") && strings.HasPrefix(target, f)) {
						if under(target, r.from) || slices.ContainsFunc(r.allow, func(a string) bool { return under(target, a) }) {
							continue // a package may use its own children, and the named exceptions
						}
						out = append(out, fmt.Sprintf("%s must not depend on %s (%s)", name, d, r.why))
					}
				}
			}
		}
	}
	return out
}

// TestPackageDocs: every package says what it owns in a `// Package x` comment.
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.Name == "main" {
			continue
		}
		found := false
		for _, f := range p.GoFiles {
			file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if file.Doc != nil && strings.HasPrefix(file.Doc.Text(), "Package "+p.Name+" ") {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s has no `// Package %s …` comment", p.ImportPath, p.Name)
		}
	}
}
