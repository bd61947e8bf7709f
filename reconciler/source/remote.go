package source

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// Remote names a repository and the credentials to reach it. Credentials never leave it:
// String and Redact are what errors and logs get.
type Remote struct {
	// URL is https://host/org/repo.git, ssh://git@host/org/repo.git, git@host:org/repo.git,
	// file:///path/to/repo, or a local path (relative paths are made absolute).
	URL string
	// Username for https; defaults to the URL's user, else "git" (GitHub, GitLab and Gitea
	// all accept a token as the password of any user name).
	Username string
	// Token is the https password or access token.
	Token string
	// SSHKey is a PEM private key; SSHKeyPassphrase decrypts it when it is encrypted.
	SSHKey           []byte
	SSHKeyPassphrase string
	// KnownHostsFile verifies ssh host keys; empty means $SSH_KNOWN_HOSTS or ~/.ssh/known_hosts.
	KnownHostsFile string
}

var scpLike = regexp.MustCompile(`^(?:[^@/]+@)?[^/:]+:[^/]`)

type kind int

const (
	kindLocal kind = iota
	kindHTTP
	kindSSH
)

// endpoint is a Remote resolved for go-git: the URL without userinfo secrets and the auth.
type endpoint struct {
	url  string
	auth transport.AuthMethod
	kind kind
	dir  string // local repository directory, for kindLocal
}

func (r Remote) resolve() (endpoint, error) {
	raw := strings.TrimSpace(r.URL)
	if raw == "" {
		return endpoint{}, errors.New("repository URL is empty")
	}
	switch {
	case strings.HasPrefix(raw, "file://"):
		dir := strings.TrimPrefix(raw, "file://")
		return endpoint{url: "file://" + dir, kind: kindLocal, dir: dir}, nil
	case strings.Contains(raw, "://"):
		u, err := url.Parse(raw)
		if err != nil {
			// url.Error quotes the whole input, which may hold a password.
			return endpoint{}, fmt.Errorf("repository URL %q does not parse", r.String())
		}
		user := u.User.Username()
		pass, _ := u.User.Password()
		u.User = nil
		if user != "" {
			u.User = url.User(user)
		}
		switch u.Scheme {
		case "http", "https":
			e := endpoint{kind: kindHTTP}
			name := r.Username
			if name == "" {
				name = user
			}
			secret := r.Token
			if secret == "" {
				secret = pass
			}
			u.User = nil
			e.url = u.String()
			switch {
			case secret != "":
				if name == "" {
					name = "git"
				}
				e.auth = &githttp.BasicAuth{Username: name, Password: secret}
			case name != "":
				// https://<token>@github.com/...: the user name is the credential.
				e.auth = &githttp.BasicAuth{Username: name}
			}
			return e, nil
		case "ssh":
			e := endpoint{url: u.String(), kind: kindSSH}
			auth, err := r.sshAuth(cmpOr(user, "git"))
			if err != nil {
				return endpoint{}, err
			}
			e.auth = auth
			return e, nil
		default:
			return endpoint{}, fmt.Errorf("repository URL %s: scheme %q is not supported (use https, ssh, file or a path)", u.Redacted(), u.Scheme)
		}
	case scpLike.MatchString(raw) && !filepath.IsAbs(raw):
		user, _, found := strings.Cut(strings.SplitN(raw, ":", 2)[0], "@")
		if !found {
			user = "git"
		}
		auth, err := r.sshAuth(user)
		if err != nil {
			return endpoint{}, err
		}
		return endpoint{url: raw, auth: auth, kind: kindSSH}, nil
	default:
		dir, err := filepath.Abs(raw)
		if err != nil {
			return endpoint{}, fmt.Errorf("repository path %s: %w", raw, err)
		}
		return endpoint{url: "file://" + dir, kind: kindLocal, dir: dir}, nil
	}
}

