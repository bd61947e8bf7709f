package api_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/bosun-gitops/bosun/state/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Tokens the tests use; the server is configured with their hashes only.
const (
	adminToken   = "bosun_admin_token_for_tests_0000000000000"
	readToken    = "bosun_read_token_for_tests_00000000000000"
	webAdmToken  = "bosun_webteam_admin_token_for_tests_00000"
	webReadToken = "bosun_webteam_read_token_for_tests_000000"
	expiredToken = "bosun_expired_token_for_tests_00000000000"
)

func testConfig() api.Config {
	return api.Config{
		Tokens: []api.TokenConfig{
			{Name: "alice", Hash: api.HashToken(adminToken), Scopes: []string{api.ScopeAdmin}},
			{Name: "auditor", Hash: api.HashToken(readToken), Scopes: []string{api.ScopeRead}},
			{Name: "web-ci", Hash: api.HashToken(webAdmToken), Scopes: []string{"bosun.teams.web.admin"}},
			{Name: "web-dev", Hash: api.HashToken(webReadToken), Scopes: []string{"bosun.teams.web.read"}},
			{Name: "old", Hash: api.HashToken(expiredToken), Scopes: []string{api.ScopeAdmin}, Expires: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)},
		},
		Teams: map[string][]string{"web": {"web", "web-*"}},
	}
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

type env struct {
	store  *postgres.Store
	server *httptest.Server
	api    *api.Server
}

// newEnv starts an API on a fresh database; opts may set the optional parts.
func newEnv(t testing.TB, opts api.Options) *env {
	t.Helper()
	store, err := postgres.Open(ctxFor(t), pgtest.NewDatabase(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if opts.Auth == nil {
		a, err := api.NewAuth(testConfig())
		if err != nil {
			t.Fatal(err)
		}
		opts.Auth = a
	}
	opts.Store = store
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	opts.Version = "test"
	if opts.FollowPoll == 0 {
		opts.FollowPoll = 20 * time.Millisecond
	}
	srv, err := api.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &env{store: store, server: hs, api: srv}
}

func (e *env) client(t testing.TB, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(e.server.URL, token, api.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// seed puts two deployments, web (3 instances, VMs and a disk) and db (1 instance), in
// the store, and returns web's instances.
func seed(t testing.TB, s *postgres.Store) []state.Instance {
	t.Helper()
	ctx := ctxFor(t)
	manifest := []byte("name: web\nreleases:\n- {name: nginx, version: \"1.2\"}\nstemcells:\n- {alias: default, os: ubuntu-noble, version: \"1.5\"}\n")
	for _, d := range []state.Deployment{{Name: "web", Revision: "0123456789abcdef", Manifest: manifest}, {Name: "db", Revision: "fedcba9876543210"}} {
		if err := s.PutDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	var web []state.Instance
	for i := range 3 {
		in, err := s.PutInstance(ctx, state.Instance{Deployment: "web", Group: "web", Index: i, AZ: "z1", Bootstrap: i == 0,
			VMCID: "vm-web-" + string(rune('0'+i)), AgentID: "agent-web-" + string(rune('0'+i)), IPs: []string{"10.0.0." + string(rune('5'+i))}})
		if err != nil {
			t.Fatal(err)
		}
		web = append(web, in)
		if err := s.PutVM(ctx, state.VM{CID: in.VMCID, Deployment: "web", InstanceID: in.ID, AgentID: in.AgentID, IPs: in.IPs, CPI: "local"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutDisk(ctx, state.Disk{CID: "disk-web-0", Deployment: "web", InstanceID: web[0].ID, SizeMB: 1024, Active: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutInstance(ctx, state.Instance{Deployment: "db", Group: "pg", Index: 0}); err != nil {
		t.Fatal(err)
	}
	return web
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
