package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"golang.org/x/crypto/ssh"
)

func armoredPublicKey(t *testing.T) string {
	t.Helper()
	key, err := openpgp.NewEntity("Release Bot", "", "bot@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	w, err := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := key.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return pub.String()
}

func sshPublicKey(t *testing.T, comment string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))) + " " + comment
}

func TestSplitTrustedKeys(t *testing.T) {
	pgp := armoredPublicKey(t)
	tests := []struct {
		name     string
		file     string
		pgp, ssh int
		err      string
	}{
		{name: "mixed", file: "# release keys\n" + pgp + "\n" + sshPublicKey(t, "ci@example") + "\n\n" + sshPublicKey(t, "ops@example") + "\n" + pgp, pgp: 2, ssh: 2},
		{name: "ssh only", file: sshPublicKey(t, "ci"), ssh: 1},
		{name: "empty", file: "# nothing yet\n\n", err: "keys.txt holds no key"},
		{name: "garbage line", file: sshPublicKey(t, "ci") + "\nssh-ed25519 notbase64!!\n", err: "keys.txt:2: not an SSH public key"},
		{name: "unterminated block", file: "\n" + strings.Replace(pgp, pgpEnd, "", 1), err: "keys.txt:2: the OpenPGP key block has no"},
		{name: "broken block", file: pgpBegin + "\n\nAAAA\n" + pgpEnd + "\n", err: "keys.txt:1: read trusted OpenPGP key"},
		{name: "private key", file: "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END OPENSSH PRIVATE KEY-----\n", err: `keys.txt:1: a "BEGIN OPENSSH PRIVATE KEY" block is not a public key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, s, err := splitTrustedKeys("keys.txt", []byte(tt.file))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), "c2VjcmV0") {
					t.Fatalf("err = %v; want %q", err, tt.err)
				}
				return
			}
			if err != nil || len(p) != tt.pgp || len(s) != tt.ssh {
				t.Fatalf("got %d OpenPGP, %d SSH keys, %v; want %d, %d", len(p), len(s), err, tt.pgp, tt.ssh)
			}
		})
	}
}

func TestDirectorTrustUsage(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad.keys", "# ok\nnot a key at all\n")
	good := write("good.keys", sshPublicKey(t, "ci"))
	tests := []struct {
		args     []string
		inStderr string
	}{
		{args: []string{"--repo", repo, "--require-signed-commits"}, inStderr: "--require-signed-commits needs --trusted-keys"},
		{args: []string{"--trusted-keys", good}, inStderr: "need --repo"},
		{args: []string{"--policy-repo", repo}, inStderr: "need --repo"},
		{args: []string{"--repo", repo, "--trusted-keys", filepath.Join(dir, "missing.keys")}, inStderr: "--trusted-keys: open"},
		{args: []string{"--repo", repo, "--trusted-keys", bad, "--require-signed-commits"}, inStderr: bad + ":2: not an SSH public key"},
		{args: []string{"--repo", repo, "--policy-repo", "/nonexistent/policies"}, inStderr: "--policy-repo /nonexistent/policies: no such file or directory"},
		{args: []string{"--repo", repo, "--policy-repo", repo, "--policy-branch", " "}, inStderr: "--policy-branch is empty"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			// --dev with a database never started: every case fails before the director starts.
			o, e, code := runCLI(t, append([]string{"director", "--dev", "--data-dir", t.TempDir()}, tt.args...)...)
			if code != 2 || !strings.Contains(e, tt.inStderr) {
				t.Errorf("code %d (want 2)\nstdout: %s\nstderr: %s", code, o, e)
			}
		})
	}
}
