package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoLargeTrackedFiles keeps built binaries and bulky data out of git: a committed binary
// once made a session's whole work too big to land. Test data that a test can make, it makes.
func TestNoLargeTrackedFiles(t *testing.T) {
	out, err := exec.Command("git", "-C", "..", "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	const limit = 512 << 10
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		fi, err := os.Lstat(filepath.Join("..", name))
		if err != nil {
			continue // deleted in the work tree
		}
		if fi.Size() > limit {
			t.Errorf("%s is tracked and %d KiB (limit %d KiB): build it or generate it in the test instead", name, fi.Size()>>10, limit>>10)
		}
	}
}
