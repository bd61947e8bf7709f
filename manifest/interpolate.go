package manifest

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// VarDef is one entry of a manifest's variables: section.
type VarDef struct {
	Name    string
	Type    string
	Options *Node
	Pos     Pos
}

// Source supplies variable values. Get reports found=false when it has no value.
type Source interface {
	Get(def VarDef) (value *Node, found bool, err error)
}

// StaticVars are values given on the command line or in files (-v, -l, --var-file).
type StaticVars map[string]*Node

// Get implements Source.
func (s StaticVars) Get(def VarDef) (*Node, bool, error) {
	v, ok := s[def.Name]
	return v, ok, nil
}

// InterpolateOptions are bosh int's --var-errs and --var-errs-unused.
type InterpolateOptions struct {
	ExpectAllKeys     bool // every referenced variable must be found
	ExpectAllVarsUsed bool // every static variable must be referenced
}

// MissingVarsError lists the variables that were referenced but not found, sorted.
type MissingVarsError struct{ Names []string }

func (e *MissingVarsError) Error() string {
	return "Expected to find variables: " + strings.Join(e.Names, "\n")
}

// UnusedVarsError lists the static variables that no placeholder referenced, sorted.
type UnusedVarsError struct{ Names []string }

func (e *UnusedVarsError) Error() string {
	return "Expected to use variables: " + strings.Join(e.Names, "\n")
}

var (
	placeholderRe         = regexp.MustCompile(`\(\( ?(!?[-/\.\w\pL]+) ?\)\)`)
	placeholderAnchoredRe = regexp.MustCompile(`\A` + placeholderRe.String() + `\z`)
)

// Interpolate replaces ((placeholders)) in doc as BOSH's CLI does: static sources first,
// then the store (which may generate values for variables declared under variables:).
// Placeholders without a value stay as they are unless opts.ExpectAllKeys is set.
// Values substituted are not interpolated again, so they cannot form cycles; a variable
// whose definition options refer back to itself is reported as recursion.
func Interpolate(doc *Node, static StaticVars, store *Store, opts InterpolateOptions) (*Node, error) {
	t := &tracker{static: static, store: store, missing: map[string]bool{}, found: map[string]bool{}, used: map[string]bool{}, visited: map[string]bool{}}
	t.defs = extractDefs(doc)
	if store != nil {
		defer store.prepare(t.defs, static)()
	}
	for _, d := range t.defs {
		if d.Type != "" {
			if _, _, err := t.get(d.Name); err != nil {
				return nil, &Error{Pos: d.Pos, Path: "variables/name=" + d.Name, Msg: err.Error()}
			}
		}
	}
	out, err := t.interpolate(doc)
	if err != nil {
		return nil, err
	}
	dropFoundDefs(out, t.found)
	var errs []error
	if opts.ExpectAllKeys && len(t.missing) > 0 {
		errs = append(errs, &MissingVarsError{Names: sortedKeys(t.missing)})
	}
	if opts.ExpectAllVarsUsed {
		unused := map[string]bool{}
		for k := range static {
			if !t.used[k] {
				unused[k] = true
			}
		}
		if len(unused) > 0 {
			errs = append(errs, &UnusedVarsError{Names: sortedKeys(unused)})
		}
	}
	return out, errors.Join(errs...)
}

// dropFoundDefs removes from variables: the entries whose value was found, as BOSH's CLI
// prints only the definitions still to be satisfied.
func dropFoundDefs(doc *Node, found map[string]bool) {
	vars := doc.Get("variables")
	if vars == nil || vars.Kind != SeqNode {
		return
	}
	kept := vars.Items[:0]
	for _, it := range vars.Items {
		if name, _ := it.Get("name").scalarString(); name == "" || !found[name] {
			kept = append(kept, it)
		}
	}
	vars.Items = kept
}

func sortedKeys(m map[string]bool) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// extractDefs reads variables: entries that have a name; malformed entries are the
// validator's business, not interpolation's.
func extractDefs(doc *Node) []VarDef {
	vars := doc.Get("variables")
	if vars == nil || vars.Kind != SeqNode {
		return nil
	}
	var defs []VarDef
	for _, it := range vars.Items {
		name, _ := it.Get("name").scalarString()
		if name == "" {
			continue
		}
		typ, _ := it.Get("type").scalarString()
		defs = append(defs, VarDef{Name: name, Type: typ, Options: it.Get("options"), Pos: it.Pos})
	}
	return defs
}

