package policy

import (
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// need is the part of `input` that a policy revision can read, found once at Load from
// the compiled modules so that Evaluate builds only that: converting manifest parts that
// no rule reads is most of an evaluation's cost.
//
// A node with all set needs its whole subtree. Otherwise it needs its value to exist,
// and below it: the keys in kids; every key (or array element) with need any, when any
// is set — a rule iterates over it; nothing more. The zero need reads nothing.
//
// A rule can tell two inputs apart only through a path it reads, so building just these
// paths never changes a verdict. Anything the analysis below does not follow — input
// itself passed as a value, walk(input), a variable compared as a whole — needs the
// whole subtree at that point.
type need struct {
	all  bool
	kids map[string]*need
	any  *need
}

var needAll = &need{all: true}

// at is what n needs under key k; nil when nothing. After normalize, kids[k] already
// includes any.
func (n *need) at(k string) *need {
	switch {
	case n == nil:
		return nil
	case n.all:
		return needAll
	}
	if c := n.kids[k]; c != nil {
		return c
	}
	return n.any
}

// step is one element of a path into input: a key, or any key (a variable, a number).
type step struct {
	key string
	any bool
}

// child returns n's node for s, creating it.
func (n *need) child(s step) *need {
	if s.any {
		if n.any == nil {
			n.any = &need{}
		}
		return n.any
	}
	if n.kids == nil {
		n.kids = map[string]*need{}
	}
	c := n.kids[s.key]
	if c == nil {
		c = &need{}
		n.kids[s.key] = c
	}
	return c
}

// add records that the whole value at path is read; touch that it must exist.
func (n *need) add(path []step) {
	if n = n.touch(path); n != nil {
		n.all, n.kids, n.any = true, nil, nil
	}
}

func (n *need) touch(path []step) *need {
	for _, s := range path {
		if n.all {
			return nil
		}
		n = n.child(s)
	}
	if n.all {
		return nil
	}
	return n
}

// merge is what a and b need together; it shares but never changes them.
func merge(a, b *need) *need {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.all || b.all:
		return needAll
	}
	m := &need{any: merge(a.any, b.any)}
	for _, src := range []*need{a, b} {
		for k, c := range src.kids {
			if m.kids == nil {
				m.kids = map[string]*need{}
			}
			m.kids[k] = merge(m.kids[k], c)
		}
	}
	return m
}

// normalize folds any into every named key, so that at is a lookup.
func (n *need) normalize() *need {
	if n == nil || n.all {
		return n
	}
	out := &need{any: n.any.normalize()}
	if len(n.kids) > 0 {
		out.kids = make(map[string]*need, len(n.kids))
		for k, c := range n.kids {
			out.kids[k] = merge(c, n.any).normalize()
		}
	}
	return out
}

// String lists the paths needed, for tests and logs: "input.changes,
// input.proposed.deployments[_].name"; a path only required to exist ends in "?".
func (n *need) String() string {
	var paths []string
	var walk func(n *need, p string)
	walk = func(n *need, p string) {
		switch {
		case n.all:
			paths = append(paths, p)
			return
		case len(n.kids) == 0 && n.any == nil:
			paths = append(paths, p+"?")
			return
		}
		for k, c := range n.kids {
			walk(c, p+"."+k)
		}
		if n.any != nil {
			walk(n.any, p+"[_]")
		}
	}
	walk(n, "input")
	sort.Strings(paths)
	return strings.Join(paths, ", ")
}

// inputNeed finds what the compiled modules read of input. It follows local variables
// bound to a part of input (`d := input.changes.deployments[name]`, which the compiler
// writes `__local1__ = input.changes.deployments[__local2__]`) through the references
// made from them, and object.get calls with a constant key; every other mention of input
// or of such a variable reads the whole value there.
func inputNeed(modules map[string]*ast.Module) *need {
	n := &need{}
	for _, m := range modules {
		for _, imp := range m.Imports {
			a := &analysis{need: n}
			a.plain(imp.Path, nil)
		}
		for _, r := range m.Rules {
			a := &analysis{need: n, aliases: aliases(r)}
			a.rule(r)
		}
	}
	return n.normalize()
}

// alias is a variable bound once, by `v = ref`, to a part of input.
type alias struct {
	def   *ast.Expr
	ref   ast.Ref
	paths [][]step // resolved: where in input v points
}

