package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Scopes a token may carry. Team scopes are ScopeTeamPrefix + team + ".admin" or ".read".
const (
	ScopeAdmin      = "bosun.admin"
	ScopeRead       = "bosun.read"
	ScopeTeamPrefix = "bosun.teams."
)

// Config is the API's part of the director's configuration: who may call it and how it
// is served. It is read from YAML (LoadConfig) or built in code.
type Config struct {
	TLS TLSConfig `yaml:"tls" json:"tls"`
	// Tokens are the accepted bearer tokens, each by its hash (HashToken).
	Tokens []TokenConfig `yaml:"tokens" json:"tokens"`
	// Teams map a team to the deployments it owns (names or path.Match patterns). A team
	// not listed owns the one deployment of its own name.
	Teams map[string][]string `yaml:"teams" json:"teams,omitempty"`
}

// TLSConfig names the certificate the API is served with; empty means plain HTTP.
type TLSConfig struct {
	Cert string `yaml:"cert" json:"cert,omitempty"` // PEM file, chain included
	Key  string `yaml:"key" json:"key,omitempty"`
}

// TokenConfig is one accepted token.
type TokenConfig struct {
	// Name is who the token speaks for: the user events record.
	Name string `yaml:"name" json:"name"`
	// Hash is HashToken of the token: "sha256:<64 hex digits>".
	Hash   string   `yaml:"hash" json:"hash"`
	Scopes []string `yaml:"scopes" json:"scopes"`
	// Expires, when set, is when the token stops being accepted.
	Expires time.Time `yaml:"expires,omitempty" json:"expires,omitzero"`
}

// LoadConfig reads an API config file (YAML) and checks it.
func LoadConfig(file string) (Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Config{}, fmt.Errorf("API config: %w", err)
	}
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("API config %s: %w", file, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("API config %s: %w", file, err)
	}
	return c, nil
}

// Validate checks every token has a name, a well-formed hash and known scopes, and that
// no name or hash is given twice.
func (c Config) Validate() error {
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("tls: give both cert and key, or neither")
	}
	names, hashes := map[string]bool{}, map[string]bool{}
	for i, t := range c.Tokens {
		where := fmt.Sprintf("tokens[%d]", i)
		if t.Name == "" {
			return fmt.Errorf("%s: name is empty", where)
		}
		where = fmt.Sprintf("tokens[%d] (%s)", i, t.Name)
		if names[t.Name] {
			return fmt.Errorf("%s: a second token named %s; names are the users events record, so keep them unique", where, t.Name)
		}
		names[t.Name] = true
		if !validHash(t.Hash) {
			return fmt.Errorf("%s: hash must be sha256:<64 hex digits>, as `bosun new-token` prints it", where)
		}
		if hashes[t.Hash] {
			return fmt.Errorf("%s: the same token hash is given twice", where)
		}
		hashes[t.Hash] = true
		if len(t.Scopes) == 0 {
			return fmt.Errorf("%s: no scopes; give bosun.admin, bosun.read or bosun.teams.<team>.admin|read", where)
		}
		for _, s := range t.Scopes {
			if _, _, ok := parseScope(s); !ok {
				return fmt.Errorf("%s: unknown scope %q; want bosun.admin, bosun.read or bosun.teams.<team>.admin|read", where, s)
			}
		}
	}
	for team, pats := range c.Teams {
		for _, p := range pats {
			if _, err := path.Match(p, ""); err != nil {
				return fmt.Errorf("teams.%s: bad pattern %q: %w", team, p, err)
			}
		}
	}
	return nil
}

func validHash(h string) bool {
	hexPart, ok := strings.CutPrefix(h, "sha256:")
	if !ok || len(hexPart) != 64 {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil
}

// parseScope splits a scope into its team ("" for director-wide) and whether it writes.
func parseScope(s string) (team string, write, ok bool) {
	switch s {
	case ScopeAdmin:
		return "", true, true
	case ScopeRead:
		return "", false, true
	}
	rest, found := strings.CutPrefix(s, ScopeTeamPrefix)
	if !found {
		return "", false, false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return "", false, false
	}
	switch rest[i+1:] {
	case "admin":
		return rest[:i], true, true
	case "read":
		return rest[:i], false, true
	}
	return "", false, false
}

// HashToken returns the form a token is configured in: its SHA-256, so that a config
// file or a database dump never gives a working token away. Tokens are random and long,
// so a fast hash is enough; a slow one would only slow every request.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

const tokenAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// NewToken returns a fresh random token (about 238 bits), prefixed so that secret
// scanners recognise it.
func NewToken() (string, error) {
	var b strings.Builder
	b.WriteString("bosun_")
	max := big.NewInt(int64(len(tokenAlphabet)))
	for range 40 {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("new token: %w", err)
		}
		b.WriteByte(tokenAlphabet[n.Int64()])
	}
	return b.String(), nil
}

