package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Redacted replaces every secret value in the input policies see.
const Redacted = "[redacted]"

// secretWords mark a map key whose value is a secret, matched against the key lowercased
// with '-' read as '_'. BOSH names its credentials this way (password, private_key of a
// certificate variable, *_secret of UAA clients, tokens), and erring on the side of
// hiding a harmless value costs less than leaking a credential into the status branch.
var secretWords = []string{"password", "passwd", "passphrase", "secret", "private_key", "privatekey", "token", "credential", "api_key", "apikey", "access_key"}

// SecretKey reports whether a map key names a secret value.
func SecretKey(k string) bool {
	k = strings.ToLower(strings.ReplaceAll(k, "-", "_"))
	if k == "key" { // the private half of a {certificate, key} pair
		return true
	}
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// Redact returns a copy of v, a document decoded from YAML or JSON, in which these are
// replaced by "[redacted]" (keys are kept, so policies can still test for presence):
//   - the whole value under any map key for which SecretKey is true;
//   - every string equal to one of secrets (the values of interpolated variables);
//   - every string holding a PEM private key ("-----BEGIN … PRIVATE KEY-----").
//
// Map keys of other types are turned into strings, and values JSON cannot hold
// (timestamps, other scalars) into their text.
func Redact(v any, secrets ...string) any {
	out, err := ast.JSON(newRedactor(secrets).value(v, true))
	if err != nil {
		return Redacted // unreachable: value builds only JSON-representable values
	}
	return out
}

type redactor struct {
	secrets map[string]bool
	// terms shares one term per short string: manifests repeat the same keys and values
	// (name, instances, release names) thousands of times in a large fleet.
	terms map[string]*ast.Term
	keys  map[string]bool // SecretKey, memoised
}

func newRedactor(secrets []string) *redactor {
	r := &redactor{secrets: make(map[string]bool, len(secrets)), terms: map[string]*ast.Term{}, keys: map[string]bool{}}
	for _, s := range secrets {
		if s != "" {
			r.secrets[s] = true
		}
	}
	return r
}

var redactedTerm = ast.StringTerm(Redacted)

func (r *redactor) str(s string) *ast.Term {
	if len(s) > 128 {
		return ast.StringTerm(s)
	}
	t, ok := r.terms[s]
	if !ok {
		t = ast.StringTerm(s)
		r.terms[s] = t
	}
	return t
}

// value converts v to an OPA value, redacting when asked; it accepts anything a YAML or
// JSON decoder produces and never fails.
func (r *redactor) value(v any, redact bool) ast.Value { return r.term(v, redact).Value }

func (r *redactor) term(v any, redact bool) *ast.Term {
	switch x := v.(type) {
	case nil:
		return ast.InternedNullTerm
	case ast.Value:
		return ast.NewTerm(x)
	case bool:
		return ast.InternedTerm(x)
	case string:
		if redact && (r.secrets[x] || isPrivateKey(x)) {
			return redactedTerm
		}
		return r.str(x)
	case int:
		return ast.InternedTerm(x)
	case int64:
		return ast.InternedTerm(int(x))
	case uint64:
		return ast.NumberTerm(json.Number(strconv.FormatUint(x, 10)))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return ast.StringTerm(fmt.Sprint(x))
		}
		return ast.FloatNumberTerm(x)
	case time.Time:
		return ast.StringTerm(x.Format(time.RFC3339Nano))
	case []any:
		ts := make([]*ast.Term, len(x))
		for i, e := range x {
			ts[i] = r.term(e, redact)
		}
		return ast.ArrayTerm(ts...)
	case []string:
		ts := make([]*ast.Term, len(x))
		for i, e := range x {
			ts[i] = r.term(e, redact)
		}
		return ast.ArrayTerm(ts...)
	case map[string]any:
		kvs := make([][2]*ast.Term, 0, len(x))
		for k, e := range x {
			kvs = append(kvs, r.pair(k, e, redact))
		}
		return ast.NewTerm(ast.NewObject(kvs...))
	case map[any]any:
		kvs := make([][2]*ast.Term, 0, len(x))
		for k, e := range x {
			kvs = append(kvs, r.pair(fmt.Sprint(k), e, redact))
		}
		return ast.NewTerm(ast.NewObject(kvs...))
	case []map[string]any:
		ts := make([]*ast.Term, len(x))
		for i, e := range x {
			ts[i] = r.term(e, redact)
		}
		return ast.ArrayTerm(ts...)
	default:
		return ast.StringTerm(fmt.Sprint(x))
	}
}

func (r *redactor) pair(k string, v any, redact bool) [2]*ast.Term {
	if redact {
		secret, ok := r.keys[k]
		if !ok {
			secret = SecretKey(k)
			r.keys[k] = secret
		}
		if secret {
			return [2]*ast.Term{r.str(k), redactedTerm}
		}
	}
	return [2]*ast.Term{r.str(k), r.term(v, redact)}
}

func isPrivateKey(s string) bool {
	i := strings.Index(s, "-----BEGIN ")
	return i >= 0 && strings.Contains(s[i:], "PRIVATE KEY-----")
}

// sortedKeys returns m's keys in order, so everything derived from a map is stable.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
