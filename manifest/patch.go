package manifest

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// tokenKind is one step of a go-patch pointer.
type tokenKind uint8

const (
	keyToken tokenKind = iota
	indexToken
	afterLastToken
	matchToken
)

type token struct {
	kind     tokenKind
	key      string // key, or match key
	value    string // match value
	index    int
	optional bool
	prev     int // net :prev/:next shift
	before   bool
	after    bool
}

// Pointer is a parsed go-patch path such as /instance_groups/name=web/jobs/-.
type Pointer struct {
	raw    string
	tokens []token
}

func (p Pointer) String() string { return p.raw }

var pointerUnescaper = strings.NewReplacer("~1", "/", "~7", ":", "~0", "~")

// ParsePointer parses a go-patch path with its escapes (~0 ~, ~1 /, ~7 :) and modifiers.
func ParsePointer(s string) (Pointer, error) {
	p := Pointer{raw: s}
	if s == "" {
		return p, nil
	}
	if !strings.HasPrefix(s, "/") {
		return p, fmt.Errorf("path %q must start with '/'", s)
	}
	parts := strings.Split(s, "/")[1:]
	optional := false
	for i, part := range parts {
		var t token
		pieces := strings.Split(part, ":")
		part = pieces[0]
		for _, m := range pieces[1:] {
			switch m {
			case "prev":
				t.prev--
			case "next":
				t.prev++
			case "before":
				t.before = true
			case "after":
				t.after = true
			default:
				return p, fmt.Errorf("path %q: unknown modifier ':%s' (expected prev, next, before or after)", s, m)
			}
		}
		if t.before && t.after {
			return p, fmt.Errorf("path %q: ':before' and ':after' cannot be combined", s)
		}
		part = pointerUnescaper.Replace(part)
		if part == "-" {
			if i != len(parts)-1 {
				return p, fmt.Errorf("path %q: '-' may only be the last token", s)
			}
			t.kind = afterLastToken
			p.tokens = append(p.tokens, t)
			continue
		}
		if idx, err := strconv.Atoi(part); err == nil {
			t.kind, t.index = indexToken, idx
			p.tokens = append(p.tokens, t)
			continue
		}
		if strings.HasSuffix(part, "?") {
			optional = true
			part = strings.TrimSuffix(part, "?")
		}
		t.optional = optional
		if k, v, ok := strings.Cut(part, "="); ok {
			t.kind, t.key, t.value = matchToken, k, v
		} else {
			if t.prev != 0 || t.before || t.after {
				return p, fmt.Errorf("path %q: modifiers apply only to array indexes and matches, not to key %q", s, part)
			}
			t.kind, t.key = keyToken, part
		}
		p.tokens = append(p.tokens, t)
	}
	return p, nil
}

// upTo returns the path of the first n tokens, for messages.
func (p Pointer) upTo(n int) string {
	if p.raw == "" {
		return "/"
	}
	parts := strings.Split(p.raw, "/")
	if n+1 > len(parts) {
		return p.raw
	}
	return strings.Join(parts[:n+1], "/")
}

func kindName(n *Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case MapNode:
		return "a map"
	case SeqNode:
		return "an array"
	}
	if n.Value == nil {
		return "null"
	}
	return fmt.Sprintf("%T %v", n.Value, n.Value)
}

// concrete resolves an index with its :prev/:next shift against an array of length n.
func (p Pointer) concrete(i int, t token, idx, n int) (int, error) {
	idx += t.prev
	if idx < 0 {
		idx += n
	}
	if idx < 0 || idx >= n {
		return 0, fmt.Errorf("expected array index %d at %s but the array has %d items", idx, p.upTo(i+1), n)
	}
	return idx, nil
}

func (p Pointer) matches(i int, t token, arr *Node) []int {
	var idxs []int
	for j, it := range arr.Items {
		if it.Kind != MapNode {
			continue
		}
		if v := it.Get(t.key); v != nil && v.Kind == ScalarNode {
			if s, ok := v.Value.(string); ok && s == t.value {
				idxs = append(idxs, j)
			}
		}
	}
	return idxs
}

func keyNames(m *Node) string {
	var ks []string
	for _, p := range m.Pairs {
		ks = append(ks, fmt.Sprintf("'%v'", p.Key.Value))
	}
	return strings.Join(ks, ", ")
}

