package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/bosun-gitops/bosun/state/postgres/pgtest"
)

const (
	cliAdminToken = "bosun_cli_admin_token_for_tests_000000000"
	cliReadToken  = "bosun_cli_read_token_for_tests_0000000000"
)

type cliEnv struct {
	store *postgres.Store
	url   string
	web   []state.Instance
}

type tgzLogs map[string]string // file → content

func (l tgzLogs) FetchLogs(ctx context.Context, inst state.Instance, w io.Writer) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	for name, body := range l {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, body); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

type cliProber struct{}

func (cliProber) Probe(ctx context.Context, inst state.Instance) (api.Probe, error) {
	if inst.Index == 2 {
		return api.Probe{}, fmt.Errorf("agent %s did not answer in time", inst.AgentID)
	}
	return api.Probe{JobState: "running", Processes: []api.Process{{Name: "nginx", State: "running"}, {Name: "exporter", State: "running"}},
		Vitals: &api.Vitals{Load: []string{"0.01", "0.02", "0.03"}, CPUUser: "1.5", MemPercent: "20", UptimeSecs: 3725, Disks: map[string]string{"system": "40"}}}, nil
}

// newCLIEnv serves an API on a fresh database, logs the CLI in to it with the admin
// token (through BOSUN_CONFIG in a temp dir) and seeds deployments web and db.
func newCLIEnv(t *testing.T, logs api.LogFetcher) *cliEnv {
	t.Helper()
	return newCLIEnvWith(t, api.Options{Logs: logs}, nil)
}

