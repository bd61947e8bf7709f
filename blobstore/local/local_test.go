package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/bosun-gitops/bosun/blobstore"
)

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("hello blob")
	d, err := s.Put(ctx, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if d != blobstore.DigestOf(content) {
		t.Fatalf("digest = %s, want %s", d, blobstore.DigestOf(content))
	}
	if ok, err := s.Exists(ctx, d); err != nil || !ok {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
	rc, err := s.Get(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, d); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.Get(ctx, d); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Get after delete = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "sha256:nothex"); err == nil {
		t.Fatal("Get of a malformed digest succeeded")
	}
}

func TestTamperedBlobFailsOnRead(t *testing.T) {
	ctx := context.Background()
	s, _ := Open(t.TempDir())
	d, _ := s.Put(ctx, bytes.NewReader([]byte("original")))
	if err := os.WriteFile(s.path(d), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, blobstore.ErrDigestMismatch) {
		t.Fatalf("read of tampered blob = %v, want ErrDigestMismatch", err)
	}
}

func TestConcurrentPuts(t *testing.T) {
	ctx := context.Background()
	s, _ := Open(t.TempDir())
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half the writers race on the same content.
			_, err := s.Put(ctx, bytes.NewReader([]byte(fmt.Sprint(i%2, bytes.Repeat([]byte("x"), 1<<16)))))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(s.dir + "/tmp")
	if len(entries) != 0 {
		t.Fatalf("%d temporary files left behind", len(entries))
	}
}
