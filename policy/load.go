package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"gopkg.in/yaml.v3"
)

// files is a policy directory read from an fs.FS.
type files struct {
	modules  map[string]*ast.Module // by path, as named in errors
	tests    map[string]*ast.Module // *_test.rego, parsed only when asked for
	data     map[string]any
	revision string // sha256 over every file read, so equal policies share an id
}

// readFiles parses every .rego file under dir (tests only when withTests) and merges the
// JSON and YAML files beside them into one data document: a file in a subdirectory
// lands under data.<subdir path>, as `opa eval -d` loads a directory.
func readFiles(fsys fs.FS, dir string, withTests bool) (*files, error) {
	f := &files{modules: map[string]*ast.Module{}, tests: map[string]*ast.Module{}, data: map[string]any{}}
	h := sha256.New()
	if _, err := fs.Stat(fsys, dir); errors.Is(err, fs.ErrNotExist) {
		f.revision = "sha256:" + hex.EncodeToString(h.Sum(nil)) // no policies: nothing denies
		return f, nil
	}
	err := fs.WalkDir(fsys, dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read policies: %w", err)
		}
		if e.IsDir() {
			if p != dir && strings.HasPrefix(e.Name(), ".") {
				return fs.SkipDir
			}
			return nil
		}
		ext := path.Ext(p)
		isTest := strings.HasSuffix(p, "_test.rego")
		if ext != ".rego" && ext != ".json" && ext != ".yaml" && ext != ".yml" || isTest && !withTests {
			return nil
		}
		src, err := fs.ReadFile(fsys, p)
		if err != nil {
			return fmt.Errorf("read policy file: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(src))
		h.Write(src)
		if ext == ".rego" {
			m, err := ast.ParseModuleWithOpts(p, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
			if err != nil {
				return fmt.Errorf("parse policy: %w", err)
			}
			if isTest {
				f.tests[p] = m
			} else {
				f.modules[p] = m
			}
			return nil
		}
		doc, err := decodeData(p, src)
		if err != nil {
			return err
		}
		rel := strings.Trim(strings.TrimPrefix(path.Dir(p), dir), "/")
		return mergeAt(f.data, rel, doc, p)
	})
	if err != nil {
		return nil, err
	}
	f.revision = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return f, nil
}

func decodeData(name string, src []byte) (map[string]any, error) {
	var doc any
	if path.Ext(name) == ".json" {
		d := json.NewDecoder(bytes.NewReader(src))
		d.UseNumber()
		if err := d.Decode(&doc); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				line := bytes.Count(src[:min(int(se.Offset), len(src))], []byte("\n")) + 1
				return nil, fmt.Errorf("read policy data %s:%d: %w", name, line, err)
			}
			return nil, fmt.Errorf("read policy data %s: %w", name, err)
		}
	} else if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("read policy data %s: %w", name, err) // yaml names the line
	}
	if doc == nil {
		return map[string]any{}, nil
	}
	plain, err := ast.JSON(newRedactor(nil).value(doc, false))
	m, ok := plain.(map[string]any)
	if err != nil || !ok {
		return nil, fmt.Errorf("read policy data %s: the document must be a map at the top, not %T", name, doc)
	}
	return m, nil
}

// mergeAt merges doc into data at the slash-separated path at; two files setting the
// same key is an error, as OPA's loader makes it.
func mergeAt(data map[string]any, at string, doc map[string]any, file string) error {
	for _, seg := range strings.Split(at, "/") {
		if seg == "" {
			continue
		}
		next, ok := data[seg].(map[string]any)
		if !ok {
			if _, taken := data[seg]; taken {
				return fmt.Errorf("read policy data %s: data.%s is already set by another file", file, seg)
			}
			next = map[string]any{}
			data[seg] = next
		}
		data = next
	}
	for k, v := range doc {
		if old, ok := data[k]; ok {
			om, ok1 := old.(map[string]any)
			nm, ok2 := v.(map[string]any)
			if !ok1 || !ok2 {
				return fmt.Errorf("read policy data %s: key %q is already set by another file", file, k)
			}
			if err := mergeAt(om, "", nm, file); err != nil {
				return err
			}
			continue
		}
		data[k] = v
	}
	return nil
}

// capabilities are OPA's built-ins minus those reaching the network: a verdict depends
// only on the repository and the commit, and evaluation cannot hang on a remote host.
func capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	kept := c.Builtins[:0]
	for _, b := range c.Builtins {
		switch b.Name {
		case "http.send", "net.lookup_ip_addr", "opa.runtime":
			continue
		}
		kept = append(kept, b)
	}
	c.Builtins = kept
	return c
}

// compile type-checks modules together, reporting every error with file:line.
func compile(modules map[string]*ast.Module) (*ast.Compiler, error) {
	c := ast.NewCompiler().WithCapabilities(capabilities()).WithDefaultRegoVersion(ast.RegoV1).WithSchemas(schemas())
	if c.Compile(modules); c.Failed() {
		return nil, fmt.Errorf("compile policies: %w", c.Errors)
	}
	return c, nil
}
