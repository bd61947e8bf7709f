package reconciler

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"golang.org/x/crypto/ssh"

	"github.com/bosun-gitops/bosun/policy"
	"github.com/bosun-gitops/bosun/policy/signing"
	"github.com/bosun-gitops/bosun/reconciler/source"
	"github.com/bosun-gitops/bosun/state"
)

// trustedHarness is a harness whose policies come from a separate trusted repository.
func trustedHarness(t *testing.T) (*harness, *workRepo) {
	t.Helper()
	trusted := newWorkRepo(t)
	policies := map[string]string{}
	for p, c := range templateFiles(t) {
		if strings.HasPrefix(p, PoliciesDir+"/") {
			policies[p] = c
		}
	}
	trusted.commit("the trusted policies", policies)
	h := newHarness(t)
	h.tweak = func(cfg *Config) {
		ps, err := source.Open(source.Config{Remote: source.Remote{URL: trusted.dir}, Branch: "main", CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ps.Close() })
		cfg.PolicySource = ps
	}
	h.r = h.newReconciler()
	return h, trusted
}

const denyAll = "package policies.lockdown\n\ndeny contains \"the fleet is frozen\" if true\n"

func TestTrustedPolicySourceJudgesEveryCommit(t *testing.T) {
	h, trusted := trustedHarness(t)
	files := templateFiles(t)
	// The repository's own policy denying everything never loads: the trusted ones judge.
	files["policies/lockdown.rego"] = denyAll
	h.repo.commit("first", files)
	if got := taskTypes(h.reconcile(state.RevisionAccepted).Tasks); !slices.Equal(got, []string{"deploy demo", "deploy other"}) {
		t.Fatalf("tasks = %v", got)
	}
	h.repo.commit("touch", map[string]string{"README.md": "again\n"})
	h.reconcile(state.RevisionAccepted)

	// Deleting the repository's own deletion policy with the deployment does not help.
	denied := h.repo.commit("drop other and every policy", map[string]string{"deployments/other/": "", "policies/": ""})
	j := h.reconcile(state.RevisionRejected)
	if len(j.Problems) != 1 || !strings.Contains(j.Problems[0], "Bosun-Allow-Delete: other") || len(j.Tasks) != 0 {
		t.Fatalf("problems = %q, tasks %v", j.Problems, taskTypes(j.Tasks))
	}
	trustedHead := trusted.commit("keep", nil) // the policy revision recorded is the trusted head
	h.repo.commit("drop other, meant\n\nBosun-Allow-Delete: other", map[string]string{"README.md": "third\n"})
	if got := taskTypes(h.reconcile(state.RevisionAccepted).Tasks); !slices.Equal(got, []string{"delete_deployment other"}) {
		t.Fatalf("tasks = %v", got)
	}
	if v, err := h.store.Verdict(h.ctx, denied); err != nil || len(v.Denies) != 1 {
		t.Errorf("stored verdict of %s = %+v, %v", denied[:7], v, err)
	}

	// A change of the trusted policies takes effect on the next judgement, both ways.
	trusted.commit("freeze", map[string]string{"policies/lockdown.rego": denyAll})
	h.repo.commit("scale", map[string]string{"README.md": "fourth\n"})
	if j := h.reconcile(state.RevisionRejected); len(j.Problems) != 1 || !strings.Contains(j.Problems[0], "the fleet is frozen") {
		t.Fatalf("problems = %q", j.Problems)
	}
	h.statusHead("Bosun-Result: rejected", "the fleet is frozen")
	thawed := trusted.commit("thaw", map[string]string{"policies/lockdown.rego": ""})
	accepted := h.repo.commit("scale again", map[string]string{"README.md": "fifth\n"})
	h.reconcile(state.RevisionAccepted)
	if v, err := h.store.Verdict(h.ctx, accepted); err != nil || v.PolicyRevision != thawed {
		t.Errorf("policy revision = %q, %v; want the trusted head %s (was %s)", v.PolicyRevision, err, thawed, trustedHead)
	}

	// Fail closed: policies that do not compile, then a source that cannot be read.
	trusted.commit("broken", map[string]string{"policies/broken.rego": "package policies.broken\n\ndeny contains msg if {\n"})
	h.repo.commit("sixth", map[string]string{"README.md": "sixth\n"})
	if j := h.reconcile(state.RevisionRejected); len(j.Tasks) != 0 || !strings.Contains(strings.Join(j.Problems, " "), "do not load") {
		t.Fatalf("problems = %q", j.Problems)
	}
	trusted.commit("fixed", map[string]string{"policies/broken.rego": ""})
	h.repo.commit("seventh", map[string]string{"README.md": "seventh\n"})
	h.reconcile(state.RevisionAccepted)
	// A source that cannot be read: the commit is neither accepted nor rejected; it
	// waits, and is judged once the source is back.
	away := trusted.dir + ".away"
	if err := os.Rename(trusted.dir, away); err != nil {
		t.Fatal(err)
	}
	eighth := h.repo.commit("eighth", map[string]string{"README.md": "eighth\n"})
	for range 2 {
		if j, err := h.r.ReconcileNow(h.ctx); err == nil || !strings.Contains(err.Error(), "cannot be read") || len(j.Tasks) != 0 {
			t.Fatalf("with the trusted source unreadable: %+v, %v", j, err)
		}
		if _, err := h.store.Revision(h.ctx, eighth); err == nil {
			t.Fatal("a verdict was recorded while the trusted policies could not be read")
		}
	}
	if err := os.Rename(away, trusted.dir); err != nil {
		t.Fatal(err)
	}
	h.reconcile(state.RevisionAccepted)
}

