package release

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/blobstore"
)

// memStore is a hand-written blobstore for unit tests.
type memStore struct {
	blobs map[blobstore.Digest][]byte
	fail  bool
}

func (m *memStore) Put(_ context.Context, r io.Reader) (blobstore.Digest, error) {
	if m.fail {
		return "", errors.New("disk full")
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	d := blobstore.DigestOf(b)
	m.blobs[d] = b
	return d, nil
}

func (m *memStore) Get(_ context.Context, d blobstore.Digest) (io.ReadCloser, error) {
	b, ok := m.blobs[d]
	if !ok {
		return nil, blobstore.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *memStore) Exists(_ context.Context, d blobstore.Digest) (bool, error) {
	_, ok := m.blobs[d]
	return ok, nil
}

func (m *memStore) Delete(_ context.Context, d blobstore.Digest) error {
	delete(m.blobs, d)
	return nil
}

func TestPutBlobs(t *testing.T) {
	r, err := Build(context.Background(), "../repo-template/releases/demo")
	if err != nil {
		t.Fatal(err)
	}
	store := &memStore{blobs: map[blobstore.Digest][]byte{}}
	b, err := r.PutBlobs(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(store.blobs[b.Jobs["web"]], r.Job("web").Archive) || !bytes.Equal(store.blobs[b.Packages["greeter"]], r.Package("greeter").Archive) {
		t.Error("stored blobs are not the release's archives")
	}
	store.fail = true
	if _, err := r.PutBlobs(context.Background(), store); err == nil || !strings.Contains(err.Error(), `job "web": disk full`) {
		t.Errorf("error = %v", err)
	}
}
