package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/blobstore/signed"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/reconciler/converge"
)

// blobstoreFlags say where agents on other machines reach the director's blobstore and
// how it proves itself to them. Only a director whose CPI is not local serves it: local
// VMs are agent processes on this machine and read the blobs directory directly.
type blobstoreFlags struct {
	listen string
	url    string
	// tlsCert and tlsKey are the operator's server certificate; without them the
	// director makes its own CA and certificate. tlsCA is the CA agents are told to
	// trust (none: their system roots).
	tlsCert, tlsKey, tlsCA string
	// insecureHTTP serves plain HTTP: the opt-out an http:// URL needs.
	insecureHTTP bool
}

func (f *blobstoreFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.listen, "blobstore-listen", "127.0.0.1:25250", "address the blobstore is served on over HTTPS, behind short-lived signed URLs, to the agents of every CPI but local; cloud VMs must reach it")
	fs.StringVar(&f.url, "blobstore-url", "", "the blobstore's base URL as agents on cloud VMs reach it (default: https:// and --blobstore-listen's address; 0.0.0.0 or :: becomes this machine's first non-loopback address); http:// needs --blobstore-insecure-http")
	fs.StringVar(&f.tlsCert, "blobstore-tls-cert", "", "PEM `file`: the blobstore's TLS server certificate (chain), for --blobstore-url's host (default: one the director makes, with its own CA, in --data-dir)")
	fs.StringVar(&f.tlsKey, "blobstore-tls-key", "", "PEM `file`: the private key of --blobstore-tls-cert")
	fs.StringVar(&f.tlsCA, "blobstore-tls-ca", "", "PEM `file`: the CA agents trust for the blobstore, put in their settings (default with --blobstore-tls-cert: none, agents use their system roots)")
	fs.BoolVar(&f.insecureHTTP, "blobstore-insecure-http", false, "serve the blobstore over plain HTTP: anyone on the VMs' network can then read the rendered templates, passwords and private keys included, agents fetch")
}

func (f blobstoreFlags) check() error {
	scheme := "https"
	if f.insecureHTTP {
		scheme = "http"
	}
	if f.url != "" {
		u, err := url.Parse(f.url)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.User != nil {
			return usageError("--blobstore-url %q: want https://HOST[:PORT][/PATH], with no query or credentials", f.url)
		}
		scheme = u.Scheme
	}
	switch {
	case (f.tlsCert == "") != (f.tlsKey == ""):
		return usageError("--blobstore-tls-cert and --blobstore-tls-key go together: give both, or neither to have the director make its own CA and certificate")
	case f.insecureHTTP && f.tlsCert != "":
		return usageError("--blobstore-insecure-http serves plain HTTP: it does not go with --blobstore-tls-cert and --blobstore-tls-key")
	case scheme == "http" && !f.insecureHTTP:
		return usageError("--blobstore-url %q is plain HTTP: agents fetch rendered templates, which hold passwords and private keys, through it, readable by anyone on the VMs' network; give an https:// URL (the director makes its own CA and certificate unless --blobstore-tls-cert and --blobstore-tls-key are given), or add --blobstore-insecure-http to accept that", f.url)
	case f.tlsCA != "" && scheme == "http":
		return usageError("--blobstore-tls-ca: agents are given a plain http:// URL, with no certificate to check")
	case f.tlsCA != "" && f.tlsCert == "" && !f.insecureHTTP:
		return usageError("--blobstore-tls-ca is the CA of --blobstore-tls-cert: without that the director makes its own CA and hands agents that")
	}
	return nil
}

// blobURLTTL is how long a signed URL is good for. The upload URL of a compilation is
// signed before the package compiles, so it must outlive converge's compile timeout
// (30 minutes by default).
const blobURLTTL = time.Hour

// blobstoreKeyFile holds the key blob URLs are signed with, under the data dir.
const blobstoreKeyFile = "blobstore.key"

