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
