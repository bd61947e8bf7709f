package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/release"
)

const demoRelease = "../../repo-template/releases/demo"

func TestCreateReleaseIsByteIdentical(t *testing.T) {
	dir := t.TempDir()
	var tarballs [][]byte
	for _, name := range []string{"a.tgz", "b.tgz"} {
		out := filepath.Join(dir, name)
		o, e, code := runCLI(t, "create-release", demoRelease, "--tarball", out)
		if code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, o, e)
		}
		if !strings.Contains(o, "Release demo/"+release.DevVersionPrefix) || !strings.Contains(o, "greeter") {
			t.Errorf("summary lacks the release or its package:\n%s", o)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		tarballs = append(tarballs, b)
	}
	if !bytes.Equal(tarballs[0], tarballs[1]) {
		t.Fatal("create-release twice on the same tree wrote different tarballs")
	}
	r, err := release.ReadTarball(context.Background(), bytes.NewReader(tarballs[0]))
	if err != nil {
		t.Fatalf("the tarball does not read back: %v", err)
	}
	if r.Job("web") == nil || r.Package("greeter") == nil {
		t.Error("the tarball lacks the web job or the greeter package")
	}
}

func TestCreateReleaseFlags(t *testing.T) {
	o, e, code := runCLI(t, "create-release", demoRelease, "--json", "--name", "other", "--version", "1.2.3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e)
	}
	var mf release.Manifest
	if err := json.Unmarshal([]byte(o), &mf); err != nil {
		t.Fatalf("--json output is not a release manifest: %v\n%s", err, o)
	}
	if mf.Name != "other" || mf.Version != "1.2.3" || len(mf.Jobs) != 1 || len(mf.Packages) != 1 {
		t.Errorf("manifest: %+v", mf)
	}

	tests := []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"create-release"}, 2, "want exactly one release directory, got 0 arguments"},
		{[]string{"create-release", filepath.Join(t.TempDir(), "nope")}, 1, "no such file or directory"},
		{[]string{"create-release", demoRelease, "--tarball", filepath.Join(t.TempDir(), "no", "dir", "r.tgz")}, 1, "write release tarball"},
	}
	for _, tt := range tests {
		_, e, code := runCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(e, tt.inStderr) {
			t.Errorf("%v: exit %d (want %d), stderr: %s", tt.args, code, tt.code, e)
		}
	}
}
