package manifest

import (
	"errors"
	"testing"
)

// located reports whether err carries a position, as every error from these entry points must.
func located(err error) bool {
	var e *Error
	var es Errors
	var miss *MissingVarsError
	return errors.As(err, &e) && e.Pos.File != "" || errors.As(err, &es) || errors.As(err, &miss)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"a: 1", "- [a, b]\n- {c: d}", "a: &x 1\nb: *x", "<<: {a: 1}", "a: !!int 1", "? [a]\n: b", "a: [", "\t", "--- 1\n--- 2"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Parse("f.yml", data)
		if err != nil {
			if !located(err) {
				t.Fatalf("error without location: %v", err)
			}
			return
		}
		if _, err := Marshal(n); err != nil {
			t.Fatalf("cannot print what was parsed: %v", err)
		}
	})
}

func FuzzApplyOps(f *testing.F) {
	doc := "a: {b: [1, {name: x, v: 2}, 3]}\nc: d\n"
	for _, s := range []string{
		"[{type: replace, path: /a/b/name=x/v, value: 3}]",
		"[{type: replace, path: \"/a/b/0:after\", value: 3}]",
		"[{type: remove, path: \"/a/z?/q\"}]",
		"[{type: test, path: /c, value: d}]",
		"[{type: replace, path: \"/x?/y/-\", value: 1}]",
		"[{type: replace, path: /a/b/-1:prev, value: 1}]",
	} {
		f.Add(doc, s)
	}
	f.Fuzz(func(t *testing.T, docText, opsText string) {
		d, err := Parse("doc.yml", []byte(docText))
		if err != nil {
			return
		}
		ops, err := ParseOps("ops.yml", []byte(opsText))
		if err != nil {
			if !located(err) {
				t.Fatalf("error without location: %v", err)
			}
			return
		}
		if _, err := ApplyOps(d, ops); err != nil && !located(err) {
			t.Fatalf("error without location: %v", err)
		}
	})
}

func FuzzInterpolate(f *testing.F) {
	for _, s := range []string{"a: ((x))", "a: b((x.y))c", "((k)): ((!x))", "a: ((m.a))", "a: (( x ))\nb: ((x)((y))"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, docText string) {
		d, err := Parse("doc.yml", []byte(docText))
		if err != nil {
			return
		}
		static := StaticVars{"x": Scalar("v", Pos{}), "k": Scalar(1, Pos{}), "m": mustParse(t, "{a: [1], b: c}")}
		if _, err := Interpolate(d, static, nil, InterpolateOptions{ExpectAllKeys: true}); err != nil && !located(err) {
			t.Fatalf("error without location: %v", err)
		}
	})
}
