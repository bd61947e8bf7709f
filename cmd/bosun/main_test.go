package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), &cli{stdout: &o, stderr: &e, stdin: strings.NewReader("")}, args)
	return o.String(), e.String(), code
}

func TestDispatch(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{args: nil, code: 0, inStdout: "Verbs:"},
		{args: []string{"--help"}, code: 0, inStdout: "version"},
		{args: []string{"version"}, code: 0, inStdout: "bosun dev"},
		{args: []string{"version", "--json"}, code: 0, inStdout: `"version":"dev"`},
		{args: []string{"version", "--help"}, code: 0, inStdout: "-json"},
		{args: []string{"version", "--bogus"}, code: 2, inStderr: "flag provided but not defined: -bogus"},
		{args: []string{"frobnicate"}, code: 2, inStderr: `unknown verb "frobnicate"`},
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
