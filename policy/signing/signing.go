// Package signing owns commit signature verification: OpenPGP and SSH (sshsig)
// signatures of git commits, checked against the keys set in the director's own config.
package signing

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"golang.org/x/crypto/ssh"
)

// Status is the outcome of checking one commit's signature.
type Status string

const (
	Unsigned  Status = "unsigned"  // no signature at all
	Valid     Status = "valid"     // signed by a trusted key, and the signature verifies
	Invalid   Status = "invalid"   // the signature does not verify, is expired or malformed
	Untrusted Status = "untrusted" // a good or uncheckable signature by a key not trusted
)

// Result is what Verify found.
type Result struct {
	Status Status
	Signer string // the trusted key's identity, or the foreign key's id or fingerprint
	Type   string // openpgp or ssh; empty when unsigned
}

// Verifier checks signatures against a fixed set of trusted keys. Safe for concurrent use.
type Verifier struct {
	pgp openpgp.EntityList
	ssh map[string]string // marshalled public key → how to name its holder
}

// NewVerifier trusts the given armored OpenPGP public keys (each may hold several) and SSH
// public keys in authorized_keys form ("ssh-ed25519 AAAA… comment"; options allowed,
// blank lines and # comments skipped).
func NewVerifier(openpgpKeys, sshKeys []string) (*Verifier, error) {
	v := &Verifier{ssh: map[string]string{}}
	for i, k := range openpgpKeys {
		el, err := openpgp.ReadArmoredKeyRing(strings.NewReader(k))
		if err != nil {
			return nil, fmt.Errorf("read trusted OpenPGP key %d: %w", i+1, err)
		}
		v.pgp = append(v.pgp, el...)
	}
	for i, block := range sshKeys {
		rest := []byte(block)
		for len(bytes.TrimSpace(rest)) > 0 {
			pk, comment, _, next, err := ssh.ParseAuthorizedKey(rest)
			if err != nil {
				return nil, fmt.Errorf("read trusted SSH key %d: %w", i+1, err)
			}
			name := ssh.FingerprintSHA256(pk)
			if comment != "" {
				name = comment + " " + name
			}
			v.ssh[string(pk.Marshal())] = name
			rest = next
		}
	}
	return v, nil
}

// Verify checks signature (git's gpgsig header, armored) over payload (the commit object
// as git encodes it, without the gpgsig header). It never fails: anything it cannot
// verify is Invalid or Untrusted, which the reconciler rejects like a policy denial.
func (v *Verifier) Verify(payload []byte, signature string) Result {
	sig := strings.TrimSpace(signature)
	switch {
	case sig == "":
		return Result{Status: Unsigned}
	case strings.HasPrefix(sig, "-----BEGIN PGP SIGNATURE-----"):
		return v.verifyOpenPGP(payload, sig)
	case strings.HasPrefix(sig, "-----BEGIN SSH SIGNATURE-----"):
		return v.verifySSH(payload, sig)
	case strings.HasPrefix(sig, "-----BEGIN SIGNED MESSAGE-----"):
		return Result{Status: Untrusted, Type: "x509"} // gpgsm; no X.509 trust is configured
	}
	return Result{Status: Invalid}
}

func (v *Verifier) verifyOpenPGP(payload []byte, sig string) Result {
	r := Result{Status: Invalid, Type: "openpgp"}
	signer, err := openpgp.CheckArmoredDetachedSignature(v.pgp, bytes.NewReader(payload), strings.NewReader(sig), nil)
	switch {
	case err == nil:
		r.Status = Valid
		r.Signer = fmt.Sprintf("%X", signer.PrimaryKey.Fingerprint)
		if id := signer.PrimaryIdentity(); id != nil {
			r.Signer = id.Name + " " + r.Signer
		}
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		r.Status = Untrusted
		r.Signer = pgpIssuer(sig)
	case signer != nil:
		r.Signer = fmt.Sprintf("%X", signer.PrimaryKey.Fingerprint) // expired or revoked
	}
	return r
}