// Find returns the node at p, or nil and no error when an optional token is missing.
func Find(doc *Node, p Pointer) (*Node, error) {
	cur := doc
	for i, t := range p.tokens {
		switch t.kind {
		case keyToken:
			if cur.Kind != MapNode {
				return nil, fmt.Errorf("expected a map at %s but found %s", p.upTo(i), kindName(cur))
			}
			next := cur.Get(t.key)
			if next == nil {
				if t.optional {
					return nil, nil
				}
				return nil, fmt.Errorf("no key '%s' at %s (keys there: %s)", t.key, p.upTo(i+1), keyNames(cur))
			}
			cur = next
		case indexToken:
			if cur.Kind != SeqNode {
				return nil, fmt.Errorf("expected an array at %s but found %s", p.upTo(i), kindName(cur))
			}
			idx, err := p.concrete(i, t, t.index, len(cur.Items))
			if err != nil {
				return nil, err
			}
			cur = cur.Items[idx]
		case afterLastToken:
			return nil, fmt.Errorf("'-' at %s names no existing item", p.upTo(i+1))
		case matchToken:
			if cur.Kind != SeqNode {
				return nil, fmt.Errorf("expected an array at %s but found %s", p.upTo(i), kindName(cur))
			}
			idxs := p.matches(i, t, cur)
			if len(idxs) == 0 && t.optional {
				return nil, nil
			}
			if len(idxs) != 1 {
				return nil, fmt.Errorf("expected exactly one array item matching %s but found %d", p.upTo(i+1), len(idxs))
			}
			idx, err := p.concrete(i, t, idxs[0], len(cur.Items))
			if err != nil {
				return nil, err
			}
			cur = cur.Items[idx]
		}
	}
	return cur, nil
}

// Op is one go-patch operation of an ops file.
type Op struct {
	Type   string // replace, remove or test
	Path   Pointer
	Value  *Node
	Absent bool
	Error  string // operator's own message, replacing ours when the op fails
	Pos    Pos
}

// ParseOps reads an ops file: a YAML array of {type, path, value, absent, error}.
func ParseOps(file string, data []byte) ([]Op, error) {
	doc, err := Parse(file, data)
	if err != nil {
		return nil, err
	}
	if doc.Kind == ScalarNode && doc.Value == nil {
		return nil, nil
	}
	if doc.Kind != SeqNode {
		return nil, &Error{Pos: doc.Pos, Msg: "an ops file must be an array of operations, found " + kindName(doc)}
	}
	var errs Errors
	ops := make([]Op, 0, len(doc.Items))
	for i, it := range doc.Items {
		at := "[" + strconv.Itoa(i) + "]"
		if it.Kind != MapNode {
			errs = append(errs, &Error{Pos: it.Pos, Path: at, Msg: "an operation must be a map, found " + kindName(it)})
			continue
		}
		op := Op{Pos: it.Pos}
		bad := func(n *Node, msg string) { errs = append(errs, &Error{Pos: n.Pos, Path: at, Msg: msg}) }
		hasValue := false
		for _, pr := range it.Pairs {
			k, _ := pr.Key.Value.(string)
			switch k {
			case "type":
				op.Type, _ = pr.Value.Value.(string)
			case "path":
				s, ok := pr.Value.Value.(string)
				if !ok || pr.Value.Kind != ScalarNode {
					bad(pr.Value, "path must be a string")
					continue
				}
				if op.Path, err = ParsePointer(s); err != nil {
					bad(pr.Value, err.Error())
				}
			case "value":
				op.Value, hasValue = pr.Value, true
			case "absent":
				b, ok := pr.Value.Value.(bool)
				if !ok {
					bad(pr.Value, "absent must be true or false")
				}
				op.Absent = b
			case "error":
				op.Error, _ = pr.Value.Value.(string)
			}
			// Other keys (bosh-deployment's ops carry a name) are ignored, as go-patch does.
		}
		if it.Get("path") == nil {
			bad(it, "operation has no path")
		}
		switch op.Type {
		case "replace":
			if !hasValue {
				bad(it, "replace operation has no value")
			}
		case "remove":
			if hasValue {
				bad(it, "remove operation must not have a value")
			}
		case "test":
			if hasValue == op.Absent {
				bad(it, "test operation needs exactly one of value or absent: true")
			}
		default:
			bad(it, fmt.Sprintf("unknown operation type %q (expected replace, remove or test)", op.Type))
		}
		ops = append(ops, op)
	}
	return ops, errs.Err()
}

// ApplyOps applies ops in order to doc and returns the new document. doc is modified.
func ApplyOps(doc *Node, ops []Op) (*Node, error) {
	for i, op := range ops {
		var err error
		doc, err = op.Apply(doc)
		if err != nil {
			msg := err.Error()
			if op.Error != "" {
				msg = op.Error + " (" + msg + ")"
			}
			return nil, &Error{Pos: op.Pos, Path: op.Path.raw, Msg: fmt.Sprintf("operation [%d] %s failed: %s", i, op.Type, msg)}
		}
	}
	return doc, nil
}

// Apply applies one operation.
func (op Op) Apply(doc *Node) (*Node, error) {
	switch op.Type {
	case "replace":
		return op.replace(doc)
	case "remove":
		return op.remove(doc)
	case "test":
		found, err := Find(doc, op.Path)
		if op.Absent {
			if err == nil && found != nil {
				return nil, fmt.Errorf("expected nothing at %s but found %s", op.Path.raw, kindName(found))
			}
			return doc, nil
		}
		if err != nil {
			return nil, err
		}
		if found == nil || !reflect.DeepEqual(found.Plain(), op.Value.Plain()) {
			return nil, fmt.Errorf("found %s at %s, not the value the test expects", kindName(found), op.Path.raw)
		}
		return doc, nil
	}
	return nil, fmt.Errorf("unknown operation type %q", op.Type)
}

