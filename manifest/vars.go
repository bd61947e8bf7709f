package manifest

import (
	"fmt"
	"os"
	"strings"
)

// AddVarsFile merges a -l file (a map of names to values) into s; later files win.
func (s StaticVars) AddVarsFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading variables file: %w", err)
	}
	doc, err := Parse(path, data)
	if err != nil {
		return err
	}
	if doc.Kind == ScalarNode && doc.Value == nil {
		return nil
	}
	if doc.Kind != MapNode {
		return &Error{Pos: doc.Pos, Msg: "a variables file must be a map of names to values, found " + kindName(doc)}
	}
	for _, p := range doc.Pairs {
		s[fmt.Sprint(p.Key.Value)] = p.Value
	}
	return nil
}

// AddVarsEnv sets a variable for every PREFIX_name=value in environ (--vars-env PREFIX);
// values are read as YAML.
func (s StaticVars) AddVarsEnv(prefix string, environ []string) error {
	if prefix == "" {
		return fmt.Errorf("--vars-env needs a prefix")
	}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		name, ok := strings.CutPrefix(k, prefix+"_")
		if !ok || name == "" {
			continue
		}
		n, err := Parse("$"+k, []byte(v))
		if err != nil {
			return err
		}
		s[name] = n
	}
	return nil
}

// AddVarFile sets name to the whole content of a file (--var-file name=path).
func (s StaticVars) AddVarFile(arg string) error {
	name, path, ok := strings.Cut(arg, "=")
	if !ok || name == "" || path == "" {
		return fmt.Errorf("--var-file %q must be name=path", arg)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading variable %q from file: %w", name, err)
	}
	s[name] = Scalar(string(data), Pos{File: path, Line: 1, Col: 1})
	return nil
}

// AddVar sets a -v name=value variable. The value is read as YAML; a plain string is kept
// exactly as typed, as BOSH's CLI does.
func (s StaticVars) AddVar(arg string) error {
	name, val, ok := strings.Cut(arg, "=")
	if !ok || name == "" || val == "" {
		return fmt.Errorf("-v %q must be name=value with a non-empty name and value", arg)
	}
	n, err := Parse("-v "+name, []byte(val))
	if err != nil {
		return err
	}
	if _, isStr := n.Value.(string); isStr && n.Kind == ScalarNode {
		n = Scalar(val, n.Pos)
	}
	s[name] = n
	return nil
}

// LoadOps reads and parses each ops file.
func LoadOps(paths ...string) ([]Op, error) {
	var all []Op
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading ops file: %w", err)
		}
		ops, err := ParseOps(p, data)
		if err != nil {
			return nil, err
		}
		all = append(all, ops...)
	}
	return all, nil
}

// RenderOptions is everything `bosh int` takes besides the document.
type RenderOptions struct {
	Ops    []Op
	Static StaticVars
	Store  *Store // may be nil
	Path   *Pointer
	InterpolateOptions
}

// Render applies ops, interpolates and optionally picks --path, in BOSH's CLI order.
// The store is not saved; call Store.Save after deciding the result is good.
func Render(doc *Node, o RenderOptions) (*Node, error) {
	doc, err := ApplyOps(doc, o.Ops)
	if err != nil {
		return nil, err
	}
	doc, err = Interpolate(doc, o.Static, o.Store, o.InterpolateOptions)
	if err != nil {
		return nil, err
	}
	if o.Path != nil {
		found, err := Find(doc, *o.Path)
		if err != nil {
			return nil, &Error{Pos: doc.Pos, Path: o.Path.raw, Msg: err.Error()}
		}
		if found == nil {
			found = Scalar(nil, doc.Pos)
		}
		doc = found
	}
	return doc, nil
}

// File is a document's name (for error positions) and content, as read from a revision.
type File struct {
	Name string
	Data []byte
}

// RenderFile parses doc and ops files and renders them with o (whose Ops are appended to).
func RenderFile(doc File, ops []File, o RenderOptions) (*Node, error) {
	n, err := Parse(doc.Name, doc.Data)
	if err != nil {
		return nil, err
	}
	for _, f := range ops {
		parsed, err := ParseOps(f.Name, f.Data)
		if err != nil {
			return nil, err
		}
		o.Ops = append(o.Ops, parsed...)
	}
	return Render(n, o)
}
