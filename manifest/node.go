package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	yaml2 "gopkg.in/yaml.v2"
	"gopkg.in/yaml.v3"
)

// Kind is the shape of a Node.
type Kind uint8

const (
	ScalarNode Kind = iota
	MapNode
	SeqNode
)

// Pos is where a node was read from. Nodes made by ops or variables carry the position
// of the ops file or variables file they came from.
type Pos struct {
	File      string
	Line, Col int
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Node is one value of a YAML document. Scalars hold what BOSH's CLI (yaml.v2, YAML 1.1)
// resolves them to: nil, string, bool, int, int64, uint64 or float64.
type Node struct {
	Kind  Kind
	Value any
	Pairs []Pair  // MapNode, in document order
	Items []*Node // SeqNode
	Pos   Pos
}

// Pair is one key of a map.
type Pair struct{ Key, Value *Node }

// MaxDocumentBytes bounds what Parse accepts; larger documents are refused before parsing.
const MaxDocumentBytes = 32 << 20

// maxNodes bounds the expanded size of a document so that alias bombs cannot exhaust memory.
const maxNodes = 1 << 20

// Scalar returns a scalar node.
func Scalar(v any, pos Pos) *Node { return &Node{Kind: ScalarNode, Value: v, Pos: pos} }

// Get returns the value under key of a map node, or nil.
func (n *Node) Get(key string) *Node {
	if n == nil || n.Kind != MapNode {
		return nil
	}
	for i := len(n.Pairs) - 1; i >= 0; i-- {
		if s, ok := n.Pairs[i].Key.Value.(string); ok && n.Pairs[i].Key.Kind == ScalarNode && s == key {
			return n.Pairs[i].Value
		}
	}
	return nil
}

// Clone returns a deep copy of n.
func (n *Node) Clone() *Node {
	if n == nil {
		return nil
	}
	c := *n
	if n.Pairs != nil {
		c.Pairs = make([]Pair, len(n.Pairs))
		for i, p := range n.Pairs {
			c.Pairs[i] = Pair{p.Key.Clone(), p.Value.Clone()}
		}
	}
	if n.Items != nil {
		c.Items = make([]*Node, len(n.Items))
		for i, it := range n.Items {
			c.Items[i] = it.Clone()
		}
	}
	return &c
}

// Parse reads the first YAML document of data, as BOSH's CLI does, keeping positions.
// An empty document is a nil scalar.
func Parse(file string, data []byte) (n *Node, err error) {
	defer func() {
		// yaml.v3 has panicked on some malformed inputs in the past; never pass that on.
		if r := recover(); r != nil {
			n, err = nil, &Error{Pos: Pos{File: file, Line: 1, Col: 1}, Msg: fmt.Sprintf("malformed YAML: %v", r)}
		}
	}()
	if len(data) > MaxDocumentBytes {
		return nil, &Error{Pos: Pos{File: file}, Msg: fmt.Sprintf("document is %d bytes; the limit is %d", len(data), MaxDocumentBytes)}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Scalar(nil, Pos{File: file, Line: 1, Col: 1}), nil
		}
		return nil, yamlError(file, err)
	}
	c := converter{file: file}
	return c.convert(&doc, 0)
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlError(file string, err error) error {
	msg := err.Error()
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Pos: Pos{File: file, Line: line, Col: 1}, Msg: "malformed YAML: " + m[2]}
	}
	return &Error{Pos: Pos{File: file, Line: 1, Col: 1}, Msg: "malformed YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

type converter struct {
	file  string
	nodes int
}

func (c *converter) pos(n *yaml.Node) Pos { return Pos{File: c.file, Line: n.Line, Col: n.Column} }

func (c *converter) convert(n *yaml.Node, depth int) (*Node, error) {
	c.nodes++
	if c.nodes > maxNodes || depth > 10000 {
		return nil, &Error{Pos: c.pos(n), Msg: "document expands to too many values (alias or nesting bomb)"}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return Scalar(nil, c.pos(n)), nil
		}
		return c.convert(n.Content[0], depth)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, &Error{Pos: c.pos(n), Msg: "unknown anchor " + n.Value}
		}
		return c.convert(n.Alias, depth+1)
	case yaml.SequenceNode:
		out := &Node{Kind: SeqNode, Pos: c.pos(n), Items: make([]*Node, 0, len(n.Content))}
		for _, it := range n.Content {
			v, err := c.convert(it, depth+1)
			if err != nil {
				return nil, err
			}
			out.Items = append(out.Items, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := &Node{Kind: MapNode, Pos: c.pos(n), Pairs: make([]Pair, 0, len(n.Content)/2)}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				if err := c.merge(out, v, depth); err != nil {
					return nil, err
				}
				continue
			}
			kn, err := c.convert(k, depth+1)
			if err != nil {
				return nil, err
			}
			if kn.Kind != ScalarNode {
				return nil, &Error{Pos: kn.Pos, Msg: "a map key must be a scalar"}
			}
			vn, err := c.convert(v, depth+1)
			if err != nil {
				return nil, err
			}
			setPair(out, kn, vn)
		}
		return out, nil
	default:
		v, err := resolveScalar(n)
		if err != nil {
			return nil, &Error{Pos: c.pos(n), Msg: err.Error()}
		}
		return Scalar(v, c.pos(n)), nil
	}
}

