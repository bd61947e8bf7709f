package reconciler

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/bosun-gitops/bosun/manifest"
)

// Variables supplies the values of variables declared in manifests, per deployment:
// Load returns what is stored (a map node), Save stores newly generated ones.
type Variables interface {
	Load(ctx context.Context, deployment string) (*manifest.Node, error)
	Save(ctx context.Context, deployment string, generated map[string]*manifest.Node) error
}

// SealedStore keeps sealed variable values; state/postgres.Store satisfies it.
type SealedStore interface {
	SealedVariables(ctx context.Context, deployment string) (map[string][]byte, error)
	AddSealedVariables(ctx context.Context, deployment string, vars map[string][]byte) error
	DeleteVariable(ctx context.Context, deployment, name string) (bool, error)
}

// Vault keeps variables encrypted with AES-256-GCM in a SealedStore: the database never
// sees a value, and a value sealed for one deployment and name cannot be swapped in for
// another (both are the additional data).
type Vault struct {
	store SealedStore
	aead  cipher.AEAD
}

// KeySize is the vault key's length in bytes (AES-256).
const KeySize = 32

// NewVault returns a vault sealing with key (KeySize bytes).
func NewVault(store SealedStore, key []byte) (*Vault, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("variables key: want %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("variables key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("variables key: %w", err)
	}
	return &Vault{store: store, aead: aead}, nil
}

func additional(deployment, name string) []byte { return []byte(deployment + "\x00" + name) }

func (v *Vault) seal(deployment, name string, plain []byte) ([]byte, error) {
	nonce := make([]byte, v.aead.NonceSize(), v.aead.NonceSize()+len(plain)+v.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return v.aead.Seal(nonce, nonce, plain, additional(deployment, name)), nil
}

func (v *Vault) open(deployment, name string, sealed []byte) ([]byte, error) {
	n := v.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed value is truncated")
	}
	return v.aead.Open(nil, sealed[:n], sealed[n:], additional(deployment, name))
}

// Load decrypts deployment's variables into a map node.
func (v *Vault) Load(ctx context.Context, deployment string) (*manifest.Node, error) {
	sealed, err := v.store.SealedVariables(ctx, deployment)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(sealed))
	for n := range sealed {
		names = append(names, n)
	}
	sort.Strings(names)
	out := &manifest.Node{Kind: manifest.MapNode}
	for _, name := range names {
		plain, err := v.open(deployment, name, sealed[name])
		if err != nil {
			// Never the value: only which one and that the key does not open it.
			return nil, fmt.Errorf("variable %s of deployment %s does not decrypt with this director's key (was the key changed?)", name, deployment)
		}
		val, err := manifest.Parse("variables/"+deployment+"/"+name, plain)
		if err != nil {
			return nil, fmt.Errorf("variable %s of deployment %s: stored value is not YAML", name, deployment)
		}
		out.Pairs = append(out.Pairs, manifest.Pair{Key: manifest.Scalar(name, manifest.Pos{}), Value: val})
	}
	return out, nil
}

// Save encrypts and stores generated variables; values stored meanwhile by another
// director are kept (the caller re-reads on the next render).
func (v *Vault) Save(ctx context.Context, deployment string, generated map[string]*manifest.Node) error {
	if len(generated) == 0 {
		return nil
	}
	sealed := make(map[string][]byte, len(generated))
	for name, val := range generated {
		plain, err := manifest.Marshal(val)
		if err != nil {
			return fmt.Errorf("store variable %s of %s: %w", name, deployment, err)
		}
		s, err := v.seal(deployment, name, plain)
		if err != nil {
			return fmt.Errorf("store variable %s of %s: %w", name, deployment, err)
		}
		sealed[name] = s
	}
	return v.store.AddSealedVariables(ctx, deployment, sealed)
}

// Rotate forgets variable name of deployment: the next render generates a new value and,
// since the rendered manifest changes, the deployment is converged with it.
func (v *Vault) Rotate(ctx context.Context, deployment, name string) error {
	ok, err := v.store.DeleteVariable(ctx, deployment, name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("rotate variable %s of deployment %s: no such variable", name, deployment)
	}
	return nil
}

// MemoryVariables keeps variables in memory: `bosun plan` renders without a director, and
// tests use it. Safe for concurrent use.
type MemoryVariables struct {
	mu   sync.Mutex
	vals map[string]map[string]*manifest.Node
}