// pgpIssuer names the key that made a signature we hold no key for.
func pgpIssuer(sig string) string {
	b, err := armor.Decode(strings.NewReader(sig))
	if err != nil {
		return ""
	}
	p, err := packet.Read(b.Body)
	if err != nil {
		return ""
	}
	s, ok := p.(*packet.Signature)
	switch {
	case !ok:
		return ""
	case len(s.IssuerFingerprint) > 0:
		return fmt.Sprintf("%X", s.IssuerFingerprint)
	case s.IssuerKeyId != nil:
		return fmt.Sprintf("%016X", *s.IssuerKeyId)
	}
	return ""
}

// sshsig is the blob inside an armored SSH signature (PROTOCOL.sshsig in OpenSSH).
type sshsig struct {
	Magic     [6]byte
	Version   uint32
	PublicKey []byte
	Namespace string
	Reserved  []byte
	HashAlg   string
	Signature []byte
}

// signedData is what an sshsig signature actually signs.
type signedData struct {
	Magic     [6]byte
	Namespace string
	Reserved  []byte
	HashAlg   string
	Hash      []byte
}

func (v *Verifier) verifySSH(payload []byte, armored string) Result {
	r := Result{Status: Invalid, Type: "ssh"}
	body := strings.TrimSuffix(strings.TrimPrefix(armored, "-----BEGIN SSH SIGNATURE-----"), "-----END SSH SIGNATURE-----")
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(body), ""))
	if err != nil {
		return r
	}
	var s sshsig
	if err := ssh.Unmarshal(raw, &s); err != nil || string(s.Magic[:]) != "SSHSIG" || s.Version != 1 || s.Namespace != "git" {
		return r // a signature for another namespace must not pass as a commit signature
	}
	pk, err := ssh.ParsePublicKey(s.PublicKey)
	if err != nil {
		return r
	}
	r.Signer = ssh.FingerprintSHA256(pk)
	var sig ssh.Signature
	if err := ssh.Unmarshal(s.Signature, &sig); err != nil {
		return r
	}
	var h hash.Hash
	switch s.HashAlg {
	case "sha512":
		h = sha512.New()
	case "sha256":
		h = sha256.New()
	default:
		return r
	}
	h.Write(payload)
	msg := ssh.Marshal(signedData{Magic: s.Magic, Namespace: s.Namespace, Reserved: s.Reserved, HashAlg: s.HashAlg, Hash: h.Sum(nil)})
	if err := pk.Verify(msg, &sig); err != nil {
		return r
	}
	name, ok := v.ssh[string(pk.Marshal())]
	if !ok {
		r.Status = Untrusted
		return r
	}
	r.Status, r.Signer = Valid, name
	return r
}

// SplitCommit separates a raw git commit object (as `git cat-file commit` prints it) into
// the payload its signature covers and the armored signature of its gpgsig header; the
// signature is empty for an unsigned commit. go-git users get the same from
// object.Commit's PGPSignature and EncodeWithoutSignature.
func SplitCommit(raw []byte) (payload []byte, signature string) {
	header, body, found := bytes.Cut(raw, []byte("\n\n"))
	var out, sig bytes.Buffer
	inSig := false
	for _, line := range bytes.SplitAfter(header, []byte("\n")) {
		switch {
		case inSig && bytes.HasPrefix(line, []byte(" ")):
			sig.Write(line[1:])
			continue
		case bytes.HasPrefix(line, []byte("gpgsig ")):
			inSig = true
			sig.Write(line[len("gpgsig "):])
			continue
		}
		inSig = false
		out.Write(line)
	}
	if found {
		// The signature often ends the header, leaving a newline Cut did not take.
		out.Truncate(len(bytes.TrimSuffix(out.Bytes(), []byte("\n"))))
		out.WriteString("\n\n")
		out.Write(body)
	}
	return out.Bytes(), sig.String()
}
