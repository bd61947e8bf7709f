package status

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkWrite is one outcome committed and pushed to a bare file:// remote: fetch,
// build the tree, commit, push.
func BenchmarkWrite(b *testing.B) {
	remote, _ := newRemoteB(b)
	w, err := Open(Config{Remote: sourceRemote("file://" + remote), CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	ctx := context.Background()
	i := 0
	for b.Loop() {
		o := demoOutcome()
		o.Task = fmt.Sprint(i)
		i++
		if sha, err := w.Write(ctx, o); err != nil || sha == "" {
			b.Fatalf("Write = %q, %v", sha, err)
		}
	}
}
