package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The director's --cpi picks what VMs are made with; an external BOSH CPI executable is
// run as BOSH's director runs a CPI job's bin/cpi.
func TestDirectorCPI(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "cpi")
	// Answers every request as a v2 CPI's info would.
	body := "#!/bin/sh\ncat >/dev/null\necho '{\"result\":{\"stemcell_formats\":[\"fake-raw\"],\"api_version\":2},\"error\":null,\"log\":\"\"}'\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cpi, config string
		wantErr           string
		wantFormats       []string
	}{
		{name: "external executable", cpi: "external:" + script, wantFormats: []string{"fake-raw"}},
		{name: "external with a config", cpi: "external:" + script, config: plain, wantErr: "--cpi-config is for built-in CPIs"},
		{name: "external not executable", cpi: "external:" + plain, wantErr: "not an executable file"},
		{name: "external missing", cpi: "external:" + filepath.Join(dir, "nope"), wantErr: "not an executable file"},
		{name: "unknown", cpi: "vsphere", wantErr: `no such CPI`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &director{log: slog.New(slog.DiscardHandler), dataDir: t.TempDir(), cpiFlags: cpiFlags{name: tt.cpi, config: tt.config}}
			c, err := d.directorCPI()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			info, err := c.Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantFormats, info.StemcellFormats); diff != "" {
				t.Errorf("stemcell formats (-want +got):\n%s", diff)
			}
		})
	}
}
