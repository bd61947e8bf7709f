package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCopyTreeFailures: a copy that cannot be made says which path stopped it.
func TestCopyTreeFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, from, to string) (string, string)
		want  []string // substrings of the error
	}{
		{"missing source", func(t *testing.T, from, to string) (string, string) {
			return filepath.Join(from, "gone"), to
		}, []string{filepath.Join("gone")}},
		{"target inside source", func(t *testing.T, from, to string) (string, string) {
			os.Mkdir(filepath.Join(from, "inner"), 0o755)
			return from, filepath.Join(from, "inner")
		}, []string{"one lies inside the other"}},
		{"device file", func(t *testing.T, from, to string) (string, string) {
			if os.Geteuid() != 0 {
				t.Skip("making a device node needs root")
			}
			os.MkdirAll(filepath.Join(from, "dev"), 0o755)
			if err := syscall.Mknod(filepath.Join(from, "dev", "null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
				t.Skip("mknod:", err)
			}
			return from, to
		}, []string{filepath.Join("dev", "null"), "cannot copy a device"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to := tt.setup(t, t.TempDir(), t.TempDir())
			err := copyTree(context.Background(), from, to)
			if err == nil {
				t.Fatal("copy succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestCopyTreeSkipsSockets: a socket means nothing without its server; the rest is copied.
func TestCopyTreeSkipsSockets(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	l, err := net.Listen("unix", filepath.Join(from, "sock"))
	if err != nil {
		t.Skip("unix socket:", err)
	}
	defer l.Close()
	os.WriteFile(filepath.Join(from, "data"), []byte("x"), 0o644)
	if err := copyTree(context.Background(), from, to); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(to, "sock")); !os.IsNotExist(err) {
		t.Errorf("socket copied: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(to, "data")); string(b) != "x" {
		t.Errorf("data = %q", b)
	}
}
