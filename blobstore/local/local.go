// Package local stores blobs as files named by their sha256 digest under one directory:
// writes go to a temporary file that is renamed into place, so readers never see a
// partial blob and concurrent writers of the same content are harmless; reads verify the
// digest as they stream.
package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/bosun-gitops/bosun/blobstore"
)

// Store is a filesystem blobstore.
type Store struct{ dir string }

// Open creates dir if needed and returns a store over it.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("open blobstore %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

// Blobs fan out over 256 directories so that no directory grows unbounded.
func (s *Store) path(d blobstore.Digest) string {
	h := d.Hex()
	return filepath.Join(s.dir, h[:2], h)
}

// Put stores r's content and returns its digest.
func (s *Store) Put(ctx context.Context, r io.Reader) (blobstore.Digest, error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "put-*")
	if err != nil {
		return "", fmt.Errorf("put blob: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), ctxReader{ctx, r})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("put blob: %w", err)
	}
	d := blobstore.Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))
	dst := s.path(d)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("put blob %s: %w", d, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("put blob %s: %w", d, err)
	}
	return d, nil
}

// Get opens the blob; the reader fails with blobstore.ErrDigestMismatch at EOF if the
// file no longer hashes to d.
func (s *Store) Get(ctx context.Context, d blobstore.Digest) (io.ReadCloser, error) {
	if _, err := blobstore.ParseDigest(string(d)); err != nil {
		return nil, fmt.Errorf("get blob: %w", err)
	}
	f, err := os.Open(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get blob %s: %w", d, blobstore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get blob %s: %w", d, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{blobstore.VerifyingReader(ctxReader{ctx, f}, d), f}, nil
}

// Exists reports whether the blob is stored.
func (s *Store) Exists(ctx context.Context, d blobstore.Digest) (bool, error) {
	if _, err := blobstore.ParseDigest(string(d)); err != nil {
		return false, fmt.Errorf("check blob: %w", err)
	}
	_, err := os.Stat(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check blob %s: %w", d, err)
	}
	return true, nil
}

// Delete removes the blob; a missing blob is not an error.
func (s *Store) Delete(ctx context.Context, d blobstore.Digest) error {
	if _, err := blobstore.ParseDigest(string(d)); err != nil {
		return fmt.Errorf("delete blob: %w", err)
	}
	if err := os.Remove(s.path(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
