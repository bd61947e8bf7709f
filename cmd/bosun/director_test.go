package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckRepo(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		repo, wantErr string
	}{
		{"", ""},
		{dir, ""},
		{"https://git.example.com/fleet.git", ""},
		{"file:///srv/fleet.git", ""},
		{"git@github.com:acme/fleet.git", ""},
		{filepath.Join(dir, "missing"), "no such file or directory"},
		{file, "is a file; want a repository directory or a git URL"},
		{"https://user:hunter2@/fleet.git", "is not a URL git can fetch"},
	}
	for _, tt := range tests {
		t.Run(tt.repo, func(t *testing.T) {
			err := checkRepo(tt.repo)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("password in error: %v", err)
			}
		})
	}
}

func TestNATSSecretMadeOnceAndPrivate(t *testing.T) {
	dir := t.TempDir()
	first, err := natsSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "nats.secret"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode %o, want 600", fi.Mode().Perm())
	}
	again, err := natsSecret(dir)
	if err != nil || string(again) != string(first) || len(first) != 64 {
		t.Errorf("second load = %q, %v; want the first secret %q", again, err, first)
	}
	if err := os.WriteFile(filepath.Join(dir, "nats.secret"), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := natsSecret(dir); err == nil || !strings.Contains(err.Error(), "shorter than 32 characters") {
		t.Errorf("short secret: %v", err)
	}
}

func TestDirectorUsage(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{args: []string{"director", "--help"}, code: 0, inStdout: "--nats-listen"},
		{args: []string{"director", "--workers", "0", "--dev"}, code: 2, inStderr: "--workers 0: at least one worker is needed"},
		{args: []string{"director", "--dev", "extra"}, code: 2, inStderr: `unexpected argument "extra"`},
		{args: []string{"director", "--dev", "--repo", "/nonexistent/fleet"}, code: 2, inStderr: "--repo /nonexistent/fleet: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, e, code := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(o, tt.inStdout) || !strings.Contains(e, tt.inStderr) {
				t.Errorf("code %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, o, e)
			}
		})
	}
}
