package manifest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
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
	keys     map[string]chan *rsa.PrivateKey // keys being pre-generated, by variable name
	stopped  chan struct{}                   // closed when the interpolation that asked for keys ends
	cas      map[[2]string]signingCA         // signing CAs parsed, by certificate and key PEM
	generate func(def VarDef, s *Store) (*Node, error)
}

type signingCA struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
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
// neither the store nor static sources hold: key generation is nearly all the cost. Keys
// are handed out by name, so the order in which they finish does not matter, and they
// are dispatched in declaration order, the order in which generation asks for them.
// The returned func stops dispatching (an interpolation that failed needs no more keys);
// keys already being generated are dropped.
func (s *Store) prepare(defs []VarDef, static StaticVars) (stop func()) {
	s.static = static
	var names []string
	var bits []int
	seen := map[string]bool{}
	for _, d := range defs {
		if _, ok := static[d.Name]; ok || s.values.Get(d.Name) != nil || seen[d.Name] {
			continue // a name declared twice is generated once, as the first declares it
		}
		seen[d.Name] = true
		switch d.Type {
		case "certificate":
			names, bits = append(names, d.Name), append(bits, keyBits(d))
		case "rsa", "ssh":
			names, bits = append(names, d.Name), append(bits, 2048)
		}
	}
	stopped := make(chan struct{})
	s.keys, s.stopped = make(map[string]chan *rsa.PrivateKey, len(names)), stopped
	if len(names) == 0 {
		return func() { close(stopped) }
	}
	chans := make([]chan *rsa.PrivateKey, len(names)) // workers touch these, never the map
	for i, n := range names {
		chans[i] = make(chan *rsa.PrivateKey, 1)
		s.keys[n] = chans[i]
	}
	work := make(chan int)
	for w := 0; w < min(runtime.GOMAXPROCS(0), len(names)); w++ {
		go func() {
			for i := range work {
				k, err := rsa.GenerateKey(rand.Reader, bits[i])
				if err != nil {
					k = nil // key generates one itself, and reports the error
				}
				chans[i] <- k
			}
		}()
	}
	go func() {
		defer close(work)
		for i := range names {
			select {
			case work <- i:
			case <-stopped:
				return
			}
		}
	}()
	return func() { close(stopped) }
}

// key returns the pre-generated key for name, or generates one now.
func (s *Store) key(name string, bits int) (*rsa.PrivateKey, error) {
	if ch, ok := s.keys[name]; ok {
		delete(s.keys, name) // each channel carries one key
		select {
		case k := <-ch:
			if k != nil && k.N.BitLen() == bits {
				return k, nil
			}
		case <-s.stopped: // asked for after its interpolation: it may never come
		}
	}
	return rsa.GenerateKey(rand.Reader, bits)
}

// signingCA parses a CA's certificate and key once per store: a hundred certificates
// signed by one CA would otherwise parse and check its key a hundred times.
func (s *Store) signingCA(certPEM, keyPEM string) (*x509.Certificate, *rsa.PrivateKey, error) {
	if ca, ok := s.cas[[2]string{certPEM, keyPEM}]; ok {
		return ca.cert, ca.key, nil
	}
	cert, key, err := parseCA(certPEM, keyPEM)
	if err != nil {
		return nil, nil, err
	}
	if s.cas == nil {
		s.cas = map[[2]string]signingCA{}
	}
	s.cas[[2]string{certPEM, keyPEM}] = signingCA{cert, key}
	return cert, key, nil
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
