package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bosun-gitops/bosun/policy/signing"
	"github.com/bosun-gitops/bosun/reconciler/source"
)

// trustFlags are the director's own word on what the reconciler trusts: keys that must
// sign commits and a separate repository whose policies judge. They live only in the
// director's config, never in the judged repository, so no commit can loosen them.
type trustFlags struct {
	trustedKeys   string
	requireSigned bool
	policyRepo    string
	policyBranch  string
	verifier      *signing.Verifier // loaded from trustedKeys by check
}

func (f *trustFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.trustedKeys, "trusted-keys", "", "file of trusted commit-signing keys: armored OpenPGP public key blocks and/or SSH public keys in authorized_keys form, one per line; policies see input.commit.signature")
	fs.BoolVar(&f.requireSigned, "require-signed-commits", false, "reject every commit not validly signed by a key in --trusted-keys")
	fs.StringVar(&f.policyRepo, "policy-repo", "", "a separate trusted repository (URL or directory) whose policies/ judge every commit instead of --repo's own")
	fs.StringVar(&f.policyBranch, "policy-branch", "main", "the branch of --policy-repo whose head's policies judge")
}

// check validates the trust flags before anything starts; repo and branch are --repo and
// --branch.
func (f *trustFlags) check(repo, branch string) error {
	set := f.trustedKeys != "" || f.requireSigned || f.policyRepo != ""
	if set && repo == "" {
		return usageError("--trusted-keys, --require-signed-commits and --policy-repo need --repo (they concern the reconciler)")
	}
	if f.requireSigned && f.trustedKeys == "" {
		return usageError("--require-signed-commits needs --trusted-keys (the keys commits must be signed with)")
	}
	if f.policyRepo != "" {
		if err := checkRepo(f.policyRepo); err != nil {
			return usageError("%s", strings.Replace(err.Error(), "--repo", "--policy-repo", 1))
		}
		if strings.TrimSpace(f.policyBranch) == "" {
			return usageError("--policy-branch is empty")
		}
		if sameRepo(f.policyRepo, repo) && f.policyBranch == branch {
			// The head of the judged branch is the judged commit: it would judge itself.
			return usageError("--policy-repo and --policy-branch name the branch being judged (--repo, --branch); a commit must not bring the policies that judge it")
		}
	}
	if f.trustedKeys != "" && f.verifier == nil {
		v, err := loadTrustedKeys(f.trustedKeys)
		if err != nil {
			return usageError("--trusted-keys: %v", err)
		}
		f.verifier = v
	}
	return nil
}

// sameRepo tells whether two --repo values name the same repository: equal URLs, or
// paths to the same directory.
func sameRepo(a, b string) bool {
	if a == b {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

const (
	pgpBegin = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
	pgpEnd   = "-----END PGP PUBLIC KEY BLOCK-----"
)

// loadTrustedKeys reads a file of armored OpenPGP public key blocks and SSH public keys
// (authorized_keys lines; blank lines and # comments skipped). Errors name the file and
// line, and never quote the file: a private key pasted by mistake stays out of logs.
func loadTrustedKeys(name string) (*signing.Verifier, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	pgp, sshKeys, err := splitTrustedKeys(name, b)
	if err != nil {
		return nil, err
	}
	return signing.NewVerifier(pgp, sshKeys)
}

// splitTrustedKeys splits a trusted keys file into OpenPGP blocks and SSH key lines,
// checking each one so that a bad key is reported at its line.
func splitTrustedKeys(name string, b []byte) (pgp, sshKeys []string, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	var block strings.Builder
	start := 0
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case start > 0:
			block.WriteString(line + "\n")
			if trimmed == pgpEnd {
				if _, err := signing.NewVerifier([]string{block.String()}, nil); err != nil {
					return nil, nil, fmt.Errorf("%s:%d: %w", name, start, err)
				}
				pgp = append(pgp, block.String())
				block.Reset()
				start = 0
			}
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
		case trimmed == pgpBegin:
			start = n
			block.WriteString(line + "\n")
		case strings.HasPrefix(trimmed, "-----BEGIN "):
			return nil, nil, fmt.Errorf("%s:%d: a %q block is not a public key; give OpenPGP public key blocks or SSH public keys", name, n, strings.Trim(trimmed, "-"))
		default:
			if _, err := signing.NewVerifier(nil, []string{line}); err != nil {
				return nil, nil, fmt.Errorf("%s:%d: not an SSH public key in authorized_keys form: %w", name, n, err)
			}
			sshKeys = append(sshKeys, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if start > 0 {
		return nil, nil, fmt.Errorf("%s:%d: the OpenPGP key block has no %s line", name, start, pgpEnd)
	}
	if len(pgp)+len(sshKeys) == 0 {
		return nil, nil, fmt.Errorf("%s holds no key", name)
	}
	return pgp, sshKeys, nil
}

// policySource opens --policy-repo's branch, whose policies judge every commit.
func (f *trustFlags) policySource(d *director) (*source.Source, error) {
	repo := f.policyRepo
	if abs, err := filepath.Abs(repo); err == nil {
		if _, err := os.Stat(abs); err == nil {
			repo = abs
		}
	}
	log := d.log.With("component", "reconciler", "source", "policy-repo")
	src, err := source.Open(source.Config{Remote: source.Remote{URL: repo}, Branch: f.policyBranch, CacheDir: filepath.Join(d.dataDir, "policy-source"), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("reconciler: --policy-repo: %w", err)
	}
	return src, nil
}
