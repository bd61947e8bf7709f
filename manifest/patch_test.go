package manifest

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustParse(t testing.TB, s string) *Node {
	n, err := Parse("doc.yml", []byte(s))
	if err != nil {
		panic(err)
	}
	return n
}

func mustMarshal(t testing.TB, n *Node) string {
	t.Helper()
	b, err := Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestApplyOps(t *testing.T) {
	const doc = `
name: d
list: [a, b, c]
igs:
- name: web
  jobs: [{name: x}]
- name: db
`
	tests := []struct {
		name, ops, want, err string
	}{
		{name: "replace key", ops: `[{type: replace, path: /name, value: e}]`,
			want: "igs:\n- jobs:\n  - name: x\n  name: web\n- name: db\nlist:\n- a\n- b\n- c\nname: e\n"},
		{name: "add missing last key", ops: `[{type: replace, path: /new, value: 1}]`, want: "new: 1"},
		{name: "missing middle key", ops: `[{type: replace, path: /nope/x, value: 1}]`, err: "no key 'nope' at /nope"},
		{name: "optional creates maps", ops: `[{type: replace, path: "/a?/b/c", value: 1}]`, want: "a:\n  b:\n    c: 1\n"},
		{name: "optional creates array for -", ops: `[{type: replace, path: "/arr?/-", value: 1}]`, want: "arr:\n- 1\n"},
		{name: "append", ops: `[{type: replace, path: /list/-, value: d}]`, want: "- c\n- d\n"},
		{name: "index", ops: `[{type: replace, path: /list/1, value: B}]`, want: "- a\n- B\n- c\n"},
		{name: "negative index", ops: `[{type: replace, path: /list/-1, value: C}]`, want: "- b\n- C\n"},
		{name: "before", ops: `[{type: replace, path: /list/0:before, value: z}]`, want: "list:\n- z\n- a\n"},
		{name: "after", ops: `[{type: replace, path: /list/0:after, value: z}]`, want: "- a\n- z\n- b\n"},
		{name: "next", ops: `[{type: replace, path: /list/0:next, value: z}]`, want: "- a\n- z\n- c\n"},
		{name: "prev", ops: `[{type: replace, path: /list/2:prev, value: z}]`, want: "- a\n- z\n- c\n"},
		{name: "index out of range", ops: `[{type: replace, path: /list/5, value: z}]`, err: "array index 5"},
		{name: "match", ops: `[{type: replace, path: /igs/name=web/jobs/name=x/release, value: r}]`, want: "  - name: x\n    release: r\n"},
		{name: "match after", ops: `[{type: replace, path: "/igs/name=web:after", value: {name: mid}}]`, want: "  name: web\n- name: mid\n- name: db\n"},
		{name: "optional match appends", ops: `[{type: replace, path: "/igs/name=api?/instances", value: 2}]`, want: "- name: db\n- instances: 2\n  name: api\n"},
		{name: "match none", ops: `[{type: replace, path: /igs/name=api/instances, value: 2}]`, err: "exactly one array item matching /igs/name=api but found 0"},
		{name: "escapes", ops: `[{type: replace, path: "/a~1b~0c~7d", value: 1}]`, want: "a/b~c:d: 1\n"},
		{name: "remove key", ops: `[{type: remove, path: /list}]`, want: "igs:\n- jobs:\n  - name: x\n  name: web\n- name: db\nname: d\n"},
		{name: "remove match", ops: `[{type: remove, path: /igs/name=web}]`, want: "igs:\n- name: db\nlist"},
		{name: "remove optional missing", ops: `[{type: remove, path: "/nope?/x"}]`, want: "name: d\n"},
		{name: "remove missing", ops: `[{type: remove, path: /nope}]`, err: "no key 'nope'"},
		{name: "test passes", ops: `[{type: test, path: /list/0, value: a}, {type: test, path: /zzz, absent: true}]`, want: "name: d\n"},
		{name: "test fails", ops: `[{type: test, path: /list/0, value: b}]`, err: "not the value the test expects"},
		{name: "custom error", ops: `[{type: test, path: /name, absent: true, error: "name must not be set"}]`, err: "name must not be set"},
		{name: "type mismatch", ops: `[{type: replace, path: /name/0, value: 1}]`, err: "expected an array at /name"},
		{name: "replace root", ops: `[{type: replace, path: "", value: {x: 1}}]`, want: "x: 1\n"},
		{name: "error names the op file", ops: "- type: replace\n  path: /nope/x\n  value: 1\n", err: "ops.yml:1:3: /nope/x: operation [0] replace failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, err := ParseOps("ops.yml", []byte(tt.ops))
			if err != nil {
				t.Fatal(err)
			}
			out, err := ApplyOps(mustParse(t, doc), ops)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := mustMarshal(t, out); !strings.Contains(got, tt.want) {
				t.Errorf("got\n%s\nwant it to contain\n%s", got, tt.want)
			}
		})
	}
}