// merge applies a `<<` merge key: keys of the merged maps that the map does not set.
func (c *converter) merge(out *Node, v *yaml.Node, depth int) error {
	src, err := c.convert(v, depth+1)
	if err != nil {
		return err
	}
	maps := []*Node{src}
	if src.Kind == SeqNode {
		maps = src.Items
	}
	for _, m := range maps {
		if m.Kind != MapNode {
			return &Error{Pos: m.Pos, Msg: "a merge key (<<) must name a map or a list of maps"}
		}
		for _, p := range m.Pairs {
			if findPair(out, p.Key.Value) < 0 {
				out.Pairs = append(out.Pairs, p)
			}
		}
	}
	return nil
}

func findPair(m *Node, key any) int {
	for i, p := range m.Pairs {
		if p.Key.Value == key || (isNaN(p.Key.Value) && isNaN(key)) {
			return i
		}
	}
	return -1
}

func isNaN(v any) bool { f, ok := v.(float64); return ok && math.IsNaN(f) }

// setPair sets key in m, replacing an existing equal key as yaml.v2 does for duplicates.
func setPair(m, key, val *Node) {
	if i := findPair(m, key.Value); i >= 0 {
		m.Pairs[i] = Pair{key, val}
		return
	}
	m.Pairs = append(m.Pairs, Pair{key, val})
}

func resolveScalar(n *yaml.Node) (any, error) {
	explicit := n.Style&yaml.TaggedStyle != 0
	if !explicit && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return n.Value, nil
	}
	tag := ""
	if explicit {
		tag = n.Tag
	}
	switch tag {
	case "":
		return resolvePlain(n.Value), nil
	case "!!str", "!!binary", "!!timestamp":
		return n.Value, nil
	case "!!null":
		return nil, nil
	case "!!bool", "!!int", "!!float":
		v := resolvePlain(n.Value)
		ok := false
		switch v.(type) {
		case bool:
			ok = tag == "!!bool"
		case int, int64, uint64:
			ok = tag == "!!int" || tag == "!!float"
			if tag == "!!float" {
				f, _ := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
				v = f
			}
		case float64:
			ok = tag == "!!float"
		}
		if !ok {
			return nil, fmt.Errorf("cannot read %q as %s", n.Value, tag)
		}
		return v, nil
	default:
		// Unknown local tags are kept as their text, as yaml.v2 does.
		return n.Value, nil
	}
}

var yamlStyleFloat = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)

// resolvePlain resolves an untagged plain scalar with YAML 1.1 rules, as gopkg.in/yaml.v2
// does when BOSH's CLI unmarshals into interface{} (timestamps stay strings).
func resolvePlain(in string) any {
	switch in {
	case "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON":
		return true
	case "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF":
		return false
	case "", "~", "null", "Null", "NULL":
		return nil
	case ".nan", ".NaN", ".NAN":
		return math.NaN()
	case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF":
		return math.Inf(1)
	case "-.inf", "-.Inf", "-.INF":
		return math.Inf(-1)
	}
	c := in[0]
	switch {
	case c == '.':
		if f, err := strconv.ParseFloat(in, 64); err == nil {
			return f
		}
	case c == '+' || c == '-' || (c >= '0' && c <= '9'):
		plain := strings.ReplaceAll(in, "_", "")
		if i, err := strconv.ParseInt(plain, 0, 64); err == nil {
			if i == int64(int(i)) {
				return int(i)
			}
			return i
		}
		if u, err := strconv.ParseUint(plain, 0, 64); err == nil {
			return u
		}
		if yamlStyleFloat.MatchString(plain) {
			if f, err := strconv.ParseFloat(plain, 64); err == nil {
				return f
			}
		}
		if strings.HasPrefix(plain, "0b") {
			if i, err := strconv.ParseInt(plain[2:], 2, 64); err == nil {
				return int(i)
			}
			if u, err := strconv.ParseUint(plain[2:], 2, 64); err == nil {
				return u
			}
		} else if strings.HasPrefix(plain, "-0b") {
			if i, err := strconv.ParseInt("-"+plain[3:], 2, 64); err == nil {
				return int(i)
			}
		}
	}
	return in
}

// Plain returns n as plain Go values: map[any]any, []any and scalars, the shape BOSH's CLI
// works on. Map keys that are NaN cannot be represented and are dropped.
func (n *Node) Plain() any {
	if n == nil {
		return nil
	}
	switch n.Kind {
	case MapNode:
		m := make(map[any]any, len(n.Pairs))
		for _, p := range n.Pairs {
			m[p.Key.Value] = p.Value.Plain()
		}
		return m
	case SeqNode:
		s := make([]any, len(n.Items))
		for i, it := range n.Items {
			s[i] = it.Plain()
		}
		return s
	default:
		return n.Value
	}
}

// Marshal prints n exactly as BOSH's CLI prints a document: yaml.v2, keys sorted.
func Marshal(n *Node) ([]byte, error) {
	return marshalPlain(n.Plain())
}

func marshalPlain(v any) (out []byte, err error) {
	defer func() {
		// yaml.v2 panics on values it cannot encode; none of ours should reach it.
		if r := recover(); r != nil {
			err = fmt.Errorf("encoding YAML: %v", r)
		}
	}()
	return yaml2.Marshal(v)
}
