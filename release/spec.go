package release

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// JobSpec is a job's spec file (jobs/<name>/spec, stored in job tarballs as job.MF).
type JobSpec struct {
	Name        string              `yaml:"name" json:"name"`
	Description string              `yaml:"description,omitempty" json:"description,omitempty"`
	Templates   map[string]string   `yaml:"templates,omitempty" json:"templates,omitempty"` // source under templates/ → destination under the job dir
	Packages    []string            `yaml:"packages,omitempty" json:"packages,omitempty"`
	Properties  map[string]Property `yaml:"properties,omitempty" json:"properties,omitempty"` // dotted name → definition
	Consumes    []LinkDef           `yaml:"consumes,omitempty" json:"consumes,omitempty"`
	Provides    []LinkDef           `yaml:"provides,omitempty" json:"provides,omitempty"`
	Logs        map[string]string   `yaml:"logs,omitempty" json:"logs,omitempty"`
}

// Property is one property definition of a job spec. Only Default matters when rendering.
type Property struct {
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	Default     any    `yaml:"default,omitempty" json:"default,omitempty"`
	Example     any    `yaml:"example,omitempty" json:"example,omitempty"`
	Type        string `yaml:"type,omitempty" json:"type,omitempty"`
}

// LinkDef is an entry of a job's consumes or provides list.
type LinkDef struct {
	Name       string   `yaml:"name" json:"name"`
	Type       string   `yaml:"type" json:"type"`
	Optional   bool     `yaml:"optional,omitempty" json:"optional,omitempty"`
	Properties []string `yaml:"properties,omitempty" json:"properties,omitempty"`
}

// PackageSpec is a package's spec file (packages/<name>/spec).
type PackageSpec struct {
	Name          string   `yaml:"name" json:"name"`
	Dependencies  []string `yaml:"dependencies,omitempty" json:"dependencies,omitempty"`
	Files         []string `yaml:"files,omitempty" json:"files,omitempty"`
	ExcludedFiles []string `yaml:"excluded_files,omitempty" json:"excluded_files,omitempty"`
	NoCompression bool     `yaml:"no_compression,omitempty" json:"no_compression,omitempty"`
}

// nameRE is what BOSH accepts as a release, job or package name.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)

// decodeYAML decodes data and turns yaml's errors into "file: line N: …". Unknown keys are
// accepted, as bosh-cli accepts them: real releases carry keys this code has no use for.
func decodeYAML(file string, data []byte, v any) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty document", file)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: line %d: want a map of keys, got %s", file, root.Line, kindName(root))
	}
	if err := root.Decode(v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%s: %s", file, strings.Join(te.Errors, "; "))
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return root, nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the scalar %q", n.Value)
	default:
		return "something else"
	}
}

// keyLine returns the line of key in a mapping node, or the node's own line.
func keyLine(n *yaml.Node, key string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}

// ParseJobSpec parses a job spec; file names it in errors.
func ParseJobSpec(file string, data []byte) (*JobSpec, error) {
	var s JobSpec
	root, err := decodeYAML(file, data, &s)
	if err != nil {
		return nil, err
	}
	at := func(key string) string { return fmt.Sprintf("%s: line %d", file, keyLine(root, key)) }
	if !nameRE.MatchString(s.Name) {
		return nil, fmt.Errorf("%s: name %q: want letters, digits, '.', '-' or '_'", at("name"), s.Name)
	}
	dests := map[string]string{}
	for src, dst := range s.Templates {
		if other, dup := dests[path.Clean(dst)]; dup {
			a, b := min(src, other), max(src, other)
			return nil, fmt.Errorf("%s: templates %q and %q both render to %q", at("templates"), a, b, dst)
		}
		dests[path.Clean(dst)] = src
		if err := relPath(src); err != nil {
			return nil, fmt.Errorf("%s: template source %q: %v", at("templates"), src, err)
		}
		if err := relPath(dst); err != nil {
			return nil, fmt.Errorf("%s: template %q destination %q: %v", at("templates"), src, dst, err)
		}
	}
	for _, p := range s.Packages {
		if !nameRE.MatchString(p) {
			return nil, fmt.Errorf("%s: package name %q is not a valid name", at("packages"), p)
		}
	}
	for _, set := range []struct {
		key  string
		defs []LinkDef
	}{{"consumes", s.Consumes}, {"provides", s.Provides}} {
		seen := map[string]bool{}
		for _, l := range set.defs {
			if l.Name == "" || l.Type == "" {
				return nil, fmt.Errorf("%s: every link needs a name and a type (got name %q, type %q)", at(set.key), l.Name, l.Type)
			}
			if seen[l.Name] {
				return nil, fmt.Errorf("%s: link %q is listed twice", at(set.key), l.Name)
			}
			seen[l.Name] = true
			if set.key == "provides" && l.Optional {
				return nil, fmt.Errorf("%s: provided link %q cannot be optional", at(set.key), l.Name)
			}
		}
	}
	return &s, nil
}

// ParsePackageSpec parses a package spec; file names it in errors.
func ParsePackageSpec(file string, data []byte) (*PackageSpec, error) {
	var s PackageSpec
	root, err := decodeYAML(file, data, &s)
	if err != nil {
		return nil, err
	}
	at := func(key string) string { return fmt.Sprintf("%s: line %d", file, keyLine(root, key)) }
	if !nameRE.MatchString(s.Name) {
		return nil, fmt.Errorf("%s: name %q: want letters, digits, '.', '-' or '_'", at("name"), s.Name)
	}
	seen := map[string]bool{}
	for _, d := range s.Dependencies {
		if !nameRE.MatchString(d) {
			return nil, fmt.Errorf("%s: dependency %q is not a valid package name", at("dependencies"), d)
		}
		if d == s.Name {
			return nil, fmt.Errorf("%s: package %q depends on itself", at("dependencies"), d)
		}
		if seen[d] {
			return nil, fmt.Errorf("%s: dependency %q is listed twice", at("dependencies"), d)
		}
		seen[d] = true
	}
	for _, key := range []struct {
		name  string
		globs []string
	}{{"files", s.Files}, {"excluded_files", s.ExcludedFiles}} {
		for _, g := range key.globs {
			if err := validGlob(g); err != nil {
				return nil, fmt.Errorf("%s: pattern %q: %v", at(key.name), g, err)
			}
		}
	}
	return &s, nil
}

// relPath rejects paths that could escape the directory they are joined to.
func relPath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if path.IsAbs(p) || strings.Contains(p, `\`) {
		return errors.New("want a relative path with forward slashes")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return errors.New("must not contain '..'")
		}
	}
	if c := path.Clean(p); c == "." {
		return errors.New("names no file")
	}
	return nil
}

func validGlob(g string) error {
	if err := relPath(g); err != nil {
		return err
	}
	for _, seg := range strings.Split(g, "/") {
		if seg == "**" {
			continue
		}
		if _, err := path.Match(seg, ""); err != nil {
			return err
		}
	}
	return nil
}
