package release

import (
	"bytes"
	"context"
	"fmt"

	"github.com/bosun-gitops/bosun/blobstore"
)

// Blobs are the blobstore digests of a release's archives, by job and package name: the
// blobstore_id values of apply specs and compile_package calls.
type Blobs struct {
	Jobs     map[string]blobstore.Digest `json:"jobs"`
	Packages map[string]blobstore.Digest `json:"packages"`
}

// PutBlobs stores every job and source package archive of r in store. Content already
// present costs nothing, so calling it again for the same release is cheap.
func (r *Release) PutBlobs(ctx context.Context, store blobstore.Store) (*Blobs, error) {
	b := &Blobs{Jobs: map[string]blobstore.Digest{}, Packages: map[string]blobstore.Digest{}}
	for _, j := range r.Jobs {
		d, err := store.Put(ctx, bytes.NewReader(j.Archive))
		if err != nil {
			return nil, fmt.Errorf("store release %s/%s job %q: %w", r.Manifest.Name, r.Manifest.Version, j.Spec.Name, err)
		}
		b.Jobs[j.Spec.Name] = d
	}
	for _, p := range r.Packages {
		d, err := store.Put(ctx, bytes.NewReader(p.Archive))
		if err != nil {
			return nil, fmt.Errorf("store release %s/%s package %q: %w", r.Manifest.Name, r.Manifest.Version, p.Name, err)
		}
		b.Packages[p.Name] = d
	}
	return b, nil
}