// Principal is who a request speaks for, and what its token allows.
type Principal struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	admin  bool
	read   bool
	// teams maps a team to whether the token may write to its deployments.
	teams map[string]bool
}

// authError is a 401 or 403 with the reason the caller is told.
type authError struct {
	status int
	msg    string
}

func (e *authError) Error() string { return e.msg }

// Auth checks bearer tokens against a Config.
type Auth struct {
	byHash map[string]*tokenEntry
	teams  map[string][]string
	now    func() time.Time
}

type tokenEntry struct {
	cfg TokenConfig
	p   Principal
}

// NewAuth builds the token checker of c.
func NewAuth(c Config) (*Auth, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	a := &Auth{byHash: map[string]*tokenEntry{}, teams: c.Teams, now: time.Now}
	for _, t := range c.Tokens {
		p := Principal{Name: t.Name, Scopes: slices.Clone(t.Scopes), teams: map[string]bool{}}
		for _, s := range t.Scopes {
			team, write, _ := parseScope(s)
			switch {
			case team == "" && write:
				p.admin = true
			case team == "":
				p.read = true
			default:
				p.teams[team] = p.teams[team] || write
			}
		}
		a.byHash[t.Hash] = &tokenEntry{cfg: t, p: p}
	}
	return a, nil
}

// Authenticate returns who r's bearer token speaks for, or a 401 saying why not.
func (a *Auth) Authenticate(r *http.Request) (*Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, &authError{http.StatusUnauthorized, "no token: send `Authorization: Bearer <token>` (`bosun login` stores one)"}
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return nil, &authError{http.StatusUnauthorized, "malformed Authorization header: want `Bearer <token>`"}
	}
	hash := HashToken(strings.TrimSpace(tok))
	e := a.byHash[hash]
	// The map lookup is by hash, so its timing says nothing about the token; the compare
	// is for the reader who wonders.
	if e == nil || subtle.ConstantTimeCompare([]byte(e.cfg.Hash), []byte(hash)) != 1 {
		return nil, &authError{http.StatusUnauthorized, "token not accepted: it is not in the director's configuration (was it rotated? `bosun login` again)"}
	}
	if !e.cfg.Expires.IsZero() && !a.now().Before(e.cfg.Expires) {
		return nil, &authError{http.StatusUnauthorized, fmt.Sprintf("token %s expired at %s", e.cfg.Name, e.cfg.Expires.UTC().Format(time.RFC3339))}
	}
	p := e.p
	return &p, nil
}

// owns reports whether team owns deployment.
func (a *Auth) owns(team, deployment string) bool {
	pats, listed := a.teams[team]
	if !listed {
		return team == deployment
	}
	for _, p := range pats {
		if ok, _ := path.Match(p, deployment); ok {
			return true
		}
	}
	return false
}

// TeamsOf lists the teams owning deployment, for display.
func (a *Auth) TeamsOf(deployment string) []string {
	var out []string
	for team := range a.teams {
		if a.owns(team, deployment) {
			out = append(out, team)
		}
	}
	sort.Strings(out)
	return out
}

// CanRead reports whether p may see deployment.
func (a *Auth) CanRead(p *Principal, deployment string) bool {
	if p.admin || p.read {
		return true
	}
	for team := range p.teams {
		if a.owns(team, deployment) {
			return true
		}
	}
	return false
}

// CanWrite reports whether p may act on deployment.
func (a *Auth) CanWrite(p *Principal, deployment string) bool {
	if p.admin {
		return true
	}
	for team, write := range p.teams {
		if write && a.owns(team, deployment) {
			return true
		}
	}
	return false
}

// AllDeployments reports whether p sees every deployment (it needs no filter).
func (p *Principal) AllDeployments() bool { return p.admin || p.read }

// IsAdmin reports whether p holds bosun.admin.
func (p *Principal) IsAdmin() bool { return p.admin }

// readDenied and writeDenied are the 403s, naming what would have been needed.
func readDenied(p *Principal, deployment string) error {
	return &authError{http.StatusForbidden, fmt.Sprintf("token %s may not read deployment %s: it needs %s, %s or a team scope of a team owning %s (it has %s)",
		p.Name, deployment, ScopeRead, ScopeAdmin, deployment, strings.Join(p.Scopes, ", "))}
}

func writeDenied(p *Principal, what, deployment string) error {
	need := ScopeAdmin
	if deployment != "" {
		need += " or bosun.teams.<team>.admin of a team owning " + deployment
	}
	return &authError{http.StatusForbidden, fmt.Sprintf("token %s may not %s: it needs %s (it has %s)", p.Name, what, need, strings.Join(p.Scopes, ", "))}
}