// Load returns the values generated so far for deployment.
func (m *MemoryVariables) Load(_ context.Context, deployment string) (*manifest.Node, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := &manifest.Node{Kind: manifest.MapNode}
	names := make([]string, 0, len(m.vals[deployment]))
	for n := range m.vals[deployment] {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out.Pairs = append(out.Pairs, manifest.Pair{Key: manifest.Scalar(n, manifest.Pos{}), Value: m.vals[deployment][n].Clone()})
	}
	return out, nil
}

// Save keeps generated values.
func (m *MemoryVariables) Save(_ context.Context, deployment string, generated map[string]*manifest.Node) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.vals == nil {
		m.vals = map[string]map[string]*manifest.Node{}
	}
	if m.vals[deployment] == nil {
		m.vals[deployment] = map[string]*manifest.Node{}
	}
	for n, v := range generated {
		if _, ok := m.vals[deployment][n]; !ok {
			m.vals[deployment][n] = v.Clone()
		}
	}
	return nil
}

// LoadKeyFile reads a vault key written as hex by WriteKeyFile (or by hand: 64 hex digits).
func LoadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("variables key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("variables key %s: want %d hex digits", path, 2*KeySize)
	}
	return key, nil
}

// EnsureKeyFile loads the key at path, creating it (0600) with a random key when it does
// not exist: what `bosun director --dev` does in its data dir.
func EnsureKeyFile(path string) ([]byte, error) {
	if _, err := os.Stat(path); err == nil {
		return LoadKeyFile(path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("variables key: %w", err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("variables key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("variables key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("variables key: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("variables key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("variables key: %w", err)
	}
	return key, nil
}

// ReadOnlyVariables lends a store's variables without ever writing to it: what a plan
// renders with on the director (POST /plan). A variable the store lacks gets a throwaway
// value kept in memory only, for the one plan: the tree being planned may name variables
// that no accepted revision declared, and storing them would let any reader of the API
// make the director keep values it never deploys. Safe for concurrent use.
type ReadOnlyVariables struct {
	from Variables // nil: nothing is stored
	mem  MemoryVariables
}

// ReadOnly returns v read-only (nil: no stored variables, every one is throwaway).
func ReadOnly(v Variables) *ReadOnlyVariables { return &ReadOnlyVariables{from: v} }

// ReadOnly returns the vault in its read-only mode: stored values are read, nothing is
// ever sealed or written.
func (v *Vault) ReadOnly() *ReadOnlyVariables { return ReadOnly(v) }

// Load returns the stored values and, for names the store lacks, the throwaway ones.
func (r *ReadOnlyVariables) Load(ctx context.Context, deployment string) (*manifest.Node, error) {
	out := &manifest.Node{Kind: manifest.MapNode}
	if r.from != nil {
		stored, err := r.from.Load(ctx, deployment)
		if err != nil {
			return nil, err
		}
		out.Pairs = append(out.Pairs, stored.Pairs...)
	}
	mem, err := r.mem.Load(ctx, deployment)
	if err != nil {
		return nil, err
	}
	for _, p := range mem.Pairs {
		if out.Get(fmt.Sprint(p.Key.Value)) == nil {
			out.Pairs = append(out.Pairs, p)
		}
	}
	sort.SliceStable(out.Pairs, func(i, j int) bool {
		return fmt.Sprint(out.Pairs[i].Key.Value) < fmt.Sprint(out.Pairs[j].Key.Value)
	})
	return out, nil
}

// Save keeps generated values in memory only; the store is never written.
func (r *ReadOnlyVariables) Save(ctx context.Context, deployment string, generated map[string]*manifest.Node) error {
	return r.mem.Save(ctx, deployment, generated)
}

// Throwaway lists the variables of deployment that got a throwaway value (the store
// lacks them), sorted.
func (r *ReadOnlyVariables) Throwaway(ctx context.Context, deployment string) []string {
	mem, _ := r.mem.Load(ctx, deployment)
	var out []string
	for _, p := range mem.Pairs {
		out = append(out, fmt.Sprint(p.Key.Value))
	}
	return out
}

// Stored returns every string leaf of deployment's stored values: what a plan's answer
// must never show.
func (r *ReadOnlyVariables) Stored(ctx context.Context, deployment string) ([]string, error) {
	if r.from == nil {
		return nil, nil
	}
	stored, err := r.from.Load(ctx, deployment)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range stored.Pairs {
		out = appendStrings(out, p.Value)
	}
	return out, nil
}