// aliases finds the candidate aliases of a rule (with its else branches): variables
// that appear exactly once as one side of an equality whose other side is a reference,
// in an expression without `with`. A variable bound twice is compared, not bound, and
// is left to the whole-value rule.
func aliases(r *ast.Rule) map[ast.Var]*alias {
	defs := map[ast.Var][]*alias{}
	ast.WalkExprs(r, func(e *ast.Expr) bool {
		if !e.IsEquality() || e.Negated || len(e.With) > 0 {
			return false
		}
		ops := e.Operands()
		if len(ops) != 2 {
			return false
		}
		for i := range 2 {
			v, ok := ops[i].Value.(ast.Var)
			ref, isRef := ops[1-i].Value.(ast.Ref)
			if ok && isRef && !v.Equal(ast.InputRootDocument.Value) && len(ref) > 1 {
				defs[v] = append(defs[v], &alias{def: e, ref: ref})
			}
		}
		return false
	})
	out := map[ast.Var]*alias{}
	for v, ds := range defs {
		if len(ds) == 1 {
			out[v] = ds[0]
		}
	}
	// Resolve chains (v = input.a; w = v.b) from input outwards; what does not reach
	// input is no alias.
	resolved := map[ast.Var]bool{}
	var resolve func(v ast.Var, depth int) bool
	resolve = func(v ast.Var, depth int) bool {
		a := out[v]
		if a == nil || depth > len(out) {
			return false
		}
		if resolved[v] {
			return a.paths != nil
		}
		head, ok := a.ref[0].Value.(ast.Var)
		switch {
		case !ok:
		case head.Equal(ast.InputRootDocument.Value):
			a.paths = [][]step{steps(a.ref[1:])}
		case resolve(head, depth+1):
			for _, p := range out[head].paths {
				a.paths = append(a.paths, append(append([]step{}, p...), steps(a.ref[1:])...))
			}
		}
		resolved[v] = true
		return a.paths != nil
	}
	for v := range out {
		resolve(v, 0)
	}
	for v, a := range out {
		if a.paths == nil {
			delete(out, v)
		}
	}
	return out
}

func steps(ref ast.Ref) []step {
	out := make([]step, len(ref))
	for i, t := range ref {
		if s, ok := t.Value.(ast.String); ok {
			out[i] = step{key: string(s)}
		} else {
			out[i] = step{any: true}
		}
	}
	return out
}

type analysis struct {
	need    *need
	aliases map[ast.Var]*alias
}

func (a *analysis) rule(r *ast.Rule) {
	a.plain(r.Head, nil)
	visit := func(e *ast.Expr) bool {
		a.expr(e)
		return false
	}
	ast.WalkExprs(r.Head, visit) // comprehensions in the head
	ast.WalkExprs(r.Body, visit)
	if r.Else != nil {
		a.rule(r.Else)
	}
}

// expr records what one expression reads; the expressions nested in it (comprehension
// bodies, every, not) are visited on their own by WalkExprs.
func (a *analysis) expr(e *ast.Expr) {
	if e.IsEquality() {
		for _, t := range e.Operands() {
			if v, ok := t.Value.(ast.Var); ok && a.aliases[v] != nil && a.aliases[v].def == e {
				// The binding itself: v's uses say what is read. Its value must exist,
				// and the reference's keys (`[name]`) are read as any other term.
				for _, p := range a.aliases[v].paths {
					a.need.touch(p)
				}
				for _, k := range a.aliases[v].ref[1:] {
					a.plain(k, e)
				}
				return
			}
		}
	}
	if a.objectGet(e) {
		return
	}
	a.plain(e, e)
}

// objectGet records object.get(x, "k", default) or object.get(x, ["k1", "k2"], default)
// on a part of input as reading x.k (x.k1.k2) only.
func (a *analysis) objectGet(e *ast.Expr) bool {
	ts, ok := e.Terms.([]*ast.Term)
	if !ok || len(e.With) > 0 || len(ts) < 4 || !e.Operator().Equal(ast.ObjectGet.Ref()) {
		return false
	}
	var keys []step
	switch k := ts[2].Value.(type) {
	case ast.String:
		keys = []step{{key: string(k)}}
	case *ast.Array:
		for i := range k.Len() {
			s, ok := k.Elem(i).Value.(ast.String)
			if !ok {
				return false
			}
			keys = append(keys, step{key: string(s)})
		}
	default:
		return false
	}
	bases := a.pathsOf(ts[1])
	if bases == nil {
		return false
	}
	for _, b := range bases {
		a.need.add(append(append([]step{}, b...), keys...))
	}
	if r, ok := ts[1].Value.(ast.Ref); ok {
		for _, k := range r[1:] {
			a.plain(k, e)
		}
	}
	for _, t := range ts[3:] {
		a.plain(t, e)
	}
	return true
}

// pathsOf is where a term points into input, when it is input.a..., an alias, or a
// reference from an alias; nil otherwise.
func (a *analysis) pathsOf(t *ast.Term) [][]step {
	switch x := t.Value.(type) {
	case ast.Var:
		if al := a.aliases[x]; al != nil {
			return al.paths
		}
	case ast.Ref:
		head, ok := x[0].Value.(ast.Var)
		switch {
		case !ok:
		case head.Equal(ast.InputRootDocument.Value):
			return [][]step{steps(x[1:])}
		case a.aliases[head] != nil:
			var out [][]step
			for _, p := range a.aliases[head].paths {
				out = append(out, append(append([]step{}, p...), steps(x[1:])...))
			}
			return out
		}
	}
	return nil
}

// plain records every mention of input, or of an alias, in x as reading the whole
// value it names; it does not enter expressions nested in x other than root.
func (a *analysis) plain(x any, root *ast.Expr) {
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Expr:
			return x != root
		case ast.Ref:
			ps := a.pathsOf(ast.NewTerm(x))
			if ps == nil {
				return false
			}
			for _, p := range ps {
				a.need.add(p)
			}
			for _, k := range x[1:] {
				vis.Walk(k)
			}
			return true
		case ast.Var:
			if x.Equal(ast.InputRootDocument.Value) {
				a.need.add(nil) // input itself, not at the head of a reference
			}
			for _, p := range a.pathsOf(ast.NewTerm(x)) {
				a.need.add(p)
			}
		}
		return false
	})
	vis.Walk(x)
}
