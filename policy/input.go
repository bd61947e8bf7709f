package policy

import (
	"bufio"
	"net/textproto"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Input is what a policy sees as `input`, minus `input.changes`, which Evaluate computes
// from Previous and Proposed. The field names below are the stable contract documented
// in the README ("Policy input"); policies depend on them.
type Input struct {
	Commit   Commit
	Previous Snapshot // the last accepted revision, rendered; empty on the first deploy
	Proposed Snapshot // the revision being judged, rendered
	// Secrets are values interpolated into the manifests from variables (vars files,
	// config server). Every string equal to one of them is redacted wherever it appears.
	Secrets []string
}

// Commit describes the commit being judged.
type Commit struct {
	SHA       string
	Author    Person
	Committer Person
	Message   string
	// Trailers of the message, keys in canonical form ("Bosun-Allow-Delete"); when nil,
	// Evaluate parses them from Message.
	Trailers  map[string][]string
	Signature Signature
	// Payload is the commit object as git encodes it without its gpgsig header, and
	// ArmoredSignature that header (go-git: EncodeWithoutSignature, PGPSignature). A Gate
	// with trusted keys verifies them and sets Signature; policies never see them.
	Payload          []byte
	ArmoredSignature string
}

// Person is a commit's author or committer.
type Person struct {
	Name  string
	Email string
	Time  string // RFC 3339
}

// Signature is the outcome of checking the commit's signature (see policy/signing).
type Signature struct {
	Status string // unsigned, valid, invalid or untrusted
	Signer string // who signed, when known: a key's identity or fingerprint
	Type   string // openpgp or ssh; empty when unsigned
}

// Snapshot is one rendered revision of the repository, as plain maps decoded from YAML
// (map[string]any, []any, strings, numbers, booleans).
type Snapshot struct {
	Deployments    map[string]any // deployment name → interpolated manifest
	CloudConfig    map[string]any
	RuntimeConfigs map[string]any // runtime-config name → config
	Releases       map[string]any // releases/<name>.yml → its reference
	Stemcells      map[string]any // stemcells/<os>.yml → its reference
}

// ParseTrailers returns the trailers of a commit message: the `Key: value` lines of its
// last paragraph, as git interpret-trailers reads them. Keys are canonicalised because
// git compares them case-insensitively; a key given twice keeps every value in order.
func ParseTrailers(message string) map[string][]string {
	paras := strings.Split(strings.TrimSpace(strings.ReplaceAll(message, "\r\n", "\n")), "\n\n")
	if len(paras) < 2 {
		return map[string][]string{} // a subject line alone has no trailers
	}
	out := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(paras[len(paras)-1]))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return map[string][]string{} // not a trailer block
		}
		k = textproto.CanonicalMIMEHeaderKey(k)
		out[k] = append(out[k], strings.TrimSpace(v))
	}
	return out
}

// InputValue is in as policies see it, whole, as an OPA value: for a caller judging one
// input with several engines through EvaluateValue. Evaluate builds only the part its
// policies read.
func InputValue(in Input) ast.Value { return buildInput(in, needAll) }

// buildInput converts the parts of in that n needs straight to OPA values, redacting as
// it goes: manifests are neither copied nor round-tripped through JSON, and a part no
// rule reads is never built (nor diffed, for input.changes).
func buildInput(in Input, n *need) ast.Object {
	r := newRedactor(in.Secrets)
	kvs := make([][2]*ast.Term, 0, 4)
	if c := n.at("commit"); c != nil {
		kvs = append(kvs, [2]*ast.Term{ast.StringTerm("commit"), r.pruned(in.Commit.plain(), c, false)})
	}
	if c := n.at("changes"); c != nil {
		ch := diff(in.Previous, in.Proposed, partsFor(c))
		kvs = append(kvs, [2]*ast.Term{ast.StringTerm("changes"), ch.term(r, c)})
	}
	if c := n.at("previous"); c != nil {
		kvs = append(kvs, [2]*ast.Term{ast.StringTerm("previous"), in.Previous.term(r, c)})
	}
	if c := n.at("proposed"); c != nil {
		kvs = append(kvs, [2]*ast.Term{ast.StringTerm("proposed"), in.Proposed.term(r, c)})
	}
	return ast.NewObject(kvs...)
}

// plain is input.commit as plain values: small, so it is built whole and pruned on
// conversion. It is not redacted: it holds no rendered manifest.
func (c Commit) plain() map[string]any {
	trailers := c.Trailers
	if trailers == nil {
		trailers = ParseTrailers(c.Message)
	}
	tr := make(map[string]any, len(trailers))
	for k, vs := range trailers {
		l := make([]any, len(vs))
		for i, v := range vs {
			l[i] = v
		}
		tr[k] = l
	}
	status := c.Signature.Status
	if status == "" {
		status = "unsigned"
	}
	return map[string]any{
		"sha":       c.SHA,
		"author":    person(c.Author),
		"committer": person(c.Committer),
		"message":   c.Message,
		"trailers":  tr,
		"signature": map[string]any{"status": status, "signer": c.Signature.Signer, "type": c.Signature.Type},
	}
}

func person(p Person) map[string]any {
	return map[string]any{"name": p.Name, "email": p.Email, "time": p.Time}
}

// term is input.previous or input.proposed: the parts n needs, secrets redacted inside
// every manifest and config. Deployment and config names are keys, not secrets: a
// deployment named vault-secrets is not redacted away.
func (s Snapshot) term(r *redactor, n *need) *ast.Term {
	kvs := make([][2]*ast.Term, 0, 5)
	add := func(key string, t func(*need) *ast.Term) {
		if c := n.at(key); c != nil {
			kvs = append(kvs, [2]*ast.Term{r.str(key), t(c)})
		}
	}
	add("deployments", func(c *need) *ast.Term { return r.byName(s.Deployments, c) })
	add("cloud_config", func(c *need) *ast.Term {
		if s.CloudConfig == nil {
			return ast.ObjectTerm()
		}
		return r.pruned(s.CloudConfig, c, true)
	})
	add("runtime_configs", func(c *need) *ast.Term { return r.byName(s.RuntimeConfigs, c) })
	add("releases", func(c *need) *ast.Term { return r.byName(s.Releases, c) })
	add("stemcells", func(c *need) *ast.Term { return r.byName(s.Stemcells, c) })
	return ast.NewTerm(ast.NewObject(kvs...))
}
