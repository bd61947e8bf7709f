package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/bosun-gitops/bosun/manifest"
)

func init() {
	register(&command{
		name:    "interpolate",
		aliases: []string{"int"},
		summary: "apply ops files and variables to a BOSH YAML document and print it, as bosh int does",
		run:     runInterpolate,
	})
}

// multiFlag collects a repeatable flag in order.
type multiFlag []string

func (m *multiFlag) String() string     { return fmt.Sprint(*m) }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runInterpolate(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "interpolate", "FILE")
	var opsFiles, vars, varsFiles, varFiles multiFlag
	fs.Var(&opsFiles, "o", "ops file to apply (repeatable; also --ops-file)")
	fs.Var(&opsFiles, "ops-file", "ops file to apply (repeatable)")
	fs.Var(&vars, "v", "variable name=value (repeatable; also --var)")
	fs.Var(&vars, "var", "variable name=value (repeatable)")
	fs.Var(&varsFiles, "l", "YAML file of variables (repeatable; also --vars-file)")
	fs.Var(&varsFiles, "vars-file", "YAML file of variables (repeatable)")
	fs.Var(&varFiles, "var-file", "variable name=path whose value is the file's content (repeatable)")
	var varsEnv multiFlag
	fs.Var(&varsEnv, "vars-env", "read variables from environment variables PREFIX_name (repeatable)")
	storePath := fs.String("vars-store", "", "vars store to read and to generate missing declared variables into")
	path := fs.String("path", "", "print only the value at this go-patch path")
	varErrs := fs.Bool("var-errs", false, "fail when a variable is missing")
	varErrsUnused := fs.Bool("var-errs-unused", false, "fail when a given variable is not used")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("expected one FILE (got %d); `-` reads standard input", len(pos))
	}
	o := manifest.RenderOptions{Static: manifest.StaticVars{}}
	o.ExpectAllKeys, o.ExpectAllVarsUsed = *varErrs, *varErrsUnused
	if *path != "" {
		p, err := manifest.ParsePointer(*path)
		if err != nil {
			return usageError("--path: %v", err)
		}
		o.Path = &p
	}
	// BOSH's precedence: --vars-env, then -l, then --var-file, then -v; the vars store last.
	for _, prefix := range varsEnv {
		if err := o.Static.AddVarsEnv(prefix, os.Environ()); err != nil {
			return usageError("%v", err)
		}
	}
	for _, f := range varsFiles {
		if err := o.Static.AddVarsFile(f); err != nil {
			return err
		}
	}
	for _, f := range varFiles {
		if err := o.Static.AddVarFile(f); err != nil {
			return err
		}
	}
	for _, v := range vars {
		if err := o.Static.AddVar(v); err != nil {
			return usageError("%v", err)
		}
	}
	if o.Ops, err = manifest.LoadOps(opsFiles...); err != nil {
		return err
	}
	if *storePath != "" {
		if o.Store, err = manifest.OpenStore(*storePath); err != nil {
			return err
		}
	}
	var data []byte
	name := pos[0]
	if name == "-" {
		data, err = readLimited(c.stdin)
		name = "<stdin>"
	} else {
		data, err = readFile(name)
	}
	if err != nil {
		return fmt.Errorf("reading document: %w", err)
	}
	doc, err := manifest.Parse(name, data)
	if err != nil {
		return err
	}
	doc, err = manifest.Render(doc, o)
	if err != nil {
		return err
	}
	out, err := manifest.Marshal(doc)
	if err != nil {
		return err
	}
	if o.Store != nil {
		if err := o.Store.Save(); err != nil {
			return err
		}
	}
	_, err = c.stdout.Write(out)
	return err
}

// readLimited reads at most the document limit, refusing more rather than truncating.
func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, manifest.MaxDocumentBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > manifest.MaxDocumentBytes {
		return nil, fmt.Errorf("standard input is larger than the %d-byte document limit", manifest.MaxDocumentBytes)
	}
	return data, nil
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > manifest.MaxDocumentBytes {
		return nil, fmt.Errorf("%s is %d bytes, larger than the %d-byte document limit", name, fi.Size(), manifest.MaxDocumentBytes)
	}
	return readLimited(f)
}
