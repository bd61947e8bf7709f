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
	buf   [][2]*ast.Term  // pairs of the objects being built; see object
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
		start := len(r.buf)
		for k, e := range x {
			p := r.pair(k, e, redact)
			r.buf = append(r.buf, p)
		}
		return r.object(start)
	case map[any]any:
		return r.term(stringKeys(x), redact)
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

// object makes an object of the pairs in buf from start on, and pops them. NewObject
// copies its pairs, so one buffer serves every object of a conversion, nested ones
// included: they push above and pop back before their parent's next pair.
func (r *redactor) object(start int) *ast.Term {
	o := ast.NewObject(r.buf[start:]...)
	clear(r.buf[start:])
	r.buf = r.buf[:start]
	return ast.NewTerm(o)
}

func (r *redactor) pair(k string, v any, redact bool) [2]*ast.Term {
	if redact && r.secretKey(k) {
		return [2]*ast.Term{r.str(k), redactedTerm}
	}
	return [2]*ast.Term{r.str(k), r.term(v, redact)}
}

func (r *redactor) secretKey(k string) bool {
	secret, ok := r.keys[k]
	if !ok {
		secret = SecretKey(k)
		r.keys[k] = secret
	}
	return secret
}

// pruned converts what n needs of v: of a map, only the keys n names (all of them when n
// needs any key), secret keys still redacted whole; of a list, every element as n needs
// any; anything else, or everything under a node needing all, in full.
func (r *redactor) pruned(v any, n *need, redact bool) *ast.Term {
	if n.all {
		return r.term(v, redact)
	}
	switch m := v.(type) {
	case map[string]any:
		start := len(r.buf)
		if n.any != nil {
			for k, e := range m {
				p := r.prunedPair(k, e, n.at(k), redact)
				r.buf = append(r.buf, p)
			}
		} else {
			for k, c := range n.kids {
				if e, ok := m[k]; ok {
					p := r.prunedPair(k, e, c, redact)
					r.buf = append(r.buf, p)
				}
			}
		}
		return r.object(start)
	case map[any]any:
		return r.pruned(stringKeys(m), n, redact)
	case []any:
		if n.any != nil {
			ts := make([]*ast.Term, len(m))
			for i, e := range m {
				ts[i] = r.pruned(e, n.any, redact)
			}
			return ast.ArrayTerm(ts...)
		}
	}
	return r.term(v, redact)
}

func (r *redactor) prunedPair(k string, v any, n *need, redact bool) [2]*ast.Term {
	if n.all {
		return r.pair(k, v, redact)
	}
	if redact && r.secretKey(k) {
		return [2]*ast.Term{r.str(k), redactedTerm}
	}
	return [2]*ast.Term{r.str(k), r.pruned(v, n, redact)}
}

// byName converts a map of names (deployments, configs) to documents: the names are kept
// as they are, the documents redacted.
func (r *redactor) byName(m map[string]any, n *need) *ast.Term {
	start := len(r.buf)
	switch {
	case n.all:
		for k, v := range m {
			t := r.term(v, true)
			r.buf = append(r.buf, [2]*ast.Term{r.str(k), t})
		}
	case n.any != nil:
		for k, v := range m {
			t := r.pruned(v, n.at(k), true)
			r.buf = append(r.buf, [2]*ast.Term{r.str(k), t})
		}
	default:
		for k, c := range n.kids {
			if v, ok := m[k]; ok {
				t := r.pruned(v, c, true)
				r.buf = append(r.buf, [2]*ast.Term{r.str(k), t})
			}
		}
	}
	return r.object(start)
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
