// Package signed serves a blobstore over HTTP behind short-lived signed URLs and is the
// client agents use with them: the director signs a GET (or PUT) URL for one digest, the
// agent downloads and verifies the digest before using a byte, and uploads results
// through a URL that is good only for a short time.
//
// A URL is <base>/blobs/<hex>?method=GET&expires=<unix>&sig=<hmac>, where the HMAC-SHA256
// covers method, digest and expiry. A PUT URL signed for the empty digest accepts any
// content (a compile result whose digest nobody knows yet) and lives at /blobs/any.
package signed

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/blobstore"
)

// anyDigest is the path token of a PUT URL that accepts any content.
const anyDigest = "any"

// DigestHeader carries the stored blob's digest in a PUT response.
const DigestHeader = "X-Bosun-Digest"

// Signer signs URLs with an HMAC key; URLs expire after TTL.
type Signer struct {
	Key  []byte
	TTL  time.Duration
	Base string // e.g. http://10.0.0.1:25250; no trailing slash needed
	now  func() time.Time
}

// NewSigner returns a signer; the key must be at least 16 bytes.
func NewSigner(key []byte, ttl time.Duration, base string) (*Signer, error) {
	if len(key) < 16 {
		return nil, errors.New("new blob URL signer: key must be at least 16 bytes")
	}
	if ttl <= 0 {
		return nil, errors.New("new blob URL signer: ttl must be positive")
	}
	if _, err := url.Parse(base); err != nil {
		return nil, fmt.Errorf("new blob URL signer: base URL: %w", err)
	}
	return &Signer{Key: append([]byte(nil), key...), TTL: ttl, Base: strings.TrimSuffix(base, "/"), now: time.Now}, nil
}

// SignGet returns a URL that reads blob d until the TTL passes.
func (s *Signer) SignGet(d blobstore.Digest) string { return s.sign(http.MethodGet, d.Hex()) }

// SignPut returns a URL that stores content; with d set, only content hashing to d.
func (s *Signer) SignPut(d blobstore.Digest) string {
	if d == "" {
		return s.sign(http.MethodPut, anyDigest)
	}
	return s.sign(http.MethodPut, d.Hex())
}

func (s *Signer) clock() time.Time {
	if s.now == nil {
		return time.Now()
	}
	return s.now()
}

func (s *Signer) sign(method, token string) string {
	exp := strconv.FormatInt(s.clock().Add(s.TTL).Unix(), 10)
	q := url.Values{"method": {method}, "expires": {exp}, "sig": {s.mac(method, token, exp)}}
	return s.Base + "/blobs/" + token + "?" + q.Encode()
}

func (s *Signer) mac(method, token, exp string) string {
	m := hmac.New(sha256.New, s.Key)
	m.Write([]byte("bosun-blob-url\x00" + method + "\x00" + token + "\x00" + exp))
	return hex.EncodeToString(m.Sum(nil))
}

// check returns why a request is refused, or "" when it is allowed.
func (s *Signer) check(method, token string, q url.Values) string {
	if q.Get("method") != method {
		return fmt.Sprintf("signature is for %s, not %s", q.Get("method"), method)
	}
	exp := q.Get("expires")
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return "signature has no valid expiry"
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("sig")), []byte(s.mac(method, token, exp))) != 1 {
		return "signature does not match"
	}
	if s.clock().Unix() > n {
		return "signature expired"
	}
	return ""
}

// Handler serves store under /blobs/ behind signature checks.
func Handler(store blobstore.Store, s *Signer, log *slog.Logger) http.Handler {
	return &handler{store: store, s: s, log: log}
}

type handler struct {
	store blobstore.Store
	s     *Signer
	log   *slog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, "/blobs/")
	if !ok || strings.Contains(token, "/") {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPut {
		w.Header().Set("Allow", "GET, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var want blobstore.Digest
	if !(r.Method == http.MethodPut && token == anyDigest) {
		d, err := blobstore.ParseDigest("sha256:" + token)
		if err != nil {
			http.Error(w, "malformed blob digest in path", http.StatusBadRequest)
			return
		}
		want = d
	}
	if reason := h.s.check(r.Method, token, r.URL.Query()); reason != "" {
		http.Error(w, "forbidden: "+reason, http.StatusForbidden)
		return
	}
	if r.Method == http.MethodGet {
		h.get(w, r, want)
		return
	}
	h.put(w, r, want)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request, d blobstore.Digest) {
	rc, err := h.store.Get(r.Context(), d)
	if errors.Is(err, blobstore.ErrNotFound) {
		http.Error(w, "blob not found", http.StatusNotFound)
		return
	}
	if err != nil {
		h.log.Error("serve blob", "digest", d, "err", err)
		http.Error(w, "blob unavailable", http.StatusInternalServerError)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	if _, err := io.Copy(w, rc); err != nil {
		// Headers are gone; abort so the client sees a broken transfer, and it verifies
		// the digest anyway.
		h.log.Error("serve blob", "digest", d, "err", err)
		panic(http.ErrAbortHandler)
	}
}

func (h *handler) put(w http.ResponseWriter, r *http.Request, want blobstore.Digest) {
	body := io.Reader(r.Body)
	if want != "" {
		body = blobstore.VerifyingReader(body, want)
	}
	d, err := h.store.Put(r.Context(), body)
	if errors.Is(err, blobstore.ErrDigestMismatch) {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err != nil {
		h.log.Error("store blob", "err", err)
		http.Error(w, "blob not stored", http.StatusInternalServerError)
		return
	}
	w.Header().Set(DigestHeader, string(d))
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, string(d))
}

// Client downloads and uploads through signed URLs.
type Client struct {
	HTTP *http.Client
}

func (c Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// Download streams the blob at url into w, returning an error wrapping
// blobstore.ErrDigestMismatch when the content does not hash to want. The caller must
// discard what was written on error: nothing is trustworthy until this returns nil.
func (c Client) Download(ctx context.Context, rawURL string, headers map[string]string, want blobstore.Digest, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fmt.Errorf("download blob %s: %w", want, redact(err))
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("download blob %s: %w", want, redact(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download blob %s: %s: %s", want, resp.Status, snippet(resp.Body))
	}
	if _, err := io.Copy(w, blobstore.VerifyingReader(resp.Body, want)); err != nil {
		return fmt.Errorf("download blob %s: %w", want, err)
	}
	return nil
}

// Upload PUTs r's content to url and returns its digest, checked against the server's.
func (c Client) Upload(ctx context.Context, rawURL string, headers map[string]string, r io.Reader) (blobstore.Digest, error) {
	h := sha256.New()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, rawURL, io.TeeReader(r, h))
	if err != nil {
		return "", fmt.Errorf("upload blob: %w", redact(err))
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return "", fmt.Errorf("upload blob: %w", redact(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("upload blob: %s: %s", resp.Status, snippet(resp.Body))
	}
	got := blobstore.Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))
	if srv := resp.Header.Get(DigestHeader); srv != "" && srv != string(got) {
		return "", fmt.Errorf("upload blob: %w: sent %s, server stored %s", blobstore.ErrDigestMismatch, got, srv)
	}
	return got, nil
}

func snippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 512))
	return strings.TrimSpace(string(b))
}

// redact drops the query (the signature) from URL errors: signed URLs are credentials.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		// Cut rather than parse: a URL that failed to parse must lose its query too.
		u, _, _ := strings.Cut(ue.URL, "?")
		return &url.Error{Op: ue.Op, URL: u, Err: ue.Err}
	}
	return err
}
