package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

const payload = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@example.com> 1700000000 +0000\ncommitter A <a@example.com> 1700000000 +0000\n\nScale web\n"

func pgpKey(t testing.TB, name string) (*openpgp.Entity, string) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", strings.ToLower(name)+"@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return e, buf.String()
}

func pgpSign(t testing.TB, e *openpgp.Entity, msg string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&buf, e, strings.NewReader(msg), nil); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func sshKey(t testing.TB) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))) + " ci@example.com"
}

// sshSign makes a signature the way `ssh-keygen -Y sign -n <namespace>` does.
func sshSign(t testing.TB, s ssh.Signer, namespace, msg string) string {
	t.Helper()
	h := sha512.Sum512([]byte(msg))
	data := ssh.Marshal(signedData{Magic: [6]byte([]byte("SSHSIG")), Namespace: namespace, HashAlg: "sha512", Hash: h[:]})
	sig, err := s.Sign(rand.Reader, data)
	if err != nil {
		t.Fatal(err)
	}
	blob := ssh.Marshal(sshsig{Magic: [6]byte([]byte("SSHSIG")), Version: 1, PublicKey: s.PublicKey().Marshal(), Namespace: namespace, HashAlg: "sha512", Signature: ssh.Marshal(sig)})
	b64 := base64.StdEncoding.EncodeToString(blob)
	var out strings.Builder
	out.WriteString("-----BEGIN SSH SIGNATURE-----\n")
	for len(b64) > 70 {
		out.WriteString(b64[:70] + "\n")
		b64 = b64[70:]
	}
	out.WriteString(b64 + "\n-----END SSH SIGNATURE-----\n")
	return out.String()
}

func TestVerify(t *testing.T) {
	alice, aliceKey := pgpKey(t, "Alice")
	mallory, _ := pgpKey(t, "Mallory")
	ci, ciKey := sshKey(t)
	other, _ := sshKey(t)
	v, err := NewVerifier([]string{aliceKey}, []string{"# deploy bots\n\n" + ciKey})
	if err != nil {
		t.Fatal(err)
	}
	aliceID := "Alice <alice@example.com> " + fmt.Sprintf("%X", alice.PrimaryKey.Fingerprint)
	ciID := "ci@example.com " + ssh.FingerprintSHA256(ci.PublicKey())

	tests := []struct {
		name    string
		payload string
		sig     string
		want    Result
	}{
		{"unsigned", payload, "", Result{Status: Unsigned}},
		{"openpgp valid", payload, pgpSign(t, alice, payload), Result{Status: Valid, Signer: aliceID, Type: "openpgp"}},
		{"openpgp tampered", payload + "x", pgpSign(t, alice, payload), Result{Status: Invalid, Type: "openpgp"}},
		{"openpgp foreign", payload, pgpSign(t, mallory, payload), Result{Status: Untrusted, Signer: fmt.Sprintf("%X", mallory.PrimaryKey.Fingerprint), Type: "openpgp"}},
		{"openpgp garbage", payload, "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n", Result{Status: Invalid, Type: "openpgp"}},
		{"ssh valid", payload, sshSign(t, ci, "git", payload), Result{Status: Valid, Signer: ciID, Type: "ssh"}},
		{"ssh tampered", payload + "x", sshSign(t, ci, "git", payload), Result{Status: Invalid, Signer: ssh.FingerprintSHA256(ci.PublicKey()), Type: "ssh"}},
		{"ssh foreign", payload, sshSign(t, other, "git", payload), Result{Status: Untrusted, Signer: ssh.FingerprintSHA256(other.PublicKey()), Type: "ssh"}},
		{"ssh other namespace", payload, sshSign(t, ci, "file", payload), Result{Status: Invalid, Type: "ssh"}},
		{"ssh garbage", payload, "-----BEGIN SSH SIGNATURE-----\n!!!\n-----END SSH SIGNATURE-----", Result{Status: Invalid, Type: "ssh"}},
		{"x509", payload, "-----BEGIN SIGNED MESSAGE-----\nAA==\n-----END SIGNED MESSAGE-----", Result{Status: Untrusted, Type: "x509"}},
		{"unknown format", payload, "hello", Result{Status: Invalid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, v.Verify([]byte(tt.payload), tt.sig)); diff != "" {
				t.Errorf("Verify (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewVerifierRejectsBadKeys(t *testing.T) {
	if _, err := NewVerifier([]string{"not a key"}, nil); err == nil || !strings.Contains(err.Error(), "OpenPGP key 1") {
		t.Errorf("bad OpenPGP key: %v", err)
	}
	if _, err := NewVerifier(nil, []string{"ssh-ed25519 !!!"}); err == nil || !strings.Contains(err.Error(), "SSH key 1") {
		t.Errorf("bad SSH key: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	ci, ciKey := sshKey(f)
	alice, aliceKey := pgpKey(f, "Alice")
	v, err := NewVerifier([]string{aliceKey}, []string{ciKey})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(payload, sshSign(f, ci, "git", payload))
	f.Add(payload, pgpSign(f, alice, payload))
	f.Add("", "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----")
	f.Fuzz(func(t *testing.T, p, sig string) {
		if r := v.Verify([]byte(p), sig); r.Status == Valid && p != payload {
			t.Fatalf("forged signature accepted: %+v", r)
		}
	})
}

func FuzzSplitCommit(f *testing.F) {
	f.Add("tree x\ngpgsig -----BEGIN SSH SIGNATURE-----\n abc\n -----END SSH SIGNATURE-----\n\nmsg\n")
	f.Add("tree x\n\nmsg only")
	f.Add("gpgsig \n\n")
	f.Fuzz(func(t *testing.T, raw string) {
		payload, _ := SplitCommit([]byte(raw))
		if header, _, _ := strings.Cut(string(payload), "\n\n"); strings.Contains("\n"+header, "\ngpgsig ") {
			t.Fatalf("payload keeps the signature header: %q", payload)
		}
	})
}
