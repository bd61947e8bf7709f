package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
)

func init() {
	register(&command{name: "version", summary: "print the version of this binary", run: runVersion})
}

func runVersion(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "version", "")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(c.stdout).Encode(map[string]string{"version": version, "go": runtime.Version()})
	}
	fmt.Fprintf(c.stdout, "bosun %s (%s)\n", version, runtime.Version())
	return nil
}