func (n *Node) scalarString() (string, bool) {
	if n == nil || n.Kind != ScalarNode {
		return "", false
	}
	s, ok := n.Value.(string)
	return s, ok
}

type tracker struct {
	static  StaticVars
	store   *Store
	defs    []VarDef
	missing map[string]bool
	found   map[string]bool
	used    map[string]bool
	visited map[string]bool // names whose definition is being resolved, for recursion
}

func (t *tracker) find(name string) VarDef {
	for _, d := range t.defs {
		if d.Name == name {
			return d
		}
	}
	return VarDef{Name: name}
}

// get looks a variable up by its root name, resolving its definition options first.
func (t *tracker) get(name string) (*Node, bool, error) {
	if t.visited[name] {
		return nil, false, fmt.Errorf("variable %q refers to itself through its definition options", name)
	}
	scoped := &tracker{static: t.static, store: t.store, defs: t.defs, missing: map[string]bool{}, found: t.found, used: t.used, visited: map[string]bool{name: true}}
	for k := range t.visited {
		scoped.visited[k] = true
	}
	def := t.find(name)
	if def.Options != nil {
		opts, err := scoped.interpolate(def.Options.Clone())
		if err != nil {
			return nil, false, fmt.Errorf("interpolating the options of variable %q: %w", name, err)
		}
		def.Options = opts
	}
	if len(scoped.missing) > 0 {
		// BOSH neither resolves nor reports a variable whose options are incomplete.
		return nil, false, nil
	}
	if v, ok := t.static[name]; ok {
		t.used[name] = true
		t.found[name] = true
		return v, true, nil
	}
	if t.store != nil {
		v, found, err := t.store.Get(def)
		if err != nil || found {
			t.found[name] = found
			return v, found, err
		}
	}
	t.missing[name] = true
	return nil, false, nil
}

// lookup resolves a.b.c: variable a, then keys b and c inside its value.
func (t *tracker) lookup(name string) (*Node, bool, error) {
	parts := strings.Split(name, ".")
	v, found, err := t.get(parts[0])
	if !found || err != nil {
		return nil, found, err
	}
	for i, k := range parts[1:] {
		next := v.Get(k)
		if next == nil {
			return nil, false, fmt.Errorf("variable %q has no key %q (at %s)", parts[0], k, strings.Join(parts[:i+2], "."))
		}
		v = next
	}
	return v, true, nil
}

func (t *tracker) interpolate(n *Node) (*Node, error) {
	switch n.Kind {
	case MapNode:
		for i := range n.Pairs {
			v, err := t.interpolate(n.Pairs[i].Value)
			if err != nil {
				return nil, err
			}
			k, err := t.interpolate(n.Pairs[i].Key)
			if err != nil {
				return nil, err
			}
			if k.Kind != ScalarNode {
				return nil, &Error{Pos: n.Pairs[i].Key.Pos, Msg: "a variable used as a map key must be a scalar, found " + kindName(k)}
			}
			n.Pairs[i] = Pair{k, v}
		}
		return n, nil
	case SeqNode:
		for i, it := range n.Items {
			v, err := t.interpolate(it)
			if err != nil {
				return nil, err
			}
			n.Items[i] = v
		}
		return n, nil
	}
	s, ok := n.Value.(string)
	if !ok || !strings.Contains(s, "((") {
		return n, nil
	}
	matches := placeholderRe.FindAllStringSubmatch(s, -1)
	for _, m := range matches {
		name := strings.TrimPrefix(m[1], "!")
		v, found, err := t.lookup(name)
		if err != nil {
			return nil, &Error{Pos: n.Pos, Msg: fmt.Sprintf("finding variable %q: %v", name, err)}
		}
		if !found {
			continue
		}
		if placeholderAnchoredRe.MatchString(s) {
			return v, nil
		}
		var str string
		switch x := v.Value.(type) {
		case string:
			str = x
		case int:
			str = strconv.Itoa(x)
		case int64:
			str = strconv.FormatInt(x, 10)
		case uint64:
			str = strconv.FormatUint(x, 10)
		default:
			if v.Kind != ScalarNode || true {
				return nil, &Error{Pos: n.Pos, Msg: fmt.Sprintf("variable %q is %s; only strings and integers can be placed inside a larger string", name, kindName(v))}
			}
		}
		s = strings.ReplaceAll(s, m[0], str)
	}
	return &Node{Kind: ScalarNode, Value: s, Pos: n.Pos}, nil
}
