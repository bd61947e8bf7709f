package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/state"
)

func TestAuthMatrix(t *testing.T) {
	e := newEnv(t, api.Options{})
	seed(t, e.store)
	ctx := ctxFor(t)
	dbTask, err := e.store.Enqueue(ctx, state.Task{Type: state.TaskDeploy, Deployment: "db"})
	if err != nil {
		t.Fatal(err)
	}
	recreate := `{"action":"recreate","group":"web","instance":"0"}`
	tests := []struct {
		name, token, method, path, body string
		code                            int
		reason                          string // in the error message
	}{
		{"healthz needs no token", "", "GET", "/healthz", "", 200, ""},
		{"info needs no token", "", "GET", "/info", "", 200, ""},
		{"metrics need no token", "", "GET", "/metrics", "", 200, ""},
		{"no token", "", "GET", "/deployments", "", 401, "no token"},
		{"malformed header", "Basic abc", "GET", "/deployments", "", 401, "malformed Authorization header"},
		{"unknown token", "Bearer bosun_nope", "GET", "/deployments", "", 401, "token not accepted"},
		{"expired token", "Bearer " + expiredToken, "GET", "/deployments", "", 401, "token old expired at 2020-01-01T00:00:00Z"},
		{"read lists", "Bearer " + readToken, "GET", "/deployments/web/instances", "", 200, ""},
		{"read may not recreate", "Bearer " + readToken, "POST", "/deployments/web/actions", recreate, 403, "token auditor may not recreate instances of web: it needs bosun.admin"},
		{"read may not suspend", "Bearer " + readToken, "POST", "/deployments/web/suspend", "", 403, "may not suspend web"},
		{"read may not reconcile", "Bearer " + readToken, "POST", "/reconcile", "", 403, "may not reconcile"},
		{"read may not cancel", "Bearer " + readToken, "DELETE", "/tasks/1", "", 403, "may not cancel task 1"},
		{"team reads its own", "Bearer " + webReadToken, "GET", "/deployments/web/vms", "", 200, ""},
		{"team read may not act", "Bearer " + webReadToken, "POST", "/deployments/web/actions", recreate, 403, "bosun.teams.<team>.admin of a team owning web"},
		{"team may not read another's", "Bearer " + webAdmToken, "GET", "/deployments/db/instances", "", 403, "token web-ci may not read deployment db"},
		{"team may not act on another's", "Bearer " + webAdmToken, "POST", "/deployments/db/actions", `{"action":"restart"}`, 403, "may not restart instances of db"},
		{"team may not see another's task", "Bearer " + webAdmToken, "GET", "/tasks/" + itoa(dbTask.ID), "", 403, "it belongs to deployment db"},
		{"team admin acts on its own", "Bearer " + webAdmToken, "POST", "/deployments/web/actions", recreate, 202, ""},
		{"team may not reconcile everything", "Bearer " + webAdmToken, "POST", "/reconcile", "", 403, "may not reconcile"},
		{"admin acts", "Bearer " + adminToken, "POST", "/deployments/db/actions", `{"action":"stop","group":"pg","hard":true}`, 202, ""},
		{"admin on a missing deployment", "Bearer " + adminToken, "GET", "/deployments/nope/instances", "", 404, "no deployment named nope: `bosun deployments` lists them"},
		{"unknown path", "Bearer " + adminToken, "GET", "/frobnicate", "", 404, "no such API path: GET /frobnicate"},
		{"wrong method", "Bearer " + adminToken, "PUT", "/deployments/web/actions", "", 405, "PUT /deployments/web/actions: this path takes POST"},
		{"wrong method, two allowed", "", "PATCH", "/tasks/1", "", 405, "this path takes GET or DELETE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, tt.method, e.server.URL+tt.path, strings.NewReader(tt.body))
			if tt.token != "" {
				req.Header.Set("Authorization", tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.code, b)
			}
			if tt.code >= 400 {
				var eb api.ErrorBody
				if err := json.Unmarshal(b, &eb); err != nil {
					t.Fatalf("error body is not JSON: %s", b)
				}
				if eb.Status != tt.code || !strings.Contains(eb.Error, tt.reason) {
					t.Errorf("error %q (status %d), want it to contain %q", eb.Error, eb.Status, tt.reason)
				}
				if strings.Contains(string(b), "goroutine") || strings.Contains(string(b), ".go:") {
					t.Errorf("stack trace in answer: %s", b)
				}
			}
			if tt.code == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestTeamTokenSeesOnlyItsDeployments(t *testing.T) {
	e := newEnv(t, api.Options{})
	seed(t, e.store)
	ctx := ctxFor(t)
	for _, d := range []string{"web", "db", "web"} {
		if _, err := e.store.Enqueue(ctx, state.Task{Type: state.TaskDeploy, Deployment: d}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.AddEvent(ctx, state.Event{Action: "deploy", ObjectType: "deployment", Deployment: d}); err != nil {
			t.Fatal(err)
		}
	}
	c := e.client(t, webReadToken)
	ds, err := c.Deployments(ctx)
	if err != nil || len(ds) != 1 || ds[0].Name != "web" {
		t.Errorf("deployments = %+v, %v; want web only", ds, err)
	}
	ts, err := c.Tasks(ctx, api.TaskQuery{})
	if err != nil || len(ts) != 2 {
		t.Errorf("tasks = %d, %v; want web's 2", len(ts), err)
	}
	evs, err := c.Events(ctx, api.EventQuery{})
	if err != nil || len(evs) != 2 {
		t.Errorf("events = %d, %v; want web's 2", len(evs), err)
	}
	disks, err := c.Disks(ctx, "")
	if err != nil || len(disks) != 1 {
		t.Errorf("disks = %+v, %v", disks, err)
	}
	if _, err := c.Events(ctx, api.EventQuery{Deployment: "db"}); !isStatus(err, 403) {
		t.Errorf("db's events: %v; want 403", err)
	}
	all, err := e.client(t, readToken).Tasks(ctx, api.TaskQuery{})
	if err != nil || len(all) != 3 {
		t.Errorf("reader's tasks = %d, %v; want 3", len(all), err)
	}
}

func isStatus(err error, code int) bool {
	ae, ok := err.(*api.Error)
	return ok && ae.Status == code
}

func TestTokenHashing(t *testing.T) {
	tok, err := api.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tok2, _ := api.NewToken()
	if !strings.HasPrefix(tok, "bosun_") || len(tok) != 46 || tok == tok2 {
		t.Errorf("tokens %q, %q", tok, tok2)
	}
	h := api.HashToken(tok)
	if !strings.HasPrefix(h, "sha256:") || len(h) != 71 || strings.Contains(h, tok[6:]) {
		t.Errorf("hash %q", h)
	}
	if api.HashToken(tok) != h || api.HashToken(tok2) == h {
		t.Error("hash is not a function of the token")
	}
	// A known vector, so that configs written today keep working.
	if got, want := api.HashToken("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("HashToken(abc) = %s, want %s", got, want)
	}
}

func TestConfigValidation(t *testing.T) {
	good := api.HashToken("x")
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"empty", "", ""},
		{"good", "tokens:\n- {name: a, hash: " + good + ", scopes: [bosun.admin, bosun.teams.web.read]}\nteams: {web: [web, 'web-*']}\n", ""},
		{"plain token", "tokens:\n- {name: a, hash: bosun_secret, scopes: [bosun.admin]}\n", "hash must be sha256:<64 hex digits>"},
		{"no scopes", "tokens:\n- {name: a, hash: " + good + "}\n", "no scopes"},
		{"bad scope", "tokens:\n- {name: a, hash: " + good + ", scopes: [bosun.root]}\n", `unknown scope "bosun.root"`},
		{"bad team scope", "tokens:\n- {name: a, hash: " + good + ", scopes: [bosun.teams.web.write]}\n", "unknown scope"},
		{"twice", "tokens:\n- {name: a, hash: " + good + ", scopes: [bosun.read]}\n- {name: a, hash: " + api.HashToken("y") + ", scopes: [bosun.read]}\n", "a second token named a"},
		{"same hash", "tokens:\n- {name: a, hash: " + good + ", scopes: [bosun.read]}\n- {name: b, hash: " + good + ", scopes: [bosun.read]}\n", "same token hash"},
		{"unknown key", "tokenz: []\n", "field tokenz not found"},
		{"half tls", "tls: {cert: c.pem}\n", "give both cert and key"},
		{"bad pattern", "teams: {web: ['[']}\n", "bad pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := t.TempDir() + "/api.yml"
			if err := writeFile(f, tt.yaml); err != nil {
				t.Fatal(err)
			}
			_, err := api.LoadConfig(f)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "bosun_secret") {
				t.Errorf("token in error: %v", err)
			}
		})
	}
}

