package release

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
)

// checkGraph verifies that every dependency names a package of the release and that the
// dependencies form no cycle. deps maps package name → its dependencies.
func checkGraph(release string, deps map[string][]string) error {
	_, err := topoOrder(release, deps, nil)
	return err
}

// topoOrder returns roots and everything they depend on (all packages when roots is
// empty), each after its dependencies; ties are broken by name so the order is stable.
func topoOrder(release string, deps map[string][]string, roots []string) ([]string, error) {
	const (
		unseen = iota
		visiting
		done
	)
	state := map[string]int{}
	var order, stack []string
	var visit func(name, from string) error
	visit = func(name, from string) error {
		ds, ok := deps[name]
		if !ok {
			if from == "" {
				return fmt.Errorf("release %q has no package %q", release, name)
			}
			return fmt.Errorf("release %q: package %q depends on package %q, which the release does not have", release, from, name)
		}
		switch state[name] {
		case done:
			return nil
		case visiting:
			i := len(stack) - 1
			for stack[i] != name {
				i--
			}
			cycle := append(append([]string(nil), stack[i:]...), name)
			return fmt.Errorf("release %q: package dependency cycle: %s", release, strings.Join(cycle, " → "))
		}
		state[name] = visiting
		stack = append(stack, name)
		sorted := append([]string(nil), ds...)
		sort.Strings(sorted)
		for _, d := range sorted {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[name] = done
		order = append(order, name)
		return nil
	}
	if len(roots) == 0 {
		for n := range deps {
			roots = append(roots, n)
		}
	}
	roots = append([]string(nil), roots...)
	sort.Strings(roots)
	for _, n := range roots {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func (r *Release) depGraph() map[string][]string {
	g := make(map[string][]string, len(r.Packages))
	for _, p := range r.Packages {
		g[p.Name] = p.Dependencies
	}
	return g
}

// CompileOrder returns the named packages and everything they depend on (every package
// when names is empty), each after its dependencies: the order to compile them in.
func (r *Release) CompileOrder(names ...string) ([]*Package, error) {
	order, err := topoOrder(r.Manifest.Name, r.depGraph(), names)
	if err != nil {
		return nil, err
	}
	out := make([]*Package, len(order))
	for i, n := range order {
		out[i] = r.Package(n)
	}
	return out, nil
}

// PackageVersion names one exact package: its name and fingerprint.
type PackageVersion struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
}

// Dependencies returns every package that name depends on, directly or not, sorted by
// name: what a compilation VM needs installed, and what a compiled package's identity
// covers.
func (r *Release) Dependencies(name string) ([]PackageVersion, error) {
	order, err := topoOrder(r.Manifest.Name, r.depGraph(), []string{name})
	if err != nil {
		return nil, err
	}
	var out []PackageVersion
	for _, n := range order {
		if n != name {
			out = append(out, PackageVersion{Name: n, Fingerprint: r.Package(n).Fingerprint})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CompiledPackageKey is the identity of a compiled package, as BOSH keys compiled
// packages: the package's fingerprint, the fingerprints of all it depends on (directly or
// not), and the stemcell's operating system and version. The director compiles a package
// once per key and keeps the result in the blobstore under it.
func CompiledPackageKey(pkg PackageVersion, deps []PackageVersion, stemcellOS, stemcellVersion string) string {
	sorted := append([]PackageVersion(nil), deps...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	h := sha256.New()
	fmt.Fprintf(h, "bosun compiled package v1\n%s %s\n", pkg.Name, pkg.Fingerprint)
	for _, d := range sorted {
		fmt.Fprintf(h, "dep %s %s\n", d.Name, d.Fingerprint)
	}
	fmt.Fprintf(h, "stemcell %s/%s\n", stemcellOS, stemcellVersion)
	return hex.EncodeToString(h.Sum(nil))
}

// CompiledPackageKey returns the compiled-package key of the named package of r on the
// given stemcell.
func (r *Release) CompiledPackageKey(name, stemcellOS, stemcellVersion string) (string, error) {
	p := r.Package(name)
	if p == nil {
		return "", fmt.Errorf("release %q has no package %q", r.Manifest.Name, name)
	}
	deps, err := r.Dependencies(name)
	if err != nil {
		return "", err
	}
	return CompiledPackageKey(PackageVersion{Name: p.Name, Fingerprint: p.Fingerprint}, deps, stemcellOS, stemcellVersion), nil
}
