package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/bosun-gitops/bosun/api"
)

func init() {
	register(&command{name: "login", summary: "check a token against a director and store both in your config file (0600) for the other verbs", run: runLogin})
	register(&command{name: "env", aliases: []string{"environment"}, summary: "show the director the CLI talks to: its name, version, your user and scopes, what it has wired in", run: runEnv})
	register(&command{name: "new-token", summary: "make a random API token and print the hash to configure the director with", run: runNewToken})
}

func runLogin(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "login", "URL")
	alias := fs.String("e", "", "alias to save the director as (default: \"default\"; also --environment)")
	fs.StringVar(alias, "environment", "", "alias to save the director as")
	token := fs.String("token", "", "the API token (default: $BOSUN_TOKEN, else read from standard input)")
	caFile := fs.String("ca-cert", "", "PEM file of the CA that signed the director's certificate")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("want the director's URL: bosun login https://director.example.com:25555")
	}
	url := strings.TrimRight(pos[0], "/")
	if !strings.Contains(url, "://") {
		url = "https://" + url
	}
	if *alias == "" {
		*alias = "default"
	}
	tok := *token
	if tok == "" {
		tok = os.Getenv("BOSUN_TOKEN")
	}
	if tok == "" {
		// A token on the command line lands in shell history; stdin keeps it out.
		fmt.Fprint(c.stderr, "Token: ")
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		tok = strings.TrimSpace(line)
		if tok == "" {
			if err != nil {
				return fmt.Errorf("no token: give --token, set BOSUN_TOKEN, or type it when asked")
			}
			return fmt.Errorf("no token: the line read was empty")
		}
	}
	var ca []byte
	if *caFile != "" {
		if ca, err = os.ReadFile(*caFile); err != nil {
			return fmt.Errorf("--ca-cert: %w", err)
		}
	}
	cl, err := api.NewClient(url, tok, api.ClientOptions{CACert: ca})
	if err != nil {
		return usageError("%v", err)
	}
	info, err := cl.Info(ctx)
	if err != nil {
		return remoteError(err)
	}
	if info.User == "" {
		return fmt.Errorf("the director at %s does not accept this token; nothing was saved", url)
	}
	cfg, path, err := loadUserConfig()
	if err != nil {
		return err
	}
	cfg.Environments[*alias] = userEnvironment{URL: url, Token: tok, CACert: string(ca)}
	cfg.Current = *alias
	if err := saveUserConfig(path, cfg); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.stdout, map[string]any{"environment": *alias, "url": url, "user": info.User, "scopes": info.Scopes, "config": path})
	}
	fmt.Fprintf(c.stdout, "Logged in to %s (%s) as %s, scopes %s.\nSaved as environment %q in %s.\n", url, info.Version, info.User, strings.Join(info.Scopes, ", "), *alias, path)
	return nil
}

func runNewToken(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "new-token", "")
	name := fs.String("name", "operator", "who the token speaks for (the user events record)")
	scopes := fs.String("scopes", api.ScopeRead, "comma-separated scopes: bosun.admin, bosun.read, bosun.teams.<team>.admin|read")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs("new-token", pos); err != nil {
		return err
	}
	tok, err := api.NewToken()
	if err != nil {
		return err
	}
	tc := api.TokenConfig{Name: *name, Hash: api.HashToken(tok), Scopes: strings.Split(*scopes, ",")}
	if err := (api.Config{Tokens: []api.TokenConfig{tc}}).Validate(); err != nil {
		return usageError("%v", err)
	}
	if *asJSON {
		return printJSON(c.stdout, map[string]any{"token": tok, "name": tc.Name, "hash": tc.Hash, "scopes": tc.Scopes})
	}
	fmt.Fprintf(c.stdout, "Token (give it to %s; it is not shown again):\n  %s\n\nAdd to the director's --api-config under tokens:\n  - name: %s\n    hash: %s\n    scopes: [%s]\n",
		tc.Name, tok, tc.Name, tc.Hash, strings.Join(tc.Scopes, ", "))
	return nil
}

func runEnv(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "env", "")
	rf := addRemoteFlags(fs, false)
	cl, err := remoteVerb(fs, rf, "env", args)
	if err != nil {
		return err
	}
	info, err := cl.Info(ctx)
	if err != nil {
		return remoteError(err)
	}
	if rf.json {
		return printJSON(c.stdout, map[string]any{"url": cl.URL(), "info": info})
	}
	user := info.User
	if user == "" {
		user = "(token not accepted: `bosun login` again)"
	}
	var have, missing []string
	for _, k := range sortedKeysOf(info.Features) {
		if info.Features[k] {
			have = append(have, k)
		} else {
			missing = append(missing, k)
		}
	}
	return printPairs(c.stdout, [][2]string{
		{"URL", cl.URL()},
		{"Name", info.Name},
		{"Version", info.Version},
		{"User", user},
		{"Scopes", dash(strings.Join(info.Scopes, ", "))},
		{"Features", dash(strings.Join(have, ", "))},
		{"Not wired", dash(strings.Join(missing, ", "))},
	})
}

func sortedKeysOf(m map[string]bool) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// printPairs writes name/value lines aligned, as bosh env prints them.
func printPairs(w io.Writer, pairs [][2]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, p := range pairs {
		fmt.Fprintf(tw, "%s\t%s\n", p[0], p[1])
	}
	return tw.Flush()
}
