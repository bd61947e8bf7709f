package reconciler

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bosun-gitops/bosun/manifest"
	"github.com/bosun-gitops/bosun/release"
)

// Release is one release a revision uses: built from a source directory of the
// repository, or fetched from a reference and checked against its sha1.
type Release struct {
	Name, Version string
	// File is where the repository names it: releases/<name>.yml or releases/<name>/.
	File    string
	URL     string `json:"url,omitempty"`
	SHA1    string `json:"sha1,omitempty"`
	Release *release.Release
}

// Stemcell is one stemcell reference of stemcells/*.yml.
type Stemcell struct {
	File            string         `yaml:"-"`
	Name            string         `yaml:"name"`
	OS              string         `yaml:"operating_system"`
	Version         string         `yaml:"version"`
	APIVersion      int            `yaml:"api_version"`
	URL             string         `yaml:"url"`
	SHA1            string         `yaml:"sha1"`
	CloudProperties map[string]any `yaml:"cloud_properties"`
	// ImagePath is the fetched tarball of a url reference, for create_stemcell.
	ImagePath string `yaml:"-"`
}

// releaseRef is releases/<name>.yml.
type releaseRef struct {
	Name    string `yaml:"name"`
	Version string `yaml:"version"`
	URL     string `yaml:"url"`
	SHA1    string `yaml:"sha1"`
}

// Releases resolves release references and builds release directories, caching both
// by content so an unchanged release costs a hash of its files. Safe for concurrent use.
type Releases struct {
	// CacheDir keeps fetched stemcell tarballs; empty means the system temp dir.
	CacheDir string
	Client   *http.Client

	// offline: fetch nothing, resolve references from the cache only (Offline).
	offline bool

	mu      sync.Mutex
	built   map[string]*release.Release // by digest of the directory's files
	fetched map[string]*release.Release // by sha1
	images  map[string]string           // stemcell sha1 → path
}

func (rs *Releases) init() {
	if rs.built == nil {
		rs.built = map[string]*release.Release{}
		rs.fetched = map[string]*release.Release{}
		rs.images = map[string]string{}
	}
}

// Offline returns a resolver for a tree the director did not take from its source (a
// plan's upload): it builds the tree's release directories, and resolves references from
// what rs has fetched already, but fetches nothing. An uploaded tree must not make the
// director read its own files (file://) or reach for URLs of the caller's choosing. What
// it builds stays in the copy, out of rs's cache.
func (rs *Releases) Offline() *Releases {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.init()
	return &Releases{offline: true, CacheDir: rs.CacheDir,
		built: maps.Clone(rs.built), fetched: maps.Clone(rs.fetched), images: maps.Clone(rs.images)}
}

// dirDigest hashes every file's path and content under a release directory.
func dirDigest(fsys fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// Build builds the release source directory dir of fsys.
func (rs *Releases) Build(ctx context.Context, fsys fs.FS, dir string) (*release.Release, error) {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		return nil, err
	}
	digest, err := dirDigest(sub)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	rs.mu.Lock()
	rs.init()
	r, ok := rs.built[digest]
	rs.mu.Unlock()
	if ok {
		return r, nil
	}
	r, err = release.BuildFS(ctx, sub, path.Base(dir))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	rs.mu.Lock()
	rs.built[digest] = r
	rs.mu.Unlock()
	return r, nil
}

func (rs *Releases) client() *http.Client {
	if rs.Client != nil {
		return rs.Client
	}
	return &http.Client{Timeout: 5 * time.Minute}
}

// fetch reads a file:// or http(s):// URL and checks its sha1 ("sha256:<hex>" also
// accepted). URLs are never logged with credentials.
func (rs *Releases) fetch(ctx context.Context, raw, sum string) ([]byte, error) {
	if rs.offline {
		return nil, errors.New("the director has not fetched it (no revision it judged named this sha1), and a plan fetches nothing; plan without --director, or let the director fetch it by pushing the change")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url is not valid")
	}
	var data []byte
	switch u.Scheme {
	case "file":
		data, err = os.ReadFile(u.Path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", u.Path, err)
		}
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
		if err != nil {
			return nil, err
		}
		resp, err := rs.client().Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", u.Redacted(), stripURL(err))
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetch %s: %s", u.Redacted(), resp.Status)
		}
		data, err = io.ReadAll(io.LimitReader(resp.Body, 8<<30))
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", u.Redacted(), err)
		}
	default:
		return nil, fmt.Errorf("url scheme %q: want file, http or https", u.Scheme)
	}
	if err := checkSum(data, sum); err != nil {
		return nil, err
	}
	return data, nil
}

func stripURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

func checkSum(data []byte, sum string) error {
	var got string
	if s, ok := strings.CutPrefix(sum, "sha256:"); ok {
		h := sha256.Sum256(data)
		got, sum = hex.EncodeToString(h[:]), s
	} else {
		h := sha1.Sum(data)
		got = hex.EncodeToString(h[:])
	}
	if !strings.EqualFold(got, sum) {
		return fmt.Errorf("sha1 mismatch: the file has %s, the reference says %s", got, sum)
	}
	return nil
}

// Fetch returns the release a reference names, from cache when its sha1 was seen.
func (rs *Releases) Fetch(ctx context.Context, rawURL, sum string) (*release.Release, error) {
	if sum == "" {
		return nil, fmt.Errorf("no sha1: a release fetched by url must name its sha1")
	}
	rs.mu.Lock()
	rs.init()
	r, ok := rs.fetched[sum]
	rs.mu.Unlock()
	if ok {
		return r, nil
	}
	data, err := rs.fetch(ctx, rawURL, sum)
	if err != nil {
		return nil, err
	}
	r, err = release.ReadTarball(ctx, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	rs.mu.Lock()
	rs.fetched[sum] = r
	rs.mu.Unlock()
	return r, nil
}

// Image fetches a stemcell tarball once and returns its local path.
func (rs *Releases) Image(ctx context.Context, rawURL, sum string) (string, error) {
	if sum == "" {
		return "", fmt.Errorf("no sha1: a stemcell fetched by url must name its sha1")
	}
	rs.mu.Lock()
	rs.init()
	p, ok := rs.images[sum]
	rs.mu.Unlock()
	if ok {
		return p, nil
	}
	data, err := rs.fetch(ctx, rawURL, sum)
	if err != nil {
		return "", err
	}
	dir := rs.CacheDir
	if dir == "" {
		dir = os.TempDir()
	}
	dir = path.Join(dir, "stemcells")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	p = path.Join(dir, strings.NewReplacer(":", "-", "/", "-").Replace(sum)+".tgz")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return "", err
	}
	rs.mu.Lock()
	rs.images[sum] = p
	rs.mu.Unlock()
	return p, nil
}

// decodeStrict decodes a small YAML file into v, refusing unknown keys; errors name the
// file and line.
func decodeStrict(file string, data []byte, v any) error {
	if _, err := manifest.Parse(file, data); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && err != io.EOF {
		return yamlError(file, err)
	}
	return nil
}

// yamlError turns yaml.v3's "line N: msg" into "file:N: msg", as every other error reads.
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	out := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if rest, ok := strings.CutPrefix(e, "line "); ok {
			if n, msg, ok := strings.Cut(rest, ": "); ok {
				msg = strings.Replace(msg, "field ", "unknown key ", 1)
				if i := strings.Index(msg, " not found in type"); i > 0 {
					msg = msg[:i]
				}
				out = append(out, fmt.Sprintf("%s:%s: %s", file, n, msg))
				continue
			}
		}
		out = append(out, file+": "+e)
	}
	return errors.New(strings.Join(out, "\n"))
}
