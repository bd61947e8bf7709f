package source

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// servedOverHTTP serves the bare repository through git's own http-backend (smart HTTP,
// the stateless protocol forges speak), and returns its URL.
func servedOverHTTP(t *testing.T, bare string) string {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git binary")
	}
	srv := httptest.NewServer(&cgi.Handler{Path: gitBin, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(bare), "GIT_HTTP_EXPORT_ALL=1"}})
	t.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(bare)
}

// fiftyCommits pushes commits "c1" … "c50" (file n holds their number) to a bare remote
// and returns it with their shas, oldest first.
func fiftyCommits(t *testing.T) (*workRepo, string, []string) {
	work := newWorkRepo(t)
	bare := work.newBareRemote()
	var shas []string
	for i := 1; i <= 50; i++ {
		shas = append(shas, work.commit(fmt.Sprintf("c%d", i), map[string]string{"n": fmt.Sprint(i)}))
	}
	work.push(false)
	return work, bare, shas
}

func TestFetchRevisionDeepensTheMirror(t *testing.T) {
	for _, transport := range []string{"file", "http"} {
		t.Run(transport, func(t *testing.T) {
			ctx := context.Background()
			work, bare, shas := fiftyCommits(t)
			url := "file://" + bare
			if transport == "http" {
				url = servedOverHTTP(t, bare)
			}
			head := shas[49]
			s := openSource(t, url, t.TempDir())
			if rev, _, err := s.Check(ctx); err != nil || rev.SHA != head {
				t.Fatalf("Check = %s, %v", rev.SHA, err)
			}
			if _, err := s.Revision(shas[9]); err == nil {
				t.Fatal("a fresh shallow mirror already holds commit 10: the test proves nothing")
			}

			// The head is in the mirror: no network.
			if rev, err := s.FetchRevision(ctx, head); err != nil || rev.SHA != head {
				t.Fatalf("FetchRevision(head) = %s, %v", rev.SHA, err)
			}
			if got := s.Stats(); got != (Stats{Lists: 1, Fetches: 1}) {
				t.Fatalf("FetchRevision of the head used the network: %+v", got)
			}

			rev, err := s.FetchRevision(ctx, shas[9])
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"c10", shas[8]}, []string{rev.Message, strings.Join(rev.Parents, ",")}); diff != "" {
				t.Errorf("commit 10 (-want +got):\n%s", diff)
			}
			if data, err := fs.ReadFile(rev.FS(), "n"); err != nil || string(data) != "10" {
				t.Errorf("commit 10's file n = %q, %v", data, err)
			}
			// Commit 10 is 40 behind the head: depths 2, 8 and 32 fall short, 128 reaches it.
			if got := s.Stats(); got != (Stats{Lists: 1, Fetches: 5}) {
				t.Errorf("stats = %+v, want 4 deepening fetches", got)
			}
			if got, err := s.Head(); err != nil || got.SHA != head {
				t.Errorf("branch after deepening = %s, %v; want the head %s", got.SHA, err, head)
			}
			if shallows, err := s.storage.Shallow(); err != nil || len(shallows) != 0 {
				t.Errorf("the mirror holds all 50 commits but lists shallow commits %v (%v)", shallows, err)
			}

			// Again: in the mirror now, no network.
			if _, err := s.FetchRevision(ctx, shas[9]); err != nil || s.Stats().Fetches != 5 {
				t.Errorf("second FetchRevision: %v, stats %+v", err, s.Stats())
			}
			// The deepened mirror still follows the branch.
			next := work.commit("c51", map[string]string{"n": "51"})
			work.push(false)
			if rev, changed, err := s.Check(ctx); err != nil || !changed || rev.SHA != next || rev.Parents[0] != head {
				t.Fatalf("Check after deepening = %s changed=%v %v", rev.SHA, changed, err)
			}
		})
	}
}

func TestFetchRevisionNotInHistory(t *testing.T) {
	ctx := context.Background()
	work, bare, shas := fiftyCommits(t)
	unpushed := work.commit("never pushed", map[string]string{"n": "x"})
	for _, tc := range []struct {
		name     string
		sha      string
		depths   []int
		notIn    bool
		contains string
	}{
		{"never on the branch", unpushed, depths, true, "was it force-pushed away?"},
		{"no such commit", strings.Repeat("ab", 20), depths, true, "was it force-pushed away?"},
		{"beyond the deepest fetch", shas[9], []int{2, 8}, true, "is not among the newest 8 commits of main"},
		{"not a sha", "main", depths, false, "not a full 40-hex commit sha"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(d []int) { depths = d }(depths)
			depths = tc.depths
			s := openSource(t, "file://"+bare, t.TempDir())
			if _, _, err := s.Check(ctx); err != nil {
				t.Fatal(err)
			}
			_, err := s.FetchRevision(ctx, tc.sha)
			if err == nil || errors.Is(err, ErrNotInHistory) != tc.notIn || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("FetchRevision error = %v; want one containing %q (ErrNotInHistory: %v)", err, tc.contains, tc.notIn)
			}
			if got, err := s.Head(); err != nil || got.SHA != shas[49] {
				t.Errorf("branch = %s, %v; want the head", got.SHA, err)
			}
		})
	}
}

// A director with no mirror yet (a fresh data dir) reaches the last revision it accepted
// without a Check first.
func TestFetchRevisionIntoAnEmptyMirror(t *testing.T) {
	_, bare, shas := fiftyCommits(t)
	s := openSource(t, bare, t.TempDir())
	rev, err := s.FetchRevision(context.Background(), shas[48])
	if err != nil || rev.Message != "c49" {
		t.Fatalf("FetchRevision = %q, %v", rev.Message, err)
	}
	if got := s.Stats(); got != (Stats{Fetches: 1}) {
		t.Errorf("stats = %+v, want one fetch of depth 2", got)
	}
	if got, err := s.Head(); err != nil || got.SHA != shas[49] {
		t.Errorf("branch = %s, %v; want the head", got.SHA, err)
	}
}
