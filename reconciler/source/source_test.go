package source

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-git/go-git/v5/config"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestCheckFetchesOnlyWhenMoved(t *testing.T) {
	ctx := context.Background()
	work := newWorkRepo(t)
	bare := work.newBareRemote()
	first := work.commit("first", map[string]string{"bosun.yml": "a: 1\n"})
	work.push(false)

	s := openSource(t, "file://"+bare, t.TempDir())
	rev, changed, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !changed || rev.SHA != first {
		t.Fatalf("first Check = %s changed=%v, want %s changed", rev.SHA, changed, first)
	}
	if got := s.Stats(); got != (Stats{Lists: 1, Fetches: 1}) {
		t.Fatalf("after first check: %+v", got)
	}

	rev, changed, err = s.Check(ctx)
	if err != nil || changed || rev.SHA != first {
		t.Fatalf("unchanged Check = %s changed=%v err=%v", rev.SHA, changed, err)
	}
	if got := s.Stats(); got != (Stats{Lists: 2, Fetches: 1}) {
		t.Fatalf("an unchanged check fetched: %+v", got)
	}

	second := work.commit("second\n\nBody line.\n\nReviewed-by: Bea <bea@example.com>\nChange-Id: I42", map[string]string{"bosun.yml": "a: 2\n"})
	work.push(false)
	rev, changed, err = s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !changed {
		t.Fatal("new commit not reported as a change")
	}
	want := Revision{
		SHA:       second,
		Author:    Person{Name: "Ada Author", Email: "ada@example.com", When: time.Date(2026, 11, 22, 1, 0, 2, 0, time.UTC)},
		Committer: Person{Name: "Cy Committer", Email: "cy@example.com", When: time.Date(2026, 11, 22, 1, 0, 3, 0, time.UTC)},
		Message:   "second\n\nBody line.\n\nReviewed-by: Bea <bea@example.com>\nChange-Id: I42",
		Trailers:  []Trailer{{"Reviewed-by", "Bea <bea@example.com>"}, {"Change-Id", "I42"}},
		Parents:   []string{first},
	}
	if diff := cmp.Diff(want, rev, cmpopts.IgnoreUnexported(Revision{}), cmpopts.EquateApproxTime(0)); diff != "" {
		t.Errorf("revision (-want +got):\n%s", diff)
	}
	if got := s.Stats().Fetches; got != 2 {
		t.Errorf("fetches = %d, want 2", got)
	}
	data, err := fs.ReadFile(rev.FS(), "bosun.yml")
	if err != nil || string(data) != "a: 2\n" {
		t.Errorf("bosun.yml = %q, %v", data, err)
	}
}

func TestCheckLocalPathAndRestart(t *testing.T) {
	ctx := context.Background()
	work := newWorkRepo(t)
	head := work.commit("only", map[string]string{"x": "1"})
	cache := t.TempDir()

	s := openSource(t, work.dir, cache)
	if _, _, err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A restarted director finds the head in its mirror and reports it without fetching.
	s = openSource(t, work.dir, cache)
	rev, changed, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !changed || rev.SHA != head || s.Stats().Fetches != 0 {
		t.Fatalf("after restart: %s changed=%v stats=%+v", rev.Short(), changed, s.Stats())
	}
	if got, err := s.Head(); err != nil || got.SHA != head {
		t.Fatalf("Head() = %s, %v", got.SHA, err)
	}
}

func TestCheckSurvivesForcePush(t *testing.T) {
	ctx := context.Background()
	work := newWorkRepo(t)
	bare := work.newBareRemote()
	work.commit("one", map[string]string{"f": "1"})
	work.commit("two", map[string]string{"f": "2"})
	work.push(false)
	s := openSource(t, "file://"+bare, t.TempDir())
	if _, _, err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}

	// Rewrite history: a new, unrelated root commit replaces the branch.
	other := newWorkRepo(t)
	rewritten := other.commit("rewritten", map[string]string{"f": "3"})
	other.repo.DeleteRemote("origin")
	work2 := &workRepo{t: t, dir: other.dir, repo: other.repo}
	work2.repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{"file://" + bare}})
	work2.push(true)

	rev, changed, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !changed || rev.SHA != rewritten || len(rev.Parents) != 0 {
		t.Fatalf("after force push: %s changed=%v parents=%v", rev.SHA, changed, rev.Parents)
	}
}

func TestCheckErrors(t *testing.T) {
	ctx := context.Background()
	empty := newWorkRepo(t)
	work := newWorkRepo(t)
	work.commit("x", map[string]string{"x": "1"})
	for _, tc := range []struct {
		name, url, branch, want string
	}{
		{"missing path", t.TempDir() + "/nope", "main", "list refs of"},
		{"missing branch", work.dir, "release", "branch release does not exist"},
		{"empty repository", empty.dir, "main", "the repository is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(Config{Remote: Remote{URL: tc.url}, Branch: tc.branch, CacheDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, _, err = s.Check(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestRevisionFS(t *testing.T) {
	work := newWorkRepo(t)
	files := map[string]string{
		"bosun.yml":                              "status_branch: bosun/status\n",
		"cloud-config.yml":                       "azs: []\n",
		"deployments/demo/manifest.yml":          "name: demo\n",
		"deployments/demo/ops/scale.yml":         "- type: replace\n",
		"deployments/demo-2/manifest.yml":        "name: demo-2\n",
		"deployments/demo.old/manifest.yml":      "name: old\n",
		"releases/greeter/jobs/greeter/spec":     "name: greeter\n",
		"releases/greeter/jobs/greeter/monit":    "check process greeter\n",
		"policies/deny.rego":                     "package bosun\n",
		"policies/deny_test.rego":                "package bosun\n",
		"deployments/demo/vars.yml":              "greeting: hello\n",
		"releases/greeter/packages/greeter/spec": "name: greeter\n",
	}
	work.commit("tree", files)
	s := openSource(t, work.dir, t.TempDir())
	rev, _, err := s.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fsys := rev.FS()
	var want []string
	for p := range files {
		want = append(want, p)
	}
	if err := fstest.TestFS(fsys, want...); err != nil {
		t.Fatal(err)
	}
	got, err := fs.Glob(fsys, "deployments/*/manifest.yml")
	if err != nil {
		t.Fatal(err)
	}
	// git's tree order puts "demo-2" and "demo.old" before "demo/"; fs order is by name.
	if diff := cmp.Diff([]string{"deployments/demo/manifest.yml", "deployments/demo-2/manifest.yml", "deployments/demo.old/manifest.yml"}, got); diff != "" {
		t.Errorf("Glob (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"../x", "/bosun.yml", "deployments/", "nope.yml", "bosun.yml/x"} {
		if _, err := fs.ReadFile(fsys, bad); err == nil {
			t.Errorf("ReadFile(%q) succeeded", bad)
		}
	}
	if _, err := fs.ReadFile(fsys, "deployments"); err == nil {
		t.Error("ReadFile of a directory succeeded")
	}
}
