package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestVerifyCommitSignedByGit signs a commit with git and ssh-keygen themselves, so the
// sshsig parsing is checked against OpenSSH rather than against this package's own idea.
func TestVerifyCommitSignedByGit(t *testing.T) {
	for _, tool := range []string{"git", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	git("init", "-q")
	git("config", "user.name", "CI")
	git("config", "user.email", "ci@example.com")
	git("config", "gpg.format", "ssh")
	git("config", "user.signingkey", keyFile)
	git("commit", "-q", "--allow-empty", "-m", "unsigned")
	git("commit", "-q", "--allow-empty", "-S", "-m", "signed\n\nBosun-Allow-Delete: web")

	v, err := NewVerifier(nil, []string{string(ssh.MarshalAuthorizedKey(sshPub))})
	if err != nil {
		t.Fatal(err)
	}
	signed := Result{Status: Valid, Signer: ssh.FingerprintSHA256(sshPub), Type: "ssh"}
	for rev, want := range map[string]Result{"HEAD": signed, "HEAD~1": {Status: Unsigned}} {
		payload, sig := SplitCommit([]byte(git("cat-file", "commit", rev)))
		if got := v.Verify(payload, sig); got != want {
			t.Errorf("%s: Verify = %+v, want %+v", rev, got, want)
		}
		if strings.Contains(string(payload), "gpgsig") {
			t.Errorf("%s: payload still holds the signature", rev)
		}
	}
}
