package source

import (
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
)

func TestUnreachableRepositoryErrorsAreRedacted(t *testing.T) {
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer refuse.Close()
	deny := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	defer deny.Close()
	// A port nothing listens on: bind one, then close it.
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	for _, tc := range []struct {
		name   string
		remote Remote
		want   string
		is     error
	}{
		{"password in URL, connection refused", Remote{URL: strings.Replace(closedURL, "http://", "http://deploy:pa55word-xyz@", 1) + "/org/repo.git"}, "deploy:xxxxx@127.0.0.1", nil},
		{"token, auth required", Remote{URL: refuse.URL + "/org/repo.git", Token: "ghp_tok3n"}, "credentials were refused", transport.ErrAuthenticationRequired},
		{"no token, auth required", Remote{URL: refuse.URL + "/org/repo.git"}, "wants credentials", transport.ErrAuthenticationRequired},
		{"token as URL user, refused", Remote{URL: strings.Replace(refuse.URL, "http://", "http://ghp_tok3n@", 1) + "/org/repo.git"}, "credentials were refused", transport.ErrAuthenticationRequired},
		{"token in URL, forbidden", Remote{URL: strings.Replace(deny.URL, "http://", "http://x:ghp_tok3n@", 1) + "/org/repo.git"}, "credentials were refused", transport.ErrAuthorizationFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(Config{Remote: tc.remote, CacheDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _, err = s.Check(ctx)
			if err == nil {
				t.Fatal("Check succeeded")
			}
			msg := err.Error()
			for _, secret := range []string{"pa55word-xyz", "ghp_tok3n"} {
				if strings.Contains(msg, secret) {
					t.Fatalf("error leaks a credential: %s", msg)
				}
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not mention %q", msg, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", msg, tc.is)
			}
		})
	}
}

func TestRemoteResolve(t *testing.T) {
	for _, tc := range []struct {
		name     string
		remote   Remote
		url      string
		display  string
		kind     kind
		wantAuth bool
		err      string
	}{
		{"https token", Remote{URL: "https://github.com/o/r.git", Token: "t0k"}, "https://github.com/o/r.git", "https://github.com/o/r.git", kindHTTP, true, ""},
		{"https userinfo", Remote{URL: "https://me:pw@gitlab.example/o/r.git"}, "https://gitlab.example/o/r.git", "https://me:xxxxx@gitlab.example/o/r.git", kindHTTP, true, ""},
		{"https token as user", Remote{URL: "https://ghp_abcdefgh12345@github.com/o/r.git"}, "https://github.com/o/r.git", "https://xxxxx@github.com/o/r.git", kindHTTP, true, ""},
		{"https anonymous", Remote{URL: "https://github.com/o/r.git"}, "https://github.com/o/r.git", "https://github.com/o/r.git", kindHTTP, false, ""},
		{"ssh url, agent", Remote{URL: "ssh://git@host:2222/o/r.git"}, "ssh://git@host:2222/o/r.git", "ssh://git@host:2222/o/r.git", kindSSH, false, ""},
		{"scp-like, agent", Remote{URL: "git@github.com:o/r.git"}, "git@github.com:o/r.git", "git@github.com:o/r.git", kindSSH, false, ""},
		{"file", Remote{URL: "file:///srv/repo"}, "file:///srv/repo", "file:///srv/repo", kindLocal, false, ""},
		{"path", Remote{URL: "/srv/repo"}, "file:///srv/repo", "/srv/repo", kindLocal, false, ""},
		{"bad key", Remote{URL: "git@github.com:o/r.git", SSHKey: []byte("not a key"), SSHKeyPassphrase: "phrase-123"}, "", "", 0, false, "ssh private key for git@github.com:o/r.git"},
		{"bad scheme", Remote{URL: "ftp://u:secretpw@host/r"}, "", "", 0, false, "scheme \"ftp\" is not supported"},
		{"empty", Remote{}, "", "", 0, false, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := tc.remote.resolve()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				for _, s := range []string{"secretpw", "phrase-123"} {
					if strings.Contains(err.Error(), s) {
						t.Fatalf("error leaks %q: %v", s, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.url != tc.url || e.kind != tc.kind || (e.auth != nil) != tc.wantAuth || tc.remote.String() != tc.display {
				t.Errorf("resolve = %q kind %d auth %v display %q", e.url, e.kind, e.auth != nil, tc.remote.String())
			}
		})
	}
}

// TestHTTPSTokenAgainstGitHTTPBackend serves a real repository through git's own
// http-backend behind basic auth, as a forge serving a token-protected repository would.
func TestHTTPSTokenAgainstGitHTTPBackend(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git binary")
	}
	work := newWorkRepo(t)
	bare := work.newBareRemote()
	head := work.commit("served over http", map[string]string{"bosun.yml": "{}\n"})
	work.push(false)
	const token = "glpat-Secr3tT0ken"
	backend := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(bare), "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pass, ok := r.BasicAuth(); !ok || pass != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	defer srv.Close()
	url := srv.URL + "/" + filepath.Base(bare)

	s, err := Open(Config{Remote: Remote{URL: url, Token: token}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rev, changed, err := s.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !changed || rev.SHA != head {
		t.Fatalf("Check = %s changed=%v", rev.SHA, changed)
	}
	if data, err := fs.ReadFile(rev.FS(), "bosun.yml"); err != nil || string(data) != "{}\n" {
		t.Fatalf("bosun.yml = %q, %v", data, err)
	}

	wrong, err := Open(Config{Remote: Remote{URL: url, Token: "glpat-wrong-one"}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	_, _, err = wrong.Check(context.Background())
	if err == nil || strings.Contains(err.Error(), "glpat-wrong-one") || !strings.Contains(err.Error(), "credentials were refused") {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestSSHKeyAuth(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	key := pem.EncodeToMemory(block)
	e, err := Remote{URL: "ssh://deploy@git.example:2222/o/r.git", SSHKey: key}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	pk, ok := e.auth.(*gitssh.PublicKeys)
	if !ok || pk.User != "deploy" {
		t.Fatalf("auth = %#v", e.auth)
	}
	hosts := filepath.Join(t.TempDir(), "known_hosts")
	_, err = Remote{URL: "git@git.example:o/r.git", SSHKey: key, KnownHostsFile: hosts}.resolve()
	if err == nil || !strings.Contains(err.Error(), hosts) {
		t.Fatalf("missing known_hosts: %v", err)
	}
	if err := os.WriteFile(hosts, []byte("git.example "+string(ssh.MarshalAuthorizedKey(must(ssh.NewPublicKey(priv.Public()))))), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (Remote{URL: "git@git.example:o/r.git", SSHKey: key, KnownHostsFile: hosts}).resolve(); err != nil {
		t.Fatal(err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