// A restarted reconciler with a trusted source never loads the last accepted revision's
// own policies.
func TestTrustedPolicySourceAfterRestart(t *testing.T) {
	h, trusted := trustedHarness(t)
	files := templateFiles(t)
	files["policies/lockdown.rego"] = denyAll
	h.repo.commit("first", files)
	h.reconcile(state.RevisionAccepted)
	h.r = h.newReconciler()
	h.repo.commit("second", map[string]string{"README.md": "second\n"})
	h.reconcile(state.RevisionAccepted)
	trusted.commit("freeze", map[string]string{"policies/lockdown.rego": denyAll})
	h.repo.commit("third", map[string]string{"README.md": "third\n"})
	h.reconcile(state.RevisionRejected)
}

func TestRequiredSignaturesRejectUnsignedCommits(t *testing.T) {
	key, err := openpgp.NewEntity("Release Bot", "", "bot@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := openpgp.NewEntity("Mallory", "", "mallory@example.com", nil)
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
	v, err := signing.NewVerifier([]string{pub.String()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	h.tweak = func(cfg *Config) {
		g := policy.NewGate(nil, PoliciesDir)
		g.VerifySignatures(v, true)
		cfg.Gate = g
	}
	h.r = h.newReconciler()
	files := templateFiles(t)

	for name, signer := range map[string]*openpgp.Entity{"unsigned": nil, "foreign-signed": foreign} {
		h.repo.signKey = signer
		sha := h.repo.commit(name, maps.Clone(files))
		j := h.reconcile(state.RevisionRejected)
		if len(j.Problems) != 1 || !strings.Contains(j.Problems[0], "commit "+sha) || len(j.Tasks) != 0 {
			t.Fatalf("%s: problems = %q, tasks %v", name, j.Problems, taskTypes(j.Tasks))
		}
		h.statusHead("Bosun-Result: rejected")
		if ts, err := h.store.Tasks(h.ctx, state.TaskFilter{}); err != nil || len(ts) != 0 {
			t.Fatalf("%s: tasks enqueued: %v, %v", name, ts, err)
		}
		files["README.md"] = name + "\n"
	}

	h.repo.signKey = key
	h.repo.commit("signed", files)
	if got := taskTypes(h.reconcile(state.RevisionAccepted).Tasks); !slices.Equal(got, []string{"deploy demo", "deploy other"}) {
		t.Fatalf("tasks = %v", got)
	}
}

// SSH signatures are made by git and ssh-keygen themselves, as a developer's would be.
func TestRequiredSignaturesAcceptSSHSignedCommits(t *testing.T) {
	for _, tool := range []string{"git", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	newKey := func(name string) (file, authorized string) {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			t.Fatal(err)
		}
		file = filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		pk, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return file, string(ssh.MarshalAuthorizedKey(pk))
	}
	trustedFile, trustedPub := newKey("ci")
	foreignFile, _ := newKey("mallory")
	v, err := signing.NewVerifier(nil, []string{trustedPub})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	h.tweak = func(cfg *Config) {
		g := policy.NewGate(nil, PoliciesDir)
		g.VerifySignatures(v, true)
		cfg.Gate = g
	}
	h.r = h.newReconciler()
	gitCommit := func(keyFile, msg string) string {
		t.Helper()
		run := func(args ...string) string {
			cmd := exec.Command("git", append([]string{"-C", h.repo.dir, "-c", "user.name=CI", "-c", "user.email=ci@example.com",
				"-c", "gpg.format=ssh", "-c", "user.signingkey=" + keyFile}, args...)...)
			cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("git %v: %v\n%s", args, err, out)
			}
			return strings.TrimSpace(string(out))
		}
		run("add", "-A")
		run("commit", "-q", "-S", "-m", msg)
		return run("rev-parse", "HEAD")
	}
	for p, c := range templateFiles(t) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(h.repo.dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(h.repo.dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	foreign := gitCommit(foreignFile, "signed by a stranger")
	if j := h.reconcile(state.RevisionRejected); len(j.Problems) != 1 || !strings.Contains(j.Problems[0], "commit "+foreign+" is signed by ssh key") {
		t.Fatalf("problems = %q", j.Problems)
	}
	if err := os.WriteFile(filepath.Join(h.repo.dir, "README.md"), []byte("signed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCommit(trustedFile, "signed by CI")
	if got := taskTypes(h.reconcile(state.RevisionAccepted).Tasks); !slices.Equal(got, []string{"deploy demo", "deploy other"}) {
		t.Fatalf("tasks = %v", got)
	}
}

// With the watcher (as the director runs), a head seen while the trusted policy source
// could not be read is judged once the source is back, without another commit.
func TestWaitingRevisionJudgedWhenPolicySourceReturns(t *testing.T) {
	h, trusted := trustedHarness(t)
	h.repo.commit("first", templateFiles(t))
	h.reconcile(state.RevisionAccepted)
	away := trusted.dir + ".away"
	if err := os.Rename(trusted.dir, away); err != nil {
		t.Fatal(err)
	}
	second := h.repo.commit("second", map[string]string{"README.md": "second\n"})
	h.r.cfg.PollInterval = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- h.r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	time.Sleep(time.Second)
	if _, err := h.store.Revision(h.ctx, second); err == nil {
		t.Fatal("judged while the trusted policies could not be read")
	}
	if err := os.Rename(away, trusted.dir); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if rev, err := h.store.Revision(h.ctx, second); err == nil {
			if rev.Verdict != state.RevisionAccepted {
				t.Errorf("verdict = %q", rev.Verdict)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the waiting head was not judged once the trusted policy source was back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
