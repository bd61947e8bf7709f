package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/bosun-gitops/bosun/api"
)

// The CLI's remote verbs talk to a director through its API. Where that director is and
// which token to send comes from the user's config file, written by `bosun login` and by
// `bosun director --dev`; BOSUN_ENVIRONMENT, BOSUN_TOKEN and BOSUN_CA_CERT override it.

// userConfig is the user's config file: the directors logged in to, by alias.
type userConfig struct {
	Current      string                     `json:"current,omitempty"`
	Environments map[string]userEnvironment `json:"environments"`
}

type userEnvironment struct {
	URL    string `json:"url"`
	Token  string `json:"token"`
	CACert string `json:"ca_cert,omitempty"` // PEM
}

// userConfigPath is $BOSUN_CONFIG, or config.json under the user's config directory.
func userConfigPath() (string, error) {
	if p := os.Getenv("BOSUN_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the user's config directory: %w (set BOSUN_CONFIG to a file path)", err)
	}
	return filepath.Join(dir, "bosun", "config.json"), nil
}

func loadUserConfig() (userConfig, string, error) {
	path, err := userConfigPath()
	if err != nil {
		return userConfig{}, "", err
	}
	cfg := userConfig{Environments: map[string]userEnvironment{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, path, nil
	}
	if err != nil {
		return cfg, path, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, path, fmt.Errorf("%s is not a bosun config file (%v); remove it and `bosun login` again", path, err)
	}
	if cfg.Environments == nil {
		cfg.Environments = map[string]userEnvironment{}
	}
	return cfg, path, nil
}

// saveUserConfig writes cfg to path readable by its owner only: it holds tokens.
func saveUserConfig(path string, cfg userConfig) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*")
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}

// remoteFlags are the flags every remote verb takes.
type remoteFlags struct {
	env        string
	json       bool
	deployment string
}

func addRemoteFlags(fs *flag.FlagSet, withDeployment bool) *remoteFlags {
	r := &remoteFlags{}
	fs.StringVar(&r.env, "e", os.Getenv("BOSUN_ENVIRONMENT"), "director: an alias `bosun login` saved, or a URL (also --environment, $BOSUN_ENVIRONMENT)")
	fs.StringVar(&r.env, "environment", os.Getenv("BOSUN_ENVIRONMENT"), "director alias or URL")
	fs.BoolVar(&r.json, "json", false, "print JSON")
	if withDeployment {
		fs.StringVar(&r.deployment, "d", os.Getenv("BOSUN_DEPLOYMENT"), "deployment (also --deployment, $BOSUN_DEPLOYMENT)")
		fs.StringVar(&r.deployment, "deployment", os.Getenv("BOSUN_DEPLOYMENT"), "deployment")
	}
	return r
}

// client returns an API client of the chosen director.
func (r *remoteFlags) client() (*api.Client, error) {
	cfg, path, err := loadUserConfig()
	if err != nil {
		return nil, err
	}
	name := r.env
	if name == "" {
		name = cfg.Current
	}
	if name == "" {
		return nil, fmt.Errorf("no director chosen: `bosun login URL` first (or run `bosun director --dev`, which logs you in), or give -e")
	}
	env, ok := cfg.Environments[name]
	if !ok {
		for _, e := range cfg.Environments {
			if strings.TrimRight(e.URL, "/") == strings.TrimRight(name, "/") {
				env, ok = e, true
				break
			}
		}
	}
	if !ok {
		if !strings.Contains(name, "://") {
			known := sortedEnvNames(cfg)
			return nil, fmt.Errorf("no director %q in %s (known: %s); `bosun login URL -e %s` adds it", name, path, strings.Join(known, ", "), name)
		}
		env.URL = name
	}
	if t := os.Getenv("BOSUN_TOKEN"); t != "" {
		env.Token = t
	}
	if f := os.Getenv("BOSUN_CA_CERT"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("BOSUN_CA_CERT: %w", err)
		}
		env.CACert = string(b)
	}
	if env.Token == "" {
		return nil, fmt.Errorf("no token for %s: `bosun login %s` stores one (or set BOSUN_TOKEN)", env.URL, env.URL)
	}
	return api.NewClient(env.URL, env.Token, api.ClientOptions{CACert: []byte(env.CACert)})
}

func sortedEnvNames(cfg userConfig) []string {
	var ns []string
	for n := range cfg.Environments {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	if len(ns) == 0 {
		ns = []string{"none"}
	}
	return ns
}

// remoteError turns an API or network failure into the one line an operator needs.
func remoteError(err error) error {
	var ae *api.Error
	if errors.As(err, &ae) {
		if ae.Status == 401 {
			return fmt.Errorf("%s; `bosun login` stores a new token", ae.Message)
		}
		return errors.New(ae.Message)
	}
	var unknownCA x509.UnknownAuthorityError
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &unknownCA) || errors.As(err, &certErr) {
		return fmt.Errorf("%v: give the CA that signed the director's certificate with `bosun login URL --ca-cert FILE` (or $BOSUN_CA_CERT)", err)
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return fmt.Errorf("%v: the director serves plain HTTP; log in to its http:// URL", err)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%v: is `bosun director` running there?", err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%v: the director did not answer in time", err)
	}
	return err
}

// deploymentArg takes the deployment from -d or, failing that, the first positional
// argument, so that both `bosun instances -d web` and `bosun instances web` work.
func deploymentArg(r *remoteFlags, pos []string, verb string, required bool) (string, []string, error) {
	if r.deployment != "" {
		return r.deployment, pos, nil
	}
	if len(pos) > 0 {
		return pos[0], pos[1:], nil
	}
	if required {
		return "", nil, usageError("which deployment? give -d NAME (`bosun deployments` lists them; see `bosun %s --help`)", verb)
	}
	return "", pos, nil
}

// when formats a time as the tables show it: local, to the second.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}

func whenPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return when(*t)
}

// dash shows an empty cell as "-", as bosh does.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// hms is a duration as bosh prints it: 00:01:02.
func hms(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

func short(sha string) string {
	if len(sha) > 10 {
		return sha[:10]
	}
	return sha
}

// remoteVerb is the start every listing verb shares: parse its flags, refuse positional
// arguments, reach the director.
func remoteVerb(fs *flag.FlagSet, rf *remoteFlags, verb string, args []string) (*api.Client, error) {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return nil, err
	}
	if err := noArgs(verb, pos); err != nil {
		return nil, err
	}
	return rf.client()
}

func noArgs(verb string, pos []string) error {
	if len(pos) > 0 {
		return usageError("unexpected argument %q (see `bosun %s --help`)", pos[0], verb)
	}
	return nil
}
