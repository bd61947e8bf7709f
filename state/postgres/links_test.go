package postgres_test

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/state"
)

func TestSharedLinksReplacedWholeAndForgotten(t *testing.T) {
	s := openStore(t, pgtestDatabase(t))
	ctx := ctxFor(t)
	type row struct{ Deployment, Name, Type, Data string }
	rows := func(dep string) []row {
		t.Helper()
		got, err := s.SharedLinks(ctx, dep)
		if err != nil {
			t.Fatal(err)
		}
		var out []row
		for _, l := range got {
			if l.UpdatedAt.IsZero() {
				t.Errorf("link %s/%s has no update time", l.Deployment, l.Name)
			}
			out = append(out, row{l.Deployment, l.Name, l.Type, string(l.Data)})
		}
		return out
	}
	put := func(dep string, links ...state.SharedLink) {
		t.Helper()
		if err := s.PutSharedLinks(ctx, dep, links); err != nil {
			t.Fatal(err)
		}
	}

	put("db", state.SharedLink{Name: "pg", Type: "postgres", Data: json.RawMessage(`{"properties":{"port":5432}}`)},
		state.SharedLink{Deployment: "db", Name: "admin", Type: "http", Data: json.RawMessage(`{}`)})
	put("cache", state.SharedLink{Name: "redis", Type: "redis", Data: json.RawMessage(`{}`)})
	want := []row{{"db", "admin", "http", `{}`}, {"db", "pg", "postgres", `{"properties": {"port": 5432}}`}}
	if diff := cmp.Diff(want, rows("db")); diff != "" {
		t.Errorf("db's links, by name (-want +got):\n%s", diff)
	}

	// A deploy sharing less: what it no longer shares goes; other deployments' links stay.
	put("db", state.SharedLink{Name: "pg", Type: "postgres", Data: json.RawMessage(`{"properties":{"port":6432}}`)})
	want = []row{{"db", "pg", "postgres", `{"properties": {"port": 6432}}`}}
	if diff := cmp.Diff(want, rows("db")); diff != "" {
		t.Errorf("db's links after the second deploy (-want +got):\n%s", diff)
	}
	if got := rows("cache"); len(got) != 1 {
		t.Errorf("cache's links = %+v; want redis kept", got)
	}

	// Two links of one name in one deployment, or a link of another deployment, store
	// nothing: the earlier links stay as they were.
	if err := s.PutSharedLinks(ctx, "db", []state.SharedLink{{Name: "x", Type: "t", Data: json.RawMessage(`{}`)}, {Name: "x", Type: "u", Data: json.RawMessage(`{}`)}}); err == nil {
		t.Error("two links named x were stored")
	}
	if err := s.PutSharedLinks(ctx, "db", []state.SharedLink{{Deployment: "cache", Name: "x", Type: "t", Data: json.RawMessage(`{}`)}}); err == nil {
		t.Error("a link of cache was stored as db's")
	}
	if diff := cmp.Diff(want, rows("db")); diff != "" {
		t.Errorf("db's links after refused writes (-want +got):\n%s", diff)
	}

	// Sharing nothing any more, and a deleted deployment.
	put("cache")
	if got := rows("cache"); len(got) != 0 {
		t.Errorf("cache's links after sharing none = %+v", got)
	}
	if err := s.ForgetDeployment(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if got := rows("db"); len(got) != 0 {
		t.Errorf("db's links after deletion = %+v", got)
	}
}

func TestConsumedLinksReplacedWholeAndForgotten(t *testing.T) {
	s := openStore(t, pgtestDatabase(t))
	ctx := ctxFor(t)
	type row struct{ Deployment, Name, Type, Data string }
	rows := func(consumer string) map[string][]row {
		t.Helper()
		got, err := s.ConsumedLinks(ctx, consumer)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]row{}
		for dep, links := range got {
			for _, l := range links {
				if l.UpdatedAt.IsZero() {
					t.Errorf("%s's copy of %s/%s has no update time", consumer, l.Deployment, l.Name)
				}
				out[dep] = append(out[dep], row{l.Deployment, l.Name, l.Type, string(l.Data)})
			}
		}
		return out
	}
	link := func(dep, name, typ, data string) state.SharedLink {
		return state.SharedLink{Deployment: dep, Name: name, Type: typ, Data: json.RawMessage(data)}
	}
	put := func(consumer string, links map[string][]state.SharedLink) {
		t.Helper()
		if err := s.PutConsumedLinks(ctx, consumer, links); err != nil {
			t.Fatal(err)
		}
	}

	if got := rows("app"); len(got) != 0 {
		t.Errorf("a consumer never deployed has a copy: %+v", got)
	}
	// The deployment may be left out (the map's key names the provider); a provider that
	// shared nothing leaves nothing.
	put("app", map[string][]state.SharedLink{
		"db":    {link("db", "pg", "postgres", `{"properties":{"port":5432}}`), link("", "admin", "http", `{}`)},
		"cache": {link("cache", "redis", "redis", `{}`)},
		"empty": nil,
	})
	put("web", map[string][]state.SharedLink{"db": {link("db", "pg", "postgres", `{"properties":{"port":5432}}`)}})
	want := map[string][]row{
		"db":    {{"db", "admin", "http", `{}`}, {"db", "pg", "postgres", `{"properties": {"port": 5432}}`}},
		"cache": {{"cache", "redis", "redis", `{}`}},
	}
	if diff := cmp.Diff(want, rows("app")); diff != "" {
		t.Errorf("app's copy, by provider and name (-want +got):\n%s", diff)
	}

	// A later deploy replaces the copy whole: a provider no longer consumed from goes;
	// other consumers' copies stay.
	put("app", map[string][]state.SharedLink{"db": {link("db", "pg", "postgres", `{"properties":{"port":6432}}`)}})
	want = map[string][]row{"db": {{"db", "pg", "postgres", `{"properties": {"port": 6432}}`}}}
	if diff := cmp.Diff(want, rows("app")); diff != "" {
		t.Errorf("app's copy after its second deploy (-want +got):\n%s", diff)
	}
	wantWeb := map[string][]row{"db": {{"db", "pg", "postgres", `{"properties": {"port": 5432}}`}}}
	if diff := cmp.Diff(wantWeb, rows("web")); diff != "" {
		t.Errorf("web's copy after app's deploy (-want +got):\n%s", diff)
	}

	// Refused writes store nothing: the copy stays as it was.
	for _, tt := range []struct {
		name  string
		links map[string][]state.SharedLink
	}{
		{"two links of one name", map[string][]state.SharedLink{"db": {link("db", "x", "t", `{}`), link("db", "x", "u", `{}`)}}},
		{"a link filed under another provider", map[string][]state.SharedLink{"db": {link("cache", "x", "t", `{}`)}}},
		{"its own links", map[string][]state.SharedLink{"app": {link("app", "x", "t", `{}`)}}},
	} {
		if err := s.PutConsumedLinks(ctx, "app", tt.links); err == nil {
			t.Errorf("%s: stored", tt.name)
		}
	}
	if diff := cmp.Diff(want, rows("app")); diff != "" {
		t.Errorf("app's copy after refused writes (-want +got):\n%s", diff)
	}

	// Deleting the provider leaves its consumers' copies (their instances run them);
	// deleting a consumer drops its own.
	if err := s.ForgetDeployment(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, rows("app")); diff != "" {
		t.Errorf("app's copy after db was deleted (-want +got):\n%s", diff)
	}
	if err := s.ForgetDeployment(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if got := rows("app"); len(got) != 0 {
		t.Errorf("app's copy after app was deleted = %+v", got)
	}
	if diff := cmp.Diff(wantWeb, rows("web")); diff != "" {
		t.Errorf("web's copy after app was deleted (-want +got):\n%s", diff)
	}
	put("web", nil)
	if got := rows("web"); len(got) != 0 {
		t.Errorf("web's copy after consuming nothing = %+v", got)
	}
}
