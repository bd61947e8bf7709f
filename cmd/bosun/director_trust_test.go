package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"golang.org/x/crypto/ssh"

	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/reconciler"
	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/bosun-gitops/bosun/state/postgres/pgtest"
	"github.com/bosun-gitops/bosun/state/postgres/worker"
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
		{args: []string{"--repo", repo, "--policy-repo", repo + "/"}, inStderr: "name the branch being judged"},
		{args: []string{"--repo", repo, "--branch", "prod", "--policy-repo", repo, "--policy-branch", "prod"}, inStderr: "name the branch being judged"},
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

// TestDirectorTrustWiring sets the reconciler up as the director does and checks that the
// flags reach its gate: an unsigned commit is rejected when signatures are required, and
// a --policy-repo's policies judge instead of the repository's own.
func TestDirectorTrustWiring(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if _, e, code := runCLI(t, "init", repo); code != 0 {
		t.Fatalf("bosun init: %s", e)
	}
	policies := filepath.Join(dir, "policies")
	if err := os.MkdirAll(filepath.Join(policies, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policies, "policies", "lockdown.rego"), []byte("package policies.lockdown\n\ndeny contains \"the fleet is frozen\" if true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "freeze"}} {
		cmd := exec.Command("git", append([]string{"-C", policies, "-c", "user.name=Ops", "-c", "user.email=ops@example.com"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	keys := filepath.Join(dir, "trusted.keys")
	if err := os.WriteFile(keys, []byte(sshPublicKey(t, "ci")+"\n"+armoredPublicKey(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	// No converger or cloud: nothing here is converged (no test in this package runs in
	// parallel, so swapping the package's hooks is safe).
	conv, drift := newConverger, newDriftCloud
	newConverger = func(*director, blobstore.Store) (reconciler.Converger, error) { return noConverger{}, nil }
	newDriftCloud = func(*director) (reconciler.Cloud, error) { return nil, nil }
	t.Cleanup(func() { newConverger, newDriftCloud = conv, drift })
	tests := []struct {
		name  string
		trust trustFlags
		want  string
	}{
		{name: "signatures required", trust: trustFlags{trustedKeys: keys, requireSigned: true}, want: "is not signed"},
		{name: "trusted policy repository", trust: trustFlags{policyRepo: policies, policyBranch: "main"}, want: "the fleet is frozen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, err := postgres.Open(ctx, pgtest.NewDatabase(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(store.Close)
			d := &director{log: slog.New(slog.DiscardHandler), dataDir: t.TempDir(), repo: repo, dev: true, store: store,
				mux: http.NewServeMux(), handlers: map[string]worker.Handler{}, status: map[string]string{},
				rec: reconcilerFlags{branch: "main", statusBranch: "bosun/status", poll: time.Minute, drift: time.Minute, trustFlags: tt.trust}}
			if err := setupReconciler(d); err != nil {
				t.Fatal(err)
			}
			j, err := d.reconciler.ReconcileNow(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if j.Verdict != state.RevisionRejected || len(j.Tasks) != 0 || !strings.Contains(strings.Join(j.Problems, " "), tt.want) {
				t.Fatalf("verdict %s, problems %q, %d tasks; want rejected with %q", j.Verdict, j.Problems, len(j.Tasks), tt.want)
			}
		})
	}
}

// noConverger converges nothing: these tests stop at the judgement.
type noConverger struct{}

func (noConverger) Run(context.Context, converge.Task, func(state.TaskEvent) error) (converge.Result, error) {
	return converge.Result{}, errors.New("no converger in this test")
}

func (noConverger) Act(context.Context, string, []string, state.ActionParams, func(state.TaskEvent) error) (converge.Result, error) {
	return converge.Result{}, errors.New("no converger in this test")
}
