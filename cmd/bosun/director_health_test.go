package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/cpitest"
	hm "github.com/bosun-gitops/bosun/health"
)

func TestDirectorHealthFlags(t *testing.T) {
	tests := []struct {
		args     []string
		inStderr string
	}{
		{[]string{"--agent-timeout", "10ms"}, "--agent-timeout 10ms: want at least 1s"},
		{[]string{"--meltdown-percent", "150"}, "--meltdown-percent 150: want more than 0 and at most 100"},
		{[]string{"--meltdown-min-down", "0"}, "--meltdown-min-down 0: want at least 1"},
		{[]string{"--agent-timeout", "20m"}, "--meltdown-window 10m0s: want at least --agent-timeout (20m0s)"},
		{[]string{"--health-webhook-url", "ftp://hooks.example/x?token=s3cret"}, "--health-webhook-url: webhook URL: want an http:// or https:// URL"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, e, code := runCLI(t, append([]string{"director", "--dev"}, tt.args...)...)
			if code != 2 || !strings.Contains(e, tt.inStderr) || strings.Contains(e, "s3cret") {
				t.Errorf("code %d (want 2)\nstdout: %s\nstderr: %s", code, o, e)
			}
		})
	}
	o, _, code := runCLI(t, "director", "--help")
	for _, flag := range []string{"-agent-timeout", "-meltdown-min-down", "-meltdown-percent", "-meltdown-window", "-health-webhook-url", "-no-health"} {
		if code != 0 || !strings.Contains(o, flag) {
			t.Errorf("--help lacks %s", flag)
		}
	}
}

func TestHealthFlagsConfig(t *testing.T) {
	var h healthFlags
	h.agentTimeout, h.analyzeInterval, h.meltdownMin, h.meltdownPercent, h.meltdownWindow = 30e9, 1e9, 3, 50, 600e9
	cfg, err := h.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Meltdown.Percent != 0.5 || cfg.Meltdown.MinDown != 3 || cfg.AgentTimeout != 30e9 {
		t.Errorf("config = %+v", cfg)
	}
}

// cpiCloud answers the cloud check's questions from a real CPI implementation (the fake
// CPI every CPI's conformance suite is modelled on).
func TestCPICloudAdapter(t *testing.T) {
	ctx := context.Background()
	f := cpitest.NewFake("fake")
	stem, err := f.CreateStemcell(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	vm, _, err := f.CreateVM(ctx, cpi.VMSpec{AgentID: "a1", Stemcell: stem})
	if err != nil {
		t.Fatal(err)
	}
	disk, err := f.CreateDisk(ctx, 1024, nil, vm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.AttachDisk(ctx, vm, disk); err != nil {
		t.Fatal(err)
	}
	c := cpiCloud{lookup: func(name string) (cpi.CPI, error) {
		if name != "fake" {
			return nil, fmt.Errorf("no CPI %q", name)
		}
		return f, nil
	}}
	if ok, err := c.HasVM(ctx, "fake", string(vm)); !ok || err != nil {
		t.Errorf("HasVM = %v, %v", ok, err)
	}
	if ok, err := c.HasVM(ctx, "fake", "vm-gone"); ok || err != nil {
		t.Errorf("HasVM(gone) = %v, %v", ok, err)
	}
	if ok, err := c.HasDisk(ctx, "fake", string(disk)); !ok || err != nil {
		t.Errorf("HasDisk = %v, %v", ok, err)
	}
	if got, err := c.AttachedDisks(ctx, "fake", string(vm)); err != nil || len(got) != 1 || got[0] != string(disk) {
		t.Errorf("AttachedDisks = %v, %v", got, err)
	}
	if _, err := c.HasVM(ctx, "other", string(vm)); err == nil {
		t.Error("unknown CPI answered")
	}
	// A CPI without get_disks: the scan skips the attachment check.
	noLister := cpiCloud{lookup: func(string) (cpi.CPI, error) { return struct{ cpi.CPI }{f}, nil }}
	if _, err := noLister.AttachedDisks(ctx, "", string(vm)); !errors.Is(err, hm.ErrUnsupported) {
		t.Errorf("AttachedDisks without get_disks = %v, want ErrUnsupported", err)
	}
	d := &director{log: slog.New(slog.DiscardHandler)}
	if s := d.cloudChecker(c.lookup); s.Agents != nil || s.Cloud == nil {
		t.Errorf("scanner without a monitor = %+v", s)
	}
}

func TestSetResurrectionSections(t *testing.T) {
	m, err := hm.New(hm.Config{}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &director{monitor: m}
	err = d.setResurrectionSections(map[string]any{"persistent_disks": true},
		map[string]map[string]any{"web": {"exclude": map[string]any{"instance_groups": []any{"db"}}}, "api": nil})
	if err != nil {
		t.Fatal(err)
	}
	if r := m.RulesFor("api"); !r.PersistentDisks {
		t.Errorf("api (no section) = %+v, want the top-level rules", r)
	}
	if ok, _ := m.RulesFor("web").Allows("db", false); ok {
		t.Error("web's own rules not applied")
	}
	err = d.setResurrectionSections(nil, map[string]map[string]any{"web": {"enabled": "sometimes"}})
	if err == nil || !strings.Contains(err.Error(), "bosun.yml: deployments.web.resurrection") {
		t.Errorf("bad section: %v", err)
	}
	if !m.RulesFor("api").PersistentDisks {
		t.Error("a bad section replaced the rules in force")
	}
	if err := (&director{}).setResurrectionSections(nil, nil); err != nil {
		t.Errorf("without a monitor: %v", err)
	}
}
