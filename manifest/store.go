package manifest

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// Store is a vars store file (--vars-store): values are read from it, and variables
// declared under variables: that it lacks are generated into it, as BOSH's CLI does.
// Nothing is written until Save, which replaces the file atomically. A Store serves one
// interpolation at a time.
type Store struct {
	path    string
	values  *Node // map
	changed bool

	static   StaticVars                      // consulted first for signing CAs, as for everything
	keys     map[string]chan *rsa.PrivateKey // pre-generated keys, by variable name
	generate func(def VarDef, s *Store) (*Node, error)
}

// OpenStore reads path; a missing file is an empty store.
func OpenStore(path string) (*Store, error) {
	s := &Store{path: path, values: &Node{Kind: MapNode, Pos: Pos{File: path}}, generate: generateValue}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading vars store: %w", err)
	}
	doc, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	switch {
	case doc.Kind == MapNode:
		s.values = doc
	case doc.Kind == ScalarNode && doc.Value == nil:
	default:
		return nil, &Error{Pos: doc.Pos, Msg: "a vars store must be a map of variable names to values, found " + kindName(doc)}
	}
	return s, nil
}

// Changed reports whether values were generated since the store was opened.
func (s *Store) Changed() bool { return s.changed }

// Values is the store's map node.
func (s *Store) Values() *Node { return s.values }

// Get implements Source: a stored value, or a newly generated one when def has a type.
func (s *Store) Get(def VarDef) (*Node, bool, error) {
	if v := s.values.Get(def.Name); v != nil {
		return v, true, nil
	}
	if def.Type == "" {
		return nil, false, nil
	}
	v, err := s.generate(def, s)
	if err != nil {
		return nil, false, fmt.Errorf("generating variable %q of type %q: %w", def.Name, def.Type, err)
	}
	setPair(s.values, Scalar(def.Name, Pos{File: s.path}), v)
	s.changed = true
	return v, true, nil
}

// prepare starts generating, on every CPU, the RSA keys of declared variables that
// neither the store nor static sources hold: key generation is nearly all the cost.
func (s *Store) prepare(defs []VarDef, static StaticVars) {
	s.static = static
	var names []string
	var bits []int
	for _, d := range defs {
		if _, ok := static[d.Name]; ok || s.values.Get(d.Name) != nil {
			continue
		}
		switch d.Type {
		case "certificate":
			names, bits = append(names, d.Name), append(bits, keyBits(d))
		case "rsa", "ssh":
			names, bits = append(names, d.Name), append(bits, 2048)
		}
	}
	if len(names) == 0 {
		return
	}
	s.keys = make(map[string]chan *rsa.PrivateKey, len(names))
	for _, n := range names {
		s.keys[n] = make(chan *rsa.PrivateKey, 1)
	}
	work := make(chan int)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		go func() {
			for i := range work {
				k, err := rsa.GenerateKey(rand.Reader, bits[i])
				if err != nil {
					k = nil
				}
				s.keys[names[i]] <- k
			}
		}()
	}
	go func() {
		for i := range names {
			work <- i
		}
		close(work)
	}()
}

// key returns the pre-generated key for name, or generates one now.
func (s *Store) key(name string, bits int) (*rsa.PrivateKey, error) {
	if ch, ok := s.keys[name]; ok {
		if k := <-ch; k != nil && k.N.BitLen() == bits {
			return k, nil
		}
	}
	return rsa.GenerateKey(rand.Reader, bits)
}

// Save writes the store if it changed, atomically: a reader sees the old file or the
// whole new one, never a half-written store.
func (s *Store) Save() error {
	if !s.changed {
		return nil
	}
	if err := s.saveable(); err != nil {
		return err
	}
	data, err := Marshal(s.values)
	if err != nil {
		return fmt.Errorf("encoding vars store: %w", err)
	}
	return writeAtomic(s.path, data, 0o600)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing vars store: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing vars store: %w", err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("writing vars store: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing vars store: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing vars store: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing vars store: %w", err)
	}
	return nil
}