func insert(items []*Node, at int, v *Node) []*Node {
	items = append(items, nil)
	copy(items[at+1:], items[at:])
	items[at] = v
	return items
}

func (op Op) replace(doc *Node) (*Node, error) {
	p := op.Path
	if len(p.tokens) == 0 {
		return op.Value.Clone(), nil
	}
	cur := doc
	for i, t := range p.tokens {
		last := i == len(p.tokens)-1
		switch t.kind {
		case indexToken, matchToken, afterLastToken:
			if cur.Kind != SeqNode {
				return nil, fmt.Errorf("expected an array at %s but found %s", p.upTo(i), kindName(cur))
			}
		}
		switch t.kind {
		case keyToken:
			if cur.Kind != MapNode {
				return nil, fmt.Errorf("expected a map at %s but found %s", p.upTo(i), kindName(cur))
			}
			next := cur.Get(t.key)
			if last {
				setPair(cur, Scalar(t.key, op.Pos), op.Value.Clone())
				return doc, nil
			}
			if next == nil {
				if !t.optional {
					return nil, fmt.Errorf("no key '%s' at %s (keys there: %s)", t.key, p.upTo(i+1), keyNames(cur))
				}
				next = emptyFor(p.tokens[i+1], op.Pos)
				setPair(cur, Scalar(t.key, op.Pos), next)
			}
			cur = next
		case indexToken:
			idx, err := p.concrete(i, t, t.index, len(cur.Items))
			if err != nil {
				return nil, err
			}
			if last {
				placeAt(cur, idx, t, op.Value.Clone())
				return doc, nil
			}
			cur = cur.Items[idx]
		case afterLastToken:
			cur.Items = append(cur.Items, op.Value.Clone())
			return doc, nil
		case matchToken:
			idxs := p.matches(i, t, cur)
			if len(idxs) == 0 && t.optional {
				if last {
					cur.Items = append(cur.Items, op.Value.Clone())
					return doc, nil
				}
				m := &Node{Kind: MapNode, Pos: op.Pos, Pairs: []Pair{{Scalar(t.key, op.Pos), Scalar(t.value, op.Pos)}}}
				cur.Items = append(cur.Items, m)
				cur = m
				continue
			}
			if len(idxs) != 1 {
				return nil, fmt.Errorf("expected exactly one array item matching %s but found %d", p.upTo(i+1), len(idxs))
			}
			idx, err := p.concrete(i, t, idxs[0], len(cur.Items))
			if err != nil {
				return nil, err
			}
			if last {
				placeAt(cur, idx, t, op.Value.Clone())
				return doc, nil
			}
			cur = cur.Items[idx]
		}
	}
	return doc, nil
}

func placeAt(arr *Node, idx int, t token, v *Node) {
	switch {
	case t.before:
		arr.Items = insert(arr.Items, idx, v)
	case t.after:
		arr.Items = insert(arr.Items, idx+1, v)
	default:
		arr.Items[idx] = v
	}
}

// emptyFor is what an optional missing key becomes so that the next token can descend.
func emptyFor(next token, pos Pos) *Node {
	if next.kind == keyToken {
		return &Node{Kind: MapNode, Pos: pos}
	}
	return &Node{Kind: SeqNode, Pos: pos}
}

func (op Op) remove(doc *Node) (*Node, error) {
	p := op.Path
	if len(p.tokens) == 0 {
		return nil, fmt.Errorf("cannot remove the whole document")
	}
	cur := doc
	for i, t := range p.tokens {
		last := i == len(p.tokens)-1
		switch t.kind {
		case keyToken:
			if cur.Kind != MapNode {
				return nil, fmt.Errorf("expected a map at %s but found %s", p.upTo(i), kindName(cur))
			}
			j := findPair(cur, t.key)
			if j < 0 {
				if t.optional {
					return doc, nil
				}
				return nil, fmt.Errorf("no key '%s' at %s (keys there: %s)", t.key, p.upTo(i+1), keyNames(cur))
			}
			if last {
				cur.Pairs = append(cur.Pairs[:j], cur.Pairs[j+1:]...)
				return doc, nil
			}
			cur = cur.Pairs[j].Value
		case indexToken, matchToken:
			if cur.Kind != SeqNode {
				return nil, fmt.Errorf("expected an array at %s but found %s", p.upTo(i), kindName(cur))
			}
			base := t.index
			if t.kind == matchToken {
				idxs := p.matches(i, t, cur)
				if len(idxs) == 0 && t.optional {
					return doc, nil
				}
				if len(idxs) != 1 {
					return nil, fmt.Errorf("expected exactly one array item matching %s but found %d", p.upTo(i+1), len(idxs))
				}
				base = idxs[0]
			}
			idx, err := p.concrete(i, t, base, len(cur.Items))
			if err != nil {
				return nil, err
			}
			if last {
				cur.Items = append(cur.Items[:idx], cur.Items[idx+1:]...)
				return doc, nil
			}
			cur = cur.Items[idx]
		case afterLastToken:
			return nil, fmt.Errorf("cannot remove '-' at %s", p.upTo(i+1))
		}
	}
	return doc, nil
}
