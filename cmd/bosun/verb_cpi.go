package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/external"
	"github.com/bosun-gitops/bosun/cpi/local"
)

func init() {
	register(&command{name: "cpi", summary: "serve a built-in CPI as a BOSH CPI executable (one JSON request on stdin)", run: runCPI})
	registerCPI("local", builtinCPI{
		summary: "VMs are bosun-agent processes on this machine",
		flags:   localCPIFlags,
	})
}

// builtinCPI is a CPI `bosun cpi serve NAME` can expose. flags registers the CPI's
// flags and returns the constructor to call once they are parsed; it must do no I/O
// that `info` would wait for.
type builtinCPI struct {
	summary string
	flags   func(fs *flag.FlagSet) func(log *slog.Logger) (cpi.CPI, error)
}

var builtinCPIs = map[string]builtinCPI{}

// registerCPI adds a built-in CPI; each lives in its own verb_cpi_<name>.go.
func registerCPI(name string, b builtinCPI) {
	if _, dup := builtinCPIs[name]; dup {
		panic("bosun: CPI registered twice: " + name)
	}
	builtinCPIs[name] = b
}

func cpiNames() string { return strings.Join(slices.Sorted(maps.Keys(builtinCPIs)), ", ") }

func runCPI(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" {
		fmt.Fprintf(c.stdout, "Usage: bosun cpi serve NAME [flags]\n\n%s\n\nBuilt-in CPIs: %s.\nRun `bosun cpi serve NAME --help` for a CPI's flags.\n", commands["cpi"].summary, cpiNames())
		if len(args) == 0 {
			return usageError("missing subcommand (want `serve NAME`)")
		}
		return flag.ErrHelp
	}
	if args[0] != "serve" {
		return usageError("unknown subcommand %q (want `serve NAME`)", args[0])
	}
	if len(args) < 2 || strings.HasPrefix(args[1], "-") {
		return usageError("serve needs the CPI's name first (one of %s)", cpiNames())
	}
	b, ok := builtinCPIs[args[1]]
	if !ok {
		return usageError("no built-in CPI named %q (there are: %s)", args[1], cpiNames())
	}
	fs := newFlagSet(c, "cpi", "serve "+args[1])
	// parseFlags discards the FlagSet's output and calls Usage twice on --help;
	// print once, with the flags.
	printed := false
	fs.Usage = func() {
		if printed {
			return
		}
		printed = true
		fmt.Fprintf(c.stdout, "Usage: bosun cpi serve %s [flags]\n\nAnswer one BOSH CPI request from stdin with the %s CPI (%s).\n\nFlags:\n", args[1], args[1], b.summary)
		fs.SetOutput(c.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	build := b.flags(fs)
	rest, err := parseFlags(fs, args[2:])
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError("unexpected arguments %q", rest)
	}
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	impl, err := build(log)
	if err != nil {
		return err
	}
	return external.Serve(ctx, impl, c.stdin, c.stdout, log)
}

func localCPIFlags(fs *flag.FlagSet) func(*slog.Logger) (cpi.CPI, error) {
	config := fs.String("config", "", "JSON file in the local CPI's config shape (data_dir, agent_path, dynamic_range); flags override it")
	dir := fs.String("data-dir", "", "where stemcells, VMs and disks live (default "+defaultLocalDir()+")")
	agent := fs.String("agent", "", "the bosun-agent executable (default: next to bosun, else on PATH)")
	dynamic := fs.String("dynamic-range", "", "127.0.0.0/8 prefix dynamic networks take addresses from (default "+local.DefaultDynamicRange+")")
	return func(log *slog.Logger) (cpi.CPI, error) {
		var cfg local.Config
		if *config != "" {
			b, err := os.ReadFile(*config)
			if err != nil {
				return nil, fmt.Errorf("read CPI config: %w", err)
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&cfg); err != nil {
				return nil, fmt.Errorf("CPI config %s: %w", *config, err)
			}
		}
		for _, f := range []struct {
			flag, def string
			to        *string
		}{
			{*dir, defaultLocalDir(), &cfg.Dir},
			{*agent, defaultAgentPath(), &cfg.AgentPath},
			{*dynamic, "", &cfg.DynamicRange},
		} {
			if f.flag != "" {
				*f.to = f.flag
			} else if *f.to == "" {
				*f.to = f.def
			}
		}
		return local.New(cfg, log)
	}
}

// defaultLocalDir is where the local CPI keeps its VMs when not told: the user's
// state directory, as the VMs outlive any one call.
func defaultLocalDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "bosun", "cpi-local")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "bosun", "cpi-local")
	}
	return filepath.Join(os.TempDir(), "bosun-cpi-local")
}

// defaultAgentPath prefers the bosun-agent shipped beside this binary.
func defaultAgentPath() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "bosun-agent")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("bosun-agent"); err == nil {
		return p
	}
	return "bosun-agent"
}
