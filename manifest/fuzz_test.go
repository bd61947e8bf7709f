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
	if errors.As(err, &es) {
		for _, e := range es {
			if e.Pos.File == "" || e.Pos.Line == 0 {
				return false
			}
		}
		return len(es) > 0
	}
	return errors.As(err, &e) && e.Pos.File != "" || errors.As(err, &miss)
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

func FuzzLoadAndValidate(f *testing.F) {
	f.Add(deploymentYAML, cloudConfigYAML)
	f.Add("name: x\ninstance_groups: [{name: a, networks: [{name: default, static_ips: [10.0.0.1-10.0.0.9, ::1]}]}]", "networks: [{name: default, subnets: [{range: ::/127, gateway: '::1', static: [a-b]}]}]")
	f.Add("update: {canaries: 5%, max_in_flight: x, canary_watch_time: 5-1}", "compilation: {workers: 0}\nazs: [{name: z}]")
	f.Fuzz(func(t *testing.T, depText, ccText string) {
		depDoc, err1 := Parse("m.yml", []byte(depText))
		ccDoc, err2 := Parse("c.yml", []byte(ccText))
		if err1 != nil || err2 != nil {
			return
		}
		dep, err := LoadDeployment(depDoc)
		if err != nil && !located(err) {
			t.Fatalf("error without location: %v", err)
		}
		cc, err := LoadCloudConfig(ccDoc)
		if err != nil && !located(err) {
			t.Fatalf("error without location: %v", err)
		}
		rc, err := LoadRuntimeConfig(ccDoc)
		if err != nil && !located(err) {
			t.Fatalf("error without location: %v", err)
		}
		if dep != nil && cc != nil {
			if err := Validate(dep, cc, rc); err != nil && !located(err) {
				t.Fatalf("error without location: %v", err)
			}
		}
	})
}
