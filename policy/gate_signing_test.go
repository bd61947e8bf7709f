package policy

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/bosun-gitops/bosun/policy/signing"
)

func TestGateRequiresSignedCommits(t *testing.T) {
	key, err := openpgp.NewEntity("Release Bot", "", "bot@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	w, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err := key.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	v, err := signing.NewVerifier([]string{pub.String()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor Bot <bot@example.com> 1700000000 +0000\ncommitter Bot <bot@example.com> 1700000000 +0000\n\nScale up\n")
	var sig bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&sig, key, bytes.NewReader(payload), nil); err != nil {
		t.Fatal(err)
	}

	// The policy sees the verified status too.
	g := NewGate(mustLoad(t, map[string]string{"policies/s.rego": "package policies.s\nwarn contains input.commit.signature.status if true\n"}), "policies")
	g.VerifySignatures(v, true)
	ctx := context.Background()

	signed, err := g.Judge(ctx, Input{Commit: Commit{SHA: "abc", Payload: payload, ArmoredSignature: sig.String()}}, nil)
	if err != nil || !signed.Allowed() || signed.Warnings[0].Msg != "valid" {
		t.Errorf("signed commit: %+v, %v", signed.Decision, err)
	}
	for name, c := range map[string]Commit{
		"unsigned": {SHA: "abc", Payload: payload},
		"tampered": {SHA: "abc", Payload: append(payload, 'x'), ArmoredSignature: sig.String()},
	} {
		d, _ := g.Judge(ctx, Input{Commit: c}, nil)
		if d.Allowed() || d.Denies[0].Rule != "bosun.signature" || !strings.Contains(d.Denies[0].Msg, "commit abc") {
			t.Errorf("%s commit: %+v", name, d.Decision)
		}
	}
}
