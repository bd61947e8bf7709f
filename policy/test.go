package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestResult is the outcome of one test_ rule, as `opa test` reports it.
type TestResult struct {
	Package  string        `json:"package"` // without "data."
	Name     string        `json:"name"`
	File     string        `json:"file"`
	Line     int           `json:"line"`
	Outcome  string        `json:"outcome"` // PASS, FAIL, SKIPPED (todo_ rules) or ERROR
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// RunTests runs the test_ rules of every *.rego file under dir (policies and their
// *_test.rego files, with the data files beside them) as `opa test` does. A parse or
// compile error is returned, naming file and line; failing tests are not errors.
func RunTests(ctx context.Context, fsys fs.FS, dir string) ([]TestResult, error) {
	f, err := readFiles(fsys, dir, true)
	if err != nil {
		return nil, err
	}
	for p, m := range f.tests {
		f.modules[p] = m
	}
	ch, err := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithCapabilities(capabilities()).WithDefaultRegoVersion(ast.RegoV1).WithSchemas(schemas())).
		SetStore(inmem.NewFromObjectWithOpts(f.data, inmem.OptRoundTripOnWrite(false))).
		SetTimeout(DefaultTimeout).
		RaiseBuiltinErrors(true).
		SetModules(f.modules).
		RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("compile policies and tests: %w", err)
	}
	var out []TestResult
	for r := range ch {
		t := TestResult{Package: trimData(r.Package), Name: r.Name, Duration: r.Duration, Outcome: "PASS"}
		if r.Location != nil {
			t.File, t.Line = r.Location.File, r.Location.Row
		}
		switch {
		case r.Skip:
			t.Outcome = "SKIPPED"
		case r.Error != nil:
			t.Outcome, t.Error = "ERROR", r.Error.Error()
		case r.Fail:
			t.Outcome = "FAIL"
		}
		out = append(out, t)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("run policy tests: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Line < out[j].Line
	})
	if len(out) == 0 {
		return nil, errors.New("run policy tests: no test_ rules found under " + dir)
	}
	return out, nil
}

func trimData(pkg string) string {
	if len(pkg) > 5 && pkg[:5] == "data." {
		return pkg[5:]
	}
	return pkg
}
