package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the binaries the tests built (bosun, bosun-agent: tens of MB a run).
// Every test stops its directors and deletes its local VMs in its own cleanup, so nothing
// runs from them any more.
func TestMain(m *testing.M) {
	code := m.Run()
	if bosunBin != "" {
		os.RemoveAll(filepath.Dir(bosunBin))
	}
	os.Exit(code)
}