func TestParseOpsErrors(t *testing.T) {
	tests := []struct{ ops, err string }{
		{"{}", "ops.yml:1:1: an ops file must be an array"},
		{"- type: frob\n  path: /a", "ops.yml:1:3: [0]: unknown operation type \"frob\""},
		{"- type: remove\n  path: /a\n  value: 1", "remove operation must not have a value"},
		{"- type: replace\n  path: /a", "replace operation has no value"},
		{"- type: replace\n  path: a\n  value: 1", "ops.yml:2:9: [0]: path \"a\" must start with '/'"},
		{"- type: replace\n  path: /a:frob\n  value: 1", "unknown modifier ':frob'"},
		{"- type: replace\n  path: /-/a\n  value: 1", "'-' may only be the last token"},
		{"- [", "ops.yml:1:1: malformed YAML"},
	}
	for _, tt := range tests {
		_, err := ParseOps("ops.yml", []byte(tt.ops))
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%q: error %v, want it to contain %q", tt.ops, err, tt.err)
		}
	}
}

func TestParseResolvesLikeBOSH(t *testing.T) {
	doc := mustParse(t, "a: yes\nb: 0x10\nc: 1_000\nd: '1'\ne: ~\nf: 1.5\ng: 2001-01-01\nh: !!str 12\ni: &x {k: v}\nj: *x\nk:\n  <<: *x\n  l: 1\n")
	want := map[any]any{"a": true, "b": 16, "c": 1000, "d": "1", "e": nil, "f": 1.5, "g": "2001-01-01", "h": "12",
		"i": map[any]any{"k": "v"}, "j": map[any]any{"k": "v"}, "k": map[any]any{"k": "v", "l": 1}}
	if diff := cmp.Diff(want, doc.Plain()); diff != "" {
		t.Error(diff)
	}
	if got := mustMarshal(t, doc); !strings.Contains(got, `g: "2001-01-01"`) {
		t.Errorf("timestamps must print quoted as BOSH does:\n%s", got)
	}
}

func TestParseBadInput(t *testing.T) {
	tests := []struct{ in, err string }{
		{"a: [", "doc.yml:1:1: malformed YAML"},
		{"a: b\n c: d\n  - e", "doc.yml:2:"},
		{"a: *nope", "unknown anchor"},
		{"a: !!int x", "doc.yml:1:4: cannot read \"x\" as !!int"},
		{"? [a]\n: b", "a map key must be a scalar"},
		{strings.Repeat("x", MaxDocumentBytes+1), "the limit is"},
	}
	for _, tt := range tests {
		_, err := Parse("doc.yml", []byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			name := tt.in
			if len(name) > 40 {
				name = name[:40]
			}
			t.Errorf("%q: error %v, want it to contain %q", name, err, tt.err)
		}
	}
}

func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("a" + strconv.Itoa(i) + ": &a" + strconv.Itoa(i) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + strconv.Itoa(i-1))
		}
		b.WriteString("]\n")
	}
	if _, err := Parse("bomb.yml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), "too many values") {
		t.Fatalf("error %v, want an alias bomb refused", err)
	}
}
