package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bosun-gitops/bosun/policy"
)

func init() {
	register(&command{name: "policy", summary: "work with Rego policies: `policy test [DIR]` runs their *_test.rego tests", run: runPolicy})
}

func runPolicy(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 || args[0] != "test" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(c.stdout, "Usage: bosun policy test [--json] [DIR]   (DIR defaults to policies)")
			return nil
		}
		return usageError("want `bosun policy test [DIR]`")
	}
	fs := newFlagSet(c, "policy", "test [DIR]")
	asJSON := fs.Bool("json", false, "print results as JSON")
	rest, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	dir := "policies"
	switch len(rest) {
	case 0:
	case 1:
		dir = rest[0]
	default:
		return usageError("want at most one directory, got %d arguments", len(rest))
	}
	abs, err := filepath.Abs(dir)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		return fmt.Errorf("read policy directory: %w", err)
	}
	// Errors name files relative to the parent, as the operator typed the directory.
	results, err := policy.RunTests(ctx, os.DirFS(filepath.Dir(abs)), filepath.Base(abs))
	if err != nil {
		return err
	}
	failed := 0
	for _, r := range results {
		if r.Outcome == "FAIL" || r.Outcome == "ERROR" {
			failed++
		}
	}
	if *asJSON {
		if err := printJSON(c.stdout, results); err != nil {
			return err
		}
	} else {
		rows := make([][]string, len(results))
		for i, r := range results {
			rows[i] = []string{r.Outcome, r.Package + "." + r.Name, fmt.Sprintf("%s:%d", r.File, r.Line), r.Error}
		}
		if err := printTable(c.stdout, []string{"RESULT", "TEST", "WHERE", "ERROR"}, rows); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "\n%d passed, %d failed, %d skipped\n", countOutcome(results, "PASS"), failed, countOutcome(results, "SKIPPED"))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d policy tests failed", failed, len(results))
	}
	return nil
}

func countOutcome(rs []policy.TestResult, outcome string) int {
	n := 0
	for _, r := range rs {
		if r.Outcome == outcome {
			n++
		}
	}
	return n
}