// FuzzAuthenticate: any Authorization header gets a principal or a 401, never a panic,
// and only the exact admin token gets alice.
func FuzzAuthenticate(f *testing.F) {
	for _, s := range []string{"", "Bearer", "Bearer ", "bearer " + adminToken, "Bearer " + adminToken + " ", "Basic x", "Bearer \x00", "Bearer " + expiredToken} {
		f.Add(s)
	}
	a, err := api.NewAuth(testConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header["Authorization"] = []string{h}
		p, err := a.Authenticate(r)
		if (p == nil) == (err == nil) {
			t.Fatalf("principal %v and error %v", p, err)
		}
		if p != nil && p.Name == "alice" {
			_, tok, _ := strings.Cut(h, " ")
			if strings.TrimSpace(tok) != adminToken {
				t.Fatalf("header %q authenticated as alice", h)
			}
		}
	})
}

func TestTeamOwnership(t *testing.T) {
	a, err := api.NewAuth(api.Config{
		Tokens: []api.TokenConfig{
			{Name: "db-team", Hash: api.HashToken("d"), Scopes: []string{"bosun.teams.db.read"}},
			{Name: "edge", Hash: api.HashToken("e"), Scopes: []string{"bosun.teams.edge.admin", "bosun.teams.db.read"}},
		},
		Teams: map[string][]string{"edge": {"router", "cdn-*"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	principal := func(tok string) *api.Principal {
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		p, err := a.Authenticate(r)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	db, edge := principal("d"), principal("e")
	tests := []struct {
		p                 *api.Principal
		deployment        string
		canRead, canWrite bool
	}{
		{db, "db", true, false}, // a team not under teams owns its namesake
		{db, "web", false, false},
		{edge, "router", true, true},
		{edge, "cdn-eu", true, true},
		{edge, "edge", false, false}, // listed teams own only what they list
		{edge, "db", true, false},
	}
	for _, tt := range tests {
		if got := a.CanRead(tt.p, tt.deployment); got != tt.canRead {
			t.Errorf("%s reads %s = %v", tt.p.Name, tt.deployment, got)
		}
		if got := a.CanWrite(tt.p, tt.deployment); got != tt.canWrite {
			t.Errorf("%s writes %s = %v", tt.p.Name, tt.deployment, got)
		}
	}
	if got := a.TeamsOf("cdn-us"); len(got) != 1 || got[0] != "edge" {
		t.Errorf("teams of cdn-us = %v", got)
	}
}