// newCLIEnvWith is newCLIEnv serving opts (its store, auth and log are filled in);
// checker, when not nil, makes the API's cloud checker once the store is open.
func newCLIEnvWith(t *testing.T, opts api.Options, checker func(*postgres.Store) api.CloudChecker) *cliEnv {
	t.Helper()
	ctx := context.Background()
	store, err := postgres.Open(ctx, pgtest.NewDatabase(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	auth, err := api.NewAuth(api.Config{Tokens: []api.TokenConfig{
		{Name: "alice", Hash: api.HashToken(cliAdminToken), Scopes: []string{api.ScopeAdmin}},
		{Name: "auditor", Hash: api.HashToken(cliReadToken), Scopes: []string{api.ScopeRead}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	opts.Store, opts.Auth, opts.Log, opts.Version, opts.Prober, opts.FollowPoll = store, auth, slog.New(slog.DiscardHandler), "test", cliProber{}, 20*time.Millisecond
	if checker != nil {
		opts.Checker = checker(store)
	}
	srv, err := api.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	t.Setenv("BOSUN_CONFIG", filepath.Join(t.TempDir(), "bosun", "config.json"))
	t.Setenv("BOSUN_ENVIRONMENT", "")
	t.Setenv("BOSUN_TOKEN", "")
	t.Setenv("BOSUN_DEPLOYMENT", "")
	if o, e, code := runCLI(t, "login", hs.URL, "--token", cliAdminToken); code != 0 {
		t.Fatalf("login: %d\n%s%s", code, o, e)
	}
	env := &cliEnv{store: store, url: hs.URL}
	manifest := []byte("name: web\nreleases:\n- {name: nginx, version: \"1.2\"}\nstemcells:\n- {alias: default, os: ubuntu-noble, version: \"1.5\"}\n")
	if err := store.PutDeployment(ctx, state.Deployment{Name: "web", Revision: "0123456789abcdef", Manifest: manifest}); err != nil {
		t.Fatal(err)
	}
	if err := store.PutDeployment(ctx, state.Deployment{Name: "db"}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		in, err := store.PutInstance(ctx, state.Instance{Deployment: "web", Group: "web", Index: i, AZ: "z1", Bootstrap: i == 0,
			VMCID: fmt.Sprintf("vm-%d", i), AgentID: fmt.Sprintf("agent-%d", i), IPs: []string{fmt.Sprintf("10.0.0.%d", 5+i)}})
		if err != nil {
			t.Fatal(err)
		}
		env.web = append(env.web, in)
		if err := store.PutVM(ctx, state.VM{CID: in.VMCID, Deployment: "web", InstanceID: in.ID, AgentID: in.AgentID, IPs: in.IPs, CPI: "local"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.PutDisk(ctx, state.Disk{CID: "disk-0", Deployment: "web", InstanceID: env.web[0].ID, SizeMB: 1024, Active: true, CPI: "local"}); err != nil {
		t.Fatal(err)
	}
	return env
}

var (
	timeRE = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z+\-0-9]+`)
	uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
)

var spacesRE = regexp.MustCompile(`  +`)

// normal hides what changes between runs: times and instance ids.
func normal(s string) string {
	return uuidRE.ReplaceAllString(timeRE.ReplaceAllString(s, "<time>"), "<uuid>")
}

// columns is normal with column padding squeezed to two spaces: times and ids are
// wider than their placeholders, so the tables' padding differs from the golden text.
func columns(s string) string { return spacesRE.ReplaceAllString(normal(s), "  ") }

func TestLoginStoresPrivately(t *testing.T) {
	env := newCLIEnv(t, nil)
	path := os.Getenv("BOSUN_CONFIG")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %o, want 600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), cliAdminToken) || !strings.Contains(string(b), env.url) {
		t.Errorf("config lacks the login:\n%s", b)
	}
	o, e, code := runCLI(t, "env")
	if code != 0 || !strings.Contains(o, "alice") || !strings.Contains(o, "bosun.admin") || !strings.Contains(o, "ps") {
		t.Errorf("env: %d\n%s%s", code, o, e)
	}
	// A refused token is not saved, and says so in one line.
	o, e, code = runCLI(t, "login", env.url, "--token", "bosun_wrong", "-e", "other")
	if code != 1 || !strings.Contains(e, "nothing was saved") || strings.Count(e, "\n") != 1 {
		t.Errorf("login with a wrong token: %d\n%s%s", code, o, e)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(b, after) {
		t.Error("a refused login changed the config")
	}
	// A token typed on stdin, for a second alias.
	var out, errb bytes.Buffer
	code = run(context.Background(), &cli{stdout: &out, stderr: &errb, stdin: strings.NewReader(cliReadToken + "\n")}, []string{"login", env.url, "-e", "ro"})
	if code != 0 || !strings.Contains(out.String(), "as auditor") {
		t.Errorf("login from stdin: %d\n%s%s", code, out.String(), errb.String())
	}
	if _, e, code := runCLI(t, "recreate", "-d", "web", "web/0"); code != 1 || !strings.Contains(e, "token auditor may not recreate instances of web") {
		t.Errorf("recreate with a read token: %d %s", code, e)
	}
	if o, e, code := runCLI(t, "deployments", "-e", "default"); code != 0 || !strings.Contains(o, "web") {
		t.Errorf("deployments -e default: %d %s%s", code, o, e)
	}
	if _, e, code := runCLI(t, "deployments", "-e", "staging"); code != 1 || !strings.Contains(e, `no director "staging"`) || !strings.Contains(e, "known: default, ro") {
		t.Errorf("unknown environment: %d %s", code, e)
	}
}

func TestReadVerbsText(t *testing.T) {
	env := newCLIEnv(t, nil)
	ctx := context.Background()
	if _, err := env.store.AddEvent(ctx, state.Event{User: "alice", Action: "stop", ObjectType: "instance", ObjectName: "web/x", Deployment: "web", Instance: "web/" + env.web[1].ID, Context: map[string]any{"hard": true}}); err != nil {
		t.Fatal(err)
	}
	if err := env.store.RecordRevision(ctx, state.Revision{SHA: "abcdef0123456789", Author: "dev <dev@example.com>", Message: "web: 4 instances\n\nbody", Verdict: state.RevisionRejected, PolicyMessages: []string{"web must keep 3 instances"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"deployments"}, `
Name  Release(s)  Stemcell(s)       Instances  Revision    Suspended  Team(s)
db    -           -                 0          -           -          -
web   nginx/1.2   ubuntu-noble/1.5  3          0123456789  -          -

2 deployments
`},
		{[]string{"instances", "-d", "web"}, `
Deployment 'web'

Instance    State    AZ  IPs
web/<uuid>  started  z1  10.0.0.5
web/<uuid>  started  z1  10.0.0.6
web/<uuid>  started  z1  10.0.0.7

3 instances
`},
		{[]string{"instances", "web", "--ps"}, `
Deployment 'web'

Instance    Process   State    Process State       AZ  IPs
web/<uuid>  -         started  running             z1  10.0.0.5
~           nginx     -        running             -   -
~           exporter  -        running             -   -
web/<uuid>  -         started  running             z1  10.0.0.6
~           nginx     -        running             -   -
~           exporter  -        running             -   -
web/<uuid>  -         started  unresponsive agent  z1  10.0.0.7

3 instances
web/2: agent agent-2 did not answer in time
`},
		{[]string{"instances", "-d", "web", "--details"}, `
Deployment 'web'

Instance    State    AZ  IPs       Index  Bootstrap  VM CID  Agent ID  Disk CID
web/<uuid>  started  z1  10.0.0.5  0      true       vm-0    agent-0   -
web/<uuid>  started  z1  10.0.0.6  1      false      vm-1    agent-1   -
web/<uuid>  started  z1  10.0.0.7  2      false      vm-2    agent-2   -

3 instances
`},
		{[]string{"vms", "-d", "web", "--vitals"}, `
Deployment 'web'

Instance  Process State       AZ  IPs       VM CID  Agent ID  CPI    Created  Uptime    Load (1m, 5m, 15m)  CPU User  CPU Sys  CPU Wait  Memory  Swap  Disks
web/0     running             z1  10.0.0.5  vm-0    agent-0   local  <time>   01:02:05  0.01, 0.02, 0.03    1.5%      -        -         20%     -     system 40%
web/1     running             z1  10.0.0.6  vm-1    agent-1   local  <time>   01:02:05  0.01, 0.02, 0.03    1.5%      -        -         20%     -     system 40%
web/2     unresponsive agent  z1  10.0.0.7  vm-2    agent-2   local  <time>   -         -                   -         -        -         -       -     -

3 vms
`},
		{[]string{"disks"}, `
Disk CID  Deployment  Instance  Size      Active  CPI    Created
disk-0    web         web/0     1024 MiB  true    local  <time>

1 disks
`},
		{[]string{"revisions"}, `
Commit      Received  Verdict   Author                 Task ID  Subject           Policy
abcdef0123  <time>    rejected  dev <dev@example.com>  -        web: 4 instances  web must keep 3 instances

1 revisions
`},
		{[]string{"events", "-d", "web"}, `
ID  Time    User   Action  Object Type  Object Name  Task ID  Deployment  Instance    Context        Error
1   <time>  alice  stop    instance     web/x        -        web         web/<uuid>  {"hard":true}  -

1 events
`},
		{[]string{"locks"}, `
Type  Resource  Task ID  Held By  Since  Age

0 locks
`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, e, code := runCLI(t, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, e)
			}
			if got, want := columns(o), columns(strings.TrimPrefix(tt.want, "\n")); got != want {
				t.Errorf("output:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestEveryVerbHasJSONAndHelp(t *testing.T) {
	env := newCLIEnv(t, tgzLogs{"web/web.stdout.log": "hello\n"})
	task, err := env.store.Enqueue(context.Background(), state.Task{Type: state.TaskDeploy, Deployment: "web", Description: "deploy web"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"deployments"}, 0},
		{[]string{"instances", "-d", "web", "--ps"}, 0},
		{[]string{"instances"}, 0},
		{[]string{"vms"}, 0},
		{[]string{"disks", "-d", "web"}, 0},
		{[]string{"tasks", "--recent", "5"}, 0},
		{[]string{"task", fmt.Sprint(task.ID)}, 0},
		{[]string{"events", "--since", "1h"}, 0},
		{[]string{"locks"}, 0},
		{[]string{"revisions"}, 0},
		{[]string{"suspend", "-d", "web", "--reason", "freeze"}, 0},
		{[]string{"resume", "web"}, 0},
		{[]string{"cancel-task", fmt.Sprint(task.ID)}, 0},
		{[]string{"stop", "-d", "web", "web/1", "--hard", "--no-follow"}, 0},
		{[]string{"logs", "-d", "web", "web/0", "--dir", dir}, 0},
		{[]string{"env"}, 0},
		{[]string{"new-token", "--name", "ci", "--scopes", "bosun.teams.web.admin"}, 0},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, e, code := runCLI(t, append(tt.args, "--json")...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, e)
			}
			var v any
			if err := json.Unmarshal([]byte(o), &v); err != nil {
				t.Errorf("--json output is not JSON (%v):\n%s", err, o)
			}
			ho, _, hcode := runCLI(t, tt.args[0], "--help")
			if hcode != 0 || !strings.Contains(ho, "Usage: bosun "+tt.args[0]) || !strings.Contains(ho, "-json") {
				t.Errorf("--help: %d\n%s", hcode, ho)
			}
		})
	}
	for _, verb := range []string{"login", "reconcile", "recreate", "restart", "start", "cck", "sources"} {
		ho, _, hcode := runCLI(t, verb, "--help")
		if hcode != 0 || !strings.Contains(ho, "-json") {
			t.Errorf("%s --help: %d\n%s", verb, hcode, ho)
		}
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	env := newCLIEnv(t, nil)
	done, _ := env.store.Enqueue(context.Background(), state.Task{Type: state.TaskDeploy, Deployment: "db"})
	if _, err := env.store.RequestCancel(context.Background(), done.ID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"instances", "-d", "nope"}, 1, "bosun instances: no deployment named nope: `bosun deployments` lists them\n"},
		{[]string{"restart", "-d", "web", "api"}, 1, "bosun restart: deployment web has no instance group api: `bosun instances web` lists its instances\n"},
		{[]string{"recreate", "-d", "web", "web/9"}, 1, "bosun recreate: deployment web has no instance web/9: `bosun instances web` lists them\n"},
		{[]string{"recreate"}, 2, "bosun recreate: which deployment? give -d NAME (`bosun deployments` lists them; see `bosun recreate --help`)\n"},
		{[]string{"recreate", "-d", "web", "web/0/1"}, 2, "bosun recreate: \"web/0/1\": want GROUP or GROUP/INDEX or GROUP/ID, like web or web/0\n"},
		{[]string{"cancel-task", fmt.Sprint(done.ID)}, 1, fmt.Sprintf("bosun cancel-task: task %d already ended (cancelled); there is nothing to cancel\n", done.ID)},
		{[]string{"cancel-task", "x"}, 2, "bosun cancel-task: task id \"x\": want a task number (`bosun tasks --recent` lists them)\n"},
		{[]string{"task", "999"}, 1, "bosun task: no task 999: `bosun tasks --recent` lists the latest\n"},
		{[]string{"cck", "-d", "web"}, 1, "bosun cck: this director has no cloud check wired in\n"},
		{[]string{"sources"}, 1, "bosun sources: this director has no source watcher (the reconciler) wired in\n"},
		{[]string{"events", "--since", "tuesday"}, 1, "bosun events: query parameter since=\"tuesday\": want an RFC 3339 time (2026-12-07T10:00:00Z) or a duration back from now (2h)\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, e, code := runCLI(t, tt.args...)
			if code != tt.code || e != tt.want {
				t.Errorf("exit %d (want %d), stderr:\n%s\nwant:\n%s", code, tt.code, e, tt.want)
			}
		})
	}
	t.Setenv("BOSUN_TOKEN", "bosun_revoked")
	if _, e, code := runCLI(t, "deployments"); code != 1 || !strings.Contains(e, "token not accepted") || !strings.Contains(e, "`bosun login` stores a new token") {
		t.Errorf("revoked token: %d %s", code, e)
	}
	t.Setenv("BOSUN_CONFIG", filepath.Join(t.TempDir(), "none.json"))
	t.Setenv("BOSUN_TOKEN", "")
	if _, e, code := runCLI(t, "deployments"); code != 1 || !strings.Contains(e, "no director chosen: `bosun login URL` first") {
		t.Errorf("no login: %d %s", code, e)
	}
	t.Setenv("BOSUN_ENVIRONMENT", strings.Replace(env.url, "http://", "https://", 1))
	t.Setenv("BOSUN_TOKEN", "x")
	if _, e, code := runCLI(t, "deployments"); code != 1 || !strings.Contains(e, "the director serves plain HTTP; log in to its http:// URL") {
		t.Errorf("https to a plain director: %d %s", code, e)
	}
	t.Setenv("BOSUN_ENVIRONMENT", "http://127.0.0.1:1")
	t.Setenv("BOSUN_TOKEN", "x")
	if _, e, code := runCLI(t, "deployments"); code != 1 || !strings.Contains(e, "connection refused: is `bosun director` running there?") {
		t.Errorf("no director: %d %s", code, e)
	}
}

// playWorker plays the reconciler's part for one task: claims it, reports progress, ends it.
func playWorker(t *testing.T, s *postgres.Store, final string, steps []state.TaskEvent) {
	ctx := context.Background()
	var task *state.Task
	for task == nil {
		var err error
		if task, err = s.Claim(ctx, "test-worker", []string{state.TaskAction}); err != nil {
			t.Error(err)
			return
		}
		if task == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, e := range steps {
		e.TaskID = task.ID
		if _, err := s.AddTaskEvent(ctx, e); err != nil {
			t.Error(err)
			return
		}
	}
	result := "recreated 1 instance"
	if final != state.TaskDone {
		result = "web/0: nginx failed to start"
	}
	if err := s.Finish(ctx, task.ID, "test-worker", final, result); err != nil {
		t.Error(err)
	}
}

func TestActionFollowsItsTask(t *testing.T) {
	env := newCLIEnv(t, nil)
	steps := []state.TaskEvent{
		{Stage: "Updating instance", Tags: []string{"web"}, Task: "web/0 (canary)", Index: 1, Total: 2, State: "started"},
		{Stage: "Updating instance", Tags: []string{"web"}, Task: "web/0 (canary)", Index: 1, Total: 2, State: "finished"},
	}
	go playWorker(t, env.store, state.TaskDone, steps)
	o, e, code := runCLI(t, "recreate", "-d", "web", "web/0")
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, e, o)
	}
	got := regexp.MustCompile(`\d\d:\d\d:\d\d`).ReplaceAllString(normal(o), "hh:mm:ss")
	for _, want := range []string{
		"Task 1 queued: recreate web/0 (<uuid>)\n",
		"Task 1 | hh:mm:ss | Updating instance web: web/0 (canary) (1/2)\n",
		"Task 1 | hh:mm:ss | Updating instance web: web/0 (canary) (1/2) (hh:mm:ss)\n",
		"Task 1 Duration hh:mm:ss\nTask 1 done\n\nrecreated 1 instance\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}

	fail := []state.TaskEvent{
		{Stage: "Updating instance", Tags: []string{"web"}, Task: "web/0 (canary)", Index: 1, Total: 1, State: "started"},
		{Stage: "Updating instance", Tags: []string{"web"}, Task: "web/0 (canary)", Index: 1, Total: 1, State: "failed", Error: "nginx failed to start"},
	}
	go playWorker(t, env.store, state.TaskError, fail)
	o, e, code = runCLI(t, "restart", "-d", "web", "web/0")
	if code != 1 || e != "bosun restart: task 2 error: web/0: nginx failed to start\n" {
		t.Errorf("failing task: exit %d, stderr %q", code, e)
	}
	if !strings.Contains(o, "L Error: nginx failed to start") {
		t.Errorf("output lacks the failure:\n%s", o)
	}
	evs, _ := env.store.Events(context.Background(), state.EventFilter{Deployment: "web"})
	if len(evs) != 2 || evs[0].Action != "restart" || evs[1].Action != "recreate" || evs[0].User != "alice" {
		t.Errorf("events = %+v", evs)
	}
}

func TestLogsUnpack(t *testing.T) {
	newCLIEnv(t, tgzLogs{"web/web.stdout.log": "listening on :80\n", "web/web.stderr.log": ""})
	dir := t.TempDir()
	o, e, code := runCLI(t, "logs", "-d", "web", "web", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e)
	}
	if strings.Count(o, "2 log files unpacked into") != 3 {
		t.Errorf("output:\n%s", o)
	}
	got, err := filepath.Glob(filepath.Join(dir, "web.web.1.*", "web", "web.stdout.log"))
	if err != nil || len(got) != 1 {
		t.Fatalf("web/1's stdout log: %v %v", got, err)
	}
	if b, _ := os.ReadFile(got[0]); string(b) != "listening on :80\n" {
		t.Errorf("log content %q", b)
	}

	newCLIEnv(t, tgzLogs{"../../escape.log": "x"})
	_, e, code = runCLI(t, "logs", "-d", "web", "web/0", "--dir", dir)
	if code != 1 || !strings.Contains(e, "points outside the log directory") {
		t.Errorf("escaping tarball: %d %s", code, e)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape.log")); err == nil {
		t.Error("a tarball entry escaped")
	}
}

// FuzzUntarGz: whatever a log tarball holds, nothing is written outside its directory.
func FuzzUntarGz(f *testing.F) {
	mk := func(names ...string) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		for _, n := range names {
			_ = tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
			_, _ = tw.Write([]byte("x"))
		}
		_ = tw.WriteHeader(&tar.Header{Name: "link", Linkname: "/etc/passwd", Typeflag: tar.TypeSymlink})
		tw.Close()
		zw.Close()
		return buf.Bytes()
	}
	f.Add(mk("a/b.log", "c.log"))
	f.Add(mk("../up.log"))
	f.Add(mk("/abs.log"))
	f.Add(mk("a/../../b.log"))
	f.Add([]byte("not gzip"))
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		dir := filepath.Join(base, "logs")
		_, _ = untarGz(bytes.NewReader(data), dir)
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if e.Name() != "logs" {
				t.Fatalf("%s written beside the log directory", e.Name())
			}
		}
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if d != nil && d.Type()&os.ModeSymlink != 0 {
				t.Fatalf("symlink %s made", p)
			}
			return nil
		})
	})
}