func (r Remote) sshAuth(user string) (transport.AuthMethod, error) {
	if len(r.SSHKey) == 0 {
		// go-git falls back to the ssh agent.
		return nil, nil
	}
	keys, err := gitssh.NewPublicKeys(user, r.SSHKey, r.SSHKeyPassphrase)
	if err != nil {
		return nil, fmt.Errorf("ssh private key for %s: %w", r.String(), r.Redact(err))
	}
	if r.KnownHostsFile != "" {
		cb, err := gitssh.NewKnownHostsCallback(r.KnownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("ssh known hosts %s: %w", r.KnownHostsFile, err)
		}
		keys.HostKeyCallback = cb
	}
	return keys, nil
}

// String is the URL with any password replaced, fit for logs and errors.
func (r Remote) String() string {
	raw := strings.TrimSpace(r.URL)
	if u, err := url.Parse(raw); err == nil && strings.Contains(raw, "://") {
		if _, hasPass := u.User.Password(); u.User != nil && !hasPass && (u.Scheme == "http" || u.Scheme == "https") {
			// A lone https user name is often a token.
			u.User = url.User("xxxxx")
		}
		return r.scrub(u.Redacted())
	}
	if i := strings.Index(raw, "://"); i >= 0 {
		// Unparseable: drop everything between the scheme and the host.
		if at := strings.LastIndex(raw, "@"); at > i {
			return raw[:i+3] + "xxxxx" + raw[at:]
		}
	}
	return r.scrub(raw)
}

// Redact returns err with every credential of r replaced; errors.Is and errors.As still
// see the original chain.
func (r Remote) Redact(err error) error {
	if err == nil {
		return nil
	}
	// go-git's http errors end in ": " when the server sent no reason.
	msg := strings.TrimRight(r.scrub(err.Error()), ": ")
	if msg == err.Error() {
		return err
	}
	return &redacted{msg: msg, err: err}
}

func (r Remote) secrets() []string {
	var s []string
	if r.Token != "" {
		s = append(s, r.Token, url.QueryEscape(r.Token), url.PathEscape(r.Token))
	}
	if r.SSHKeyPassphrase != "" {
		s = append(s, r.SSHKeyPassphrase)
	}
	if u, err := url.Parse(strings.TrimSpace(r.URL)); err == nil {
		if p, ok := u.User.Password(); ok && p != "" {
			s = append(s, p, url.QueryEscape(p), url.PathEscape(p))
		} else if name := u.User.Username(); len(name) >= 8 && (u.Scheme == "http" || u.Scheme == "https") {
			// Long enough to be a token passed as the user name; short names would
			// mangle unrelated words.
			s = append(s, name)
		}
	}
	return s
}

func (r Remote) scrub(msg string) string {
	for _, s := range r.secrets() {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

// explain turns go-git's transport sentinels into something an operator can act on.
func explain(err error, withAuth bool) string {
	switch {
	case withAuth && (errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed)):
		return " (the credentials were refused: check the token or key and its access to this repository)"
	case errors.Is(err, transport.ErrAuthenticationRequired):
		return " (the repository wants credentials: set a token or ssh key)"
	case errors.Is(err, transport.ErrAuthorizationFailed):
		return " (the credentials were refused: check the token or key and its access to this repository)"
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return " (check the URL, and that the credentials can see the repository)"
	case strings.Contains(err.Error(), "ssh: unable to authenticate"):
		return " (the ssh key was refused: is it a deploy key of this repository?)"
	case strings.Contains(err.Error(), "knownhosts: key is unknown"), strings.Contains(err.Error(), "knownhosts: key mismatch"):
		return " (the server's host key is not the one in known_hosts)"
	case errors.Is(err, os.ErrNotExist):
		return " (no repository at that path)"
	}
	return ""
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Endpoint resolves r for go-git: the URL stripped of any password, and the auth carrying
// the credentials. Errors from go-git calls made with them must go through Redact.
func (r Remote) Endpoint() (string, transport.AuthMethod, error) {
	e, err := r.resolve()
	return e.url, e.auth, err
}
