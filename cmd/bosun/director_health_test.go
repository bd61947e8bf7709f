package main

import (
	"strings"
	"testing"
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
