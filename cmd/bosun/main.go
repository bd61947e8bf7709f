// Command bosun is the Bosun director daemon and its command-line interface. Every verb
// lives in its own file and registers itself with register; this file only dispatches.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// command is one CLI verb.
type command struct {
	name    string
	aliases []string
	summary string // one line for `bosun --help`
	// run parses args itself (a verb owns its flags) and does the work.
	run func(ctx context.Context, cli *cli, args []string) error
}

// cli is what every verb is handed: where to write and how it was invoked.
type cli struct {
	stdout io.Writer
	stderr io.Writer
	stdin  io.Reader
}

var commands = map[string]*command{}

func register(c *command) {
	for _, n := range append([]string{c.name}, c.aliases...) {
		if _, dup := commands[n]; dup {
			panic("bosun: verb registered twice: " + n)
		}
		commands[n] = c
	}
}

// errUsage marks an error caused by how the verb was called; it exits 2.
var errUsage = errors.New("usage")

// usageError returns an error that prints as msg and exits with status 2.
func usageError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &cli{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, c *cli, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 {
			return run(ctx, c, []string{args[1], "--help"})
		}
		printHelp(c.stdout)
		return 0
	}
	if args[0] == "--version" || args[0] == "-v" {
		args[0] = "version"
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(c.stderr, "bosun: unknown verb %q; `bosun --help` lists them\n", args[0])
		return 2
	}
	err := cmd.run(ctx, c, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(c.stderr, "bosun %s: %s\n", cmd.name, strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		return 2
	default:
		fmt.Fprintf(c.stderr, "bosun %s: %v\n", cmd.name, err)
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return 1
	}
}

func printHelp(w io.Writer) {
	fmt.Fprintf(w, "bosun %s — BOSH deployments reconciled from git\n\nUsage: bosun <verb> [flags] [args]\n\nVerbs:\n", version)
	names := make([]string, 0, len(commands))
	for n, c := range commands {
		if n == c.name {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		alias := ""
		if len(c.aliases) > 0 {
			alias = " (alias " + strings.Join(c.aliases, ", ") + ")"
		}
		fmt.Fprintf(w, "  %-16s %s%s\n", n, c.summary, alias)
	}
	fmt.Fprintf(w, "\nRun `bosun <verb> --help` for a verb's flags.\n")
}

// newFlagSet returns a FlagSet for verb whose errors come back to the caller (as usage
// errors) instead of exiting, and whose --help prints to the CLI's stdout.
func newFlagSet(c *cli, verb, argsUsage string) *flag.FlagSet {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(c.stdout)
	fs.Usage = func() {
		fmt.Fprintf(c.stdout, "Usage: bosun %s [flags] %s\n\n%s\n\nFlags:\n", verb, argsUsage, commands[verb].summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning a bad flag into a usage error. Flags may follow
// positional arguments, as operators type them (`bosun int m.yml -o ops.yml`).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	usage, out := fs.Usage, fs.Output()
	// Parse reports errors through Usage and Output; silence both so that a bad flag
	// becomes one line from run, and --help prints the usage once.
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	defer func() { fs.Usage = usage; fs.SetOutput(out) }()
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			usage()
			return nil, flag.ErrHelp
		}
		if err != nil {
			return nil, usageError("%v (see `bosun %s --help`)", err, fs.Name())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
		if rest[0] == "--" {
			positional = append(positional[:len(positional)-1], args...)
			return positional, nil
		}
	}
}