// serveBlobstore adds the role serving the data dir's blobstore on l behind signed URLs
// and sets d.blobSigner, which makes converge hand agents signed URLs instead of a path.
func serveBlobstore(d *director, f blobstoreFlags, l net.Listener) error {
	key, err := blobSigningKey(d.dataDir)
	if err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	base := f.url
	if base == "" {
		scheme := "https://"
		if f.insecureHTTP {
			scheme = "http://"
		}
		base = scheme + advertised(l.Addr())
	}
	s, err := signed.NewSigner(key, blobURLTTL, base)
	if err != nil {
		return err
	}
	log := d.log.With("component", "blobstore")
	// With --blobstore-insecure-http and an https URL, a proxy in front terminates TLS:
	// agents still get --blobstore-tls-ca, if given, to check it with.
	var serverTLS *tls.Config
	if !f.insecureHTTP {
		t, err := setupBlobstoreTLS(d.dataDir, f, base, l.Addr(), time.Now)
		if err != nil {
			return err
		}
		logBlobstoreTLS(log, d.dataDir, f, t)
		serverTLS, d.blobCA = t.config, t.caPEM
	} else if f.tlsCA != "" {
		ca, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return fmt.Errorf("--blobstore-tls-ca: %w", err)
		}
		if _, err := signed.CertPool(ca); err != nil {
			return fmt.Errorf("--blobstore-tls-ca %s: %w", f.tlsCA, err)
		}
		d.blobCA = ca
	}
	store, err := local.Open(d.blobDir())
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	counted := &countingHandler{next: signed.Handler(store, s, log), n: map[[3]string]uint64{}}
	mux := http.NewServeMux()
	// The handler's own paths are /blobs/...; a --blobstore-url with a path prefix is
	// one a proxy in front strips.
	mux.Handle("/blobs/", counted)
	d.addRole(&apiRole{name: "blobstore", l: l, mux: mux, log: log, tls: serverTLS})
	d.api.Metrics = append(d.api.Metrics, counted.metrics)
	d.blobSigner = s
	log.Info("serving the blobstore to agents over signed URLs", "listen", l.Addr().String(), "url", s.Base, "tls", serverTLS != nil)
	if f.insecureHTTP {
		log.Warn("the blobstore is served over plain HTTP (--blobstore-insecure-http): rendered templates, secrets included, cross the VMs' network readable", "url", s.Base)
	}
	if loopback(s.Base) {
		log.Warn("the blobstore URL agents are given is a loopback address: only VMs on this machine reach it; give --blobstore-listen and --blobstore-url an address cloud VMs reach", "url", s.Base)
	}
	return nil
}

// loopback reports whether base names this machine only (localhost, 127.x, ::1).
func loopback(base string) bool {
	u, err := url.Parse(base)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

// agentBlobstore is the blobstore section of a new VM's agent settings: the local path
// for the local CPI. The others' agents get a signed URL for every blob they fetch or
// store, and settings in the shape BOSH's director gives its dav blobstore —
// {"provider": "dav", "options": {"endpoint": URL, "tls": {"cert": {"ca": PEM}}}} —
// without the credentials: the CA is what the agent verifies those URLs' server with.
// Converge sends the same section with update_settings to running agents whose VMs got
// another (the URL or CA changed since), so changing them needs no recreation.
func (d *director) agentBlobstore() cpi.Blobstore {
	if d.blobSigner != nil {
		opts := map[string]any{"endpoint": d.blobSigner.Base}
		if len(d.blobCA) > 0 {
			opts["tls"] = map[string]any{"cert": map[string]any{"ca": string(d.blobCA)}}
		}
		return cpi.Blobstore{Provider: "dav", Options: opts}
	}
	return cpi.Blobstore{Provider: "local", Options: map[string]any{"blobstore_path": d.blobDir()}}
}

// urlSigner is converge's Signer: nil (a nil interface, not a nil pointer in one) unless
// the blobstore is served.
func (d *director) urlSigner() converge.URLSigner {
	if d.blobSigner == nil {
		return nil
	}
	return d.blobSigner
}

// blobSigningKey loads the key blob URLs are signed with, making it (0600) on first start
// so that URLs signed just before a restart still work after it. It is never logged.
func blobSigningKey(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, blobstoreKeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		k, derr := hex.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(k) < 32 {
			return nil, fmt.Errorf("blobstore key %s: want 64 hex digits; remove it to have a new one made", path)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read blobstore key: %w", err)
	}
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return nil, fmt.Errorf("make blobstore key: %w", err)
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(k[:])+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write blobstore key: %w", err)
	}
	return k[:], nil
}

// advertised turns a listen address into one other machines can dial: an unspecified
// host becomes this machine's first non-loopback address (loopback when it has none).
func advertised(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return addr.String()
	}
	host = "127.0.0.1"
	if ips, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ips {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				host = n.IP.String()
				break
			}
		}
	}
	return net.JoinHostPort(host, port)
}

// countingHandler counts the blobstore's answers by method, status and scheme, for
// /metrics: how much agents fetch, whether they are refused, and that they do it over
// TLS.
type countingHandler struct {
	next http.Handler
	mu   sync.Mutex
	n    map[[3]string]uint64
}

func (h *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	// Deferred, so that a transfer the handler aborts (it panics) is counted too.
	defer func() {
		h.mu.Lock()
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		h.n[[3]string{r.Method, strconv.Itoa(sw.code), scheme}]++
		h.mu.Unlock()
	}()
	h.next.ServeHTTP(sw, r)
}

func (h *countingHandler) metrics(_ context.Context, m *api.MetricsWriter) {
	h.mu.Lock()
	keys := make([][3]string, 0, len(h.n))
	for k := range h.n {
		keys = append(keys, k)
	}
	counts := make(map[[3]string]uint64, len(h.n))
	for k, v := range h.n {
		counts[k] = v
	}
	h.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool { return strings.Join(keys[i][:], " ") < strings.Join(keys[j][:], " ") })
	for _, k := range keys {
		m.Counter("blobstore_requests_total", "Requests the director's blobstore answered, by method, status code and scheme (https: over TLS).",
			api.Labels{"method": k[0], "code": k[1], "scheme": k[2]}, float64(counts[k]))
	}
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}
