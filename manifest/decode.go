package manifest

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// dec reads typed values out of a document tree, collecting every problem with its
// position and key path instead of stopping at the first.
type dec struct {
	errs Errors
}

func (d *dec) fail(n *Node, path, format string, a ...any) {
	pos := Pos{}
	if n != nil {
		pos = n.Pos
	}
	d.errs = append(d.errs, &Error{Pos: pos, Path: path, Msg: fmt.Sprintf(format, a...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "/" + key
}

// fields returns the map's pairs, reporting non-maps and keys the caller does not know.
func (d *dec) fields(n *Node, path string, known ...string) bool {
	if n == nil || n.Kind == ScalarNode && n.Value == nil {
		return false
	}
	if n.Kind != MapNode {
		d.fail(n, path, "expected a map, found %s", kindName(n))
		return false
	}
	if len(known) > 0 {
		for _, p := range n.Pairs {
			k := fmt.Sprint(p.Key.Value)
			ok := false
			for _, kk := range known {
				if k == kk {
					ok = true
					break
				}
			}
			if !ok {
				d.fail(p.Key, join(path, k), "unknown key %q", k)
			}
		}
	}
	return true
}

func (d *dec) str(n *Node, path, key string, required bool) string {
	v := n.Get(key)
	if v == nil || v.Kind == ScalarNode && v.Value == nil {
		if required {
			d.fail(n, path, "%s is required", key)
		}
		return ""
	}
	switch x := v.Value.(type) {
	case string:
		if v.Kind == ScalarNode {
			return x
		}
	case int, int64, uint64:
		// BOSH accepts numbers where it expects strings (versions such as 315).
		if v.Kind == ScalarNode {
			return fmt.Sprint(x)
		}
	case float64:
		// Ruby prints 1.0 as "1.0": keep the version an operator wrote.
		f := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(f, ".eEIN") {
			f += ".0"
		}
		return f
	}
	d.fail(v, join(path, key), "expected a string, found %s", kindName(v))
	return ""
}

func (d *dec) integer(n *Node, path, key string, required bool) (int, bool) {
	v := n.Get(key)
	if v == nil || v.Kind == ScalarNode && v.Value == nil {
		if required {
			d.fail(n, path, "%s is required", key)
		}
		return 0, false
	}
	if i, ok := v.Value.(int); ok && v.Kind == ScalarNode {
		return i, true
	}
	d.fail(v, join(path, key), "expected an integer, found %s", kindName(v))
	return 0, false
}

func (d *dec) boolean(n *Node, path, key string) *bool {
	v := n.Get(key)
	if v == nil || v.Kind == ScalarNode && v.Value == nil {
		return nil
	}
	if b, ok := v.Value.(bool); ok && v.Kind == ScalarNode {
		return &b
	}
	d.fail(v, join(path, key), "expected true or false, found %s", kindName(v))
	return nil
}

func (d *dec) strings(n *Node, path, key string) []string {
	v := n.Get(key)
	if v == nil || v.Kind == ScalarNode && v.Value == nil {
		return nil
	}
	if v.Kind != SeqNode {
		d.fail(v, join(path, key), "expected a list of strings, found %s", kindName(v))
		return nil
	}
	out := make([]string, 0, len(v.Items))
	for i, it := range v.Items {
		s, ok := it.scalarString()
		if !ok {
			d.fail(it, join(path, key)+"/"+strconv.Itoa(i), "expected a string, found %s", kindName(it))
			continue
		}
		out = append(out, s)
	}
	return out
}

func (d *dec) list(n *Node, path, key string, required bool) []*Node {
	v := n.Get(key)
	if v == nil || v.Kind == ScalarNode && v.Value == nil {
		if required {
			d.fail(n, path, "%s is required", key)
		}
		return nil
	}
	if v.Kind != SeqNode {
		d.fail(v, join(path, key), "expected a list, found %s", kindName(v))
		return nil
	}
	return v.Items
}

// hash returns the plain value of a map under key (cloud_properties, env, properties…).
func (d *dec) hash(n *Node, path, key string) map[string]any {
	v := n.Get(key)
	if v == nil || v.Kind == ScalarNode && v.Value == nil {
		return nil
	}
	if v.Kind != MapNode {
		d.fail(v, join(path, key), "expected a map, found %s", kindName(v))
		return nil
	}
	return stringKeyed(v.Plain()).(map[string]any)
}

// stringKeyed turns map[any]any into map[string]any throughout, for JSON and OPA.
func stringKeyed(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[fmt.Sprint(k)] = stringKeyed(v)
		}
		return m
	case []any:
		for i := range x {
			x[i] = stringKeyed(x[i])
		}
		return x
	}
	return v
}

// itemPath names a list item by its name when it has one, as operators write paths.
func itemPath(path string, i int, item *Node) string {
	if name, ok := item.Get("name").scalarString(); ok && name != "" {
		return path + "/name=" + name
	}
	return path + "/" + strconv.Itoa(i)
}

// IPRange is an inclusive range of addresses.
type IPRange struct{ First, Last netip.Addr }

func (r IPRange) Contains(a netip.Addr) bool {
	return r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// ipRanges reads a list of addresses and `a - b` ranges.
func (d *dec) ipRanges(n *Node, path, key string) []IPRange {
	var out []IPRange
	v := n.Get(key)
	if v == nil || v.Kind == ScalarNode && v.Value == nil {
		return nil
	}
	items := []*Node{v}
	if v.Kind == SeqNode {
		items = v.Items
	}
	for i, it := range items {
		s, ok := it.scalarString()
		p := join(path, key) + "/" + strconv.Itoa(i)
		if !ok {
			d.fail(it, p, "expected an IP address or range, found %s", kindName(it))
			continue
		}
		r, err := parseIPRange(s)
		if err != nil {
			d.fail(it, p, "%v", err)
			continue
		}
		out = append(out, r)
	}
	return out
}

func parseIPRange(s string) (IPRange, error) {
	a, b, isRange := strings.Cut(s, "-")
	first, err := netip.ParseAddr(strings.TrimSpace(a))
	if err != nil {
		return IPRange{}, fmt.Errorf("%q is not an IP address or range", s)
	}
	if !isRange {
		return IPRange{first, first}, nil
	}
	last, err := netip.ParseAddr(strings.TrimSpace(b))
	if err != nil || last.Less(first) || last.Is4() != first.Is4() {
		return IPRange{}, fmt.Errorf("%q is not a valid range (first-last, first not after last)", s)
	}
	return IPRange{first, last}, nil
}
