// Package blobstore is the contract for content-addressed blob storage: blobs are put,
// read, checked and deleted by the sha256 digest of their content. It imports only the
// standard library; blobstore/local and others implement it.
package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrNotFound is returned by Get and Delete implementations for a digest the store does
// not hold. Delete of a missing blob is not an error: callers may retry deletes freely.
var ErrNotFound = errors.New("blob not found")

// ErrDigestMismatch is returned when content does not hash to the digest it was named by.
var ErrDigestMismatch = errors.New("blob digest mismatch")

// Digest names a blob: "sha256:" followed by 64 lower-case hex characters.
type Digest string

// ParseDigest validates s as a Digest.
func ParseDigest(s string) (Digest, error) {
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hexPart) != sha256.Size*2 {
		return "", fmt.Errorf("parse digest %q: want sha256:<64 hex characters>", s)
	}
	if _, err := hex.DecodeString(hexPart); err != nil || strings.ToLower(hexPart) != hexPart {
		return "", fmt.Errorf("parse digest %q: want lower-case hex", s)
	}
	return Digest(s), nil
}

// DigestOf returns the digest of b.
func DigestOf(b []byte) Digest {
	sum := sha256.Sum256(b)
	return Digest("sha256:" + hex.EncodeToString(sum[:]))
}

// Hex returns the digest's hex part, for file names and URLs.
func (d Digest) Hex() string { return strings.TrimPrefix(string(d), "sha256:") }

// Store is implemented by every blobstore.
type Store interface {
	// Put stores the content read from r and returns its digest. Storing content that is
	// already present is cheap and not an error.
	Put(ctx context.Context, r io.Reader) (Digest, error)
	// Get opens the blob; the reader verifies the digest as it is read and returns
	// ErrDigestMismatch at EOF if the stored bytes were altered.
	Get(ctx context.Context, d Digest) (io.ReadCloser, error)
	// Exists reports whether the blob is present.
	Exists(ctx context.Context, d Digest) (bool, error)
	// Delete removes the blob; deleting a missing blob succeeds.
	Delete(ctx context.Context, d Digest) error
}

// VerifyingReader wraps r so that reaching EOF checks the content against want and
// returns ErrDigestMismatch instead of io.EOF when they differ.
func VerifyingReader(r io.Reader, want Digest) io.Reader {
	return &verifier{r: r, want: want, h: sha256.New()}
}

type verifier struct {
	r    io.Reader
	want Digest
	h    interface {
		io.Writer
		Sum([]byte) []byte
	}
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := Digest("sha256:" + hex.EncodeToString(v.h.Sum(nil))); got != v.want {
			return n, fmt.Errorf("%w: want %s, got %s", ErrDigestMismatch, v.want, got)
		}
	}
	return n, err
}
