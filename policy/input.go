package policy

import (
	"bufio"
	"net/textproto"
	"strings"
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

// value builds input as an OPA value in one pass, redacting as it goes, so a large
// fleet's manifests are neither copied nor round-tripped through JSON.
func (in Input) value(changes Changes) map[string]any {
	trailers := in.Commit.Trailers
	if trailers == nil {
		trailers = ParseTrailers(in.Commit.Message)
	}
	tr := make(map[string]any, len(trailers))
	for k, vs := range trailers {
		l := make([]any, len(vs))
		for i, v := range vs {
			l[i] = v
		}
		tr[k] = l
	}
	status := in.Commit.Signature.Status
	if status == "" {
		status = "unsigned"
	}
	c := in.Commit
	return map[string]any{
		"commit": map[string]any{
			"sha":       c.SHA,
			"author":    person(c.Author),
			"committer": person(c.Committer),
			"message":   c.Message,
			"trailers":  tr,
			"signature": map[string]any{"status": status, "signer": c.Signature.Signer, "type": c.Signature.Type},
		},
		"previous": in.Previous.plain(),
		"proposed": in.Proposed.plain(),
		"changes":  changes.plain(),
	}
}

func person(p Person) map[string]any {
	return map[string]any{"name": p.Name, "email": p.Email, "time": p.Time}
}

func (s Snapshot) plain() map[string]any {
	orEmpty := func(m map[string]any) map[string]any {
		if m == nil {
			return map[string]any{}
		}
		return m
	}
	return map[string]any{
		"deployments":     orEmpty(s.Deployments),
		"cloud_config":    orEmpty(s.CloudConfig),
		"runtime_configs": orEmpty(s.RuntimeConfigs),
		"releases":        orEmpty(s.Releases),
		"stemcells":       orEmpty(s.Stemcells),
	}
}
