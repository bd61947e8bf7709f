package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bosun-gitops/bosun/release"
)

func init() {
	register(&command{name: "create-release", summary: "build a release tarball from a BOSH release directory, deterministically", run: runCreateRelease})
}

func runCreateRelease(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "create-release", "DIR")
	tarball := fs.String("tarball", "", "write the release tarball to this file")
	name := fs.String("name", "", "release name (default: config/final.yml, config/dev.yml, or the directory's name)")
	ver := fs.String("version", "", "release version (default: "+release.DevVersionPrefix+"<content hash>)")
	asJSON := fs.Bool("json", false, "print release.MF as JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("want exactly one release directory, got %d arguments (see `bosun create-release --help`)", len(pos))
	}
	r, err := release.Build(ctx, pos[0])
	if err != nil {
		return err
	}
	if *name != "" {
		r.Manifest.Name = *name
	}
	if *ver != "" {
		r.Manifest.Version = *ver
	}
	if *tarball != "" {
		var buf bytes.Buffer
		if err := r.WriteTarball(&buf); err != nil {
			return err
		}
		// Write beside the target and rename, so a failed run never leaves half a tarball.
		tmp, err := os.CreateTemp(filepath.Dir(*tarball), ".create-release-*")
		if err != nil {
			return fmt.Errorf("write release tarball: %w", err)
		}
		defer os.Remove(tmp.Name())
		if _, err := tmp.Write(buf.Bytes()); err != nil {
			tmp.Close()
			return fmt.Errorf("write release tarball %s: %w", *tarball, err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("write release tarball %s: %w", *tarball, err)
		}
		if err := os.Chmod(tmp.Name(), 0o644); err != nil {
			return fmt.Errorf("write release tarball %s: %w", *tarball, err)
		}
		if err := os.Rename(tmp.Name(), *tarball); err != nil {
			return fmt.Errorf("write release tarball %s: %w", *tarball, err)
		}
	}
	if *asJSON {
		return printJSON(c.stdout, r.Manifest)
	}
	fmt.Fprintf(c.stdout, "Release %s/%s\n\n", r.Manifest.Name, r.Manifest.Version)
	rows := [][]string{}
	for _, j := range r.Manifest.Jobs {
		rows = append(rows, []string{"job", j.Name, j.Fingerprint, fmt.Sprint(j.Packages)})
	}
	for _, p := range r.Manifest.Packages {
		rows = append(rows, []string{"package", p.Name, p.Fingerprint, fmt.Sprint(p.Dependencies)})
	}
	if err := printTable(c.stdout, []string{"Kind", "Name", "Fingerprint", "Packages"}, rows); err != nil {
		return err
	}
	if *tarball != "" {
		fmt.Fprintf(c.stdout, "\nWrote %s\n", *tarball)
	}
	return nil
}
