package source

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// runWatcher runs w until the test ends and returns the revisions it hands out.
func runWatcher(t *testing.T, w *Watcher, handle func(Revision)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- w.Run(ctx, func(_ context.Context, r Revision) { handle(r) })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

type revLog struct {
	mu   sync.Mutex
	shas []string
}

func (l *revLog) add(r Revision) { l.mu.Lock(); l.shas = append(l.shas, r.SHA); l.mu.Unlock() }
func (l *revLog) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.shas) == 0 {
		return ""
	}
	return l.shas[len(l.shas)-1]
}

func TestWatcherPicksUpLocalCommitsViaFSNotify(t *testing.T) {
	gitCLI, _ := exec.LookPath("git")
	for _, tc := range []struct {
		name   string
		commit func(t *testing.T, r *workRepo) string
	}{
		// go-git rewrites the ref file in place.
		{"go-git", func(t *testing.T, r *workRepo) string {
			return r.commit("change", map[string]string{"f": time.Now().String()})
		}},
		// git writes refs/heads/main.lock and renames it over the ref.
		{"git", func(t *testing.T, r *workRepo) string {
			if gitCLI == "" {
				t.Skip("no git binary")
			}
			if err := os.WriteFile(filepath.Join(r.dir, "f"), []byte(time.Now().String()), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"add", "f"}, {"commit", "-q", "-m", "cli change"}} {
				cmd := exec.Command(gitCLI, append([]string{"-c", "user.name=T", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
				cmd.Dir = r.dir
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("git %v: %v\n%s", args, err, out)
				}
			}
			out, err := exec.Command(gitCLI, "-C", r.dir, "rev-parse", "HEAD").Output()
			if err != nil {
				t.Fatal(err)
			}
			return string(out[:40])
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := newWorkRepo(t)
			first := work.commit("first", map[string]string{"f": "1"})
			s := openSource(t, work.dir, t.TempDir())
			// Polling is out of the picture: only fsnotify can deliver the second commit.
			w := NewWatcher(s, WatchOptions{Interval: time.Hour})
			var got revLog
			runWatcher(t, w, got.add)
			waitFor(t, "the first revision", 10*time.Second, func() bool { return got.last() == first })

			start := time.Now()
			second := tc.commit(t, work)
			waitFor(t, "fsnotify to deliver the new commit", 10*time.Second, func() bool { return got.last() == second })
			t.Logf("picked up %s in %s", second[:7], time.Since(start))
		})
	}
}

func TestWatcherCoalescesTriggers(t *testing.T) {
	work := newWorkRepo(t)
	work.commit("first", map[string]string{"f": "1"})
	s := openSource(t, work.dir, t.TempDir())
	w := NewWatcher(s, WatchOptions{Interval: time.Hour, NoFSNotify: true})
	release := make(chan struct{})
	handled := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- w.Run(ctx, func(context.Context, Revision) { handled <- struct{}{}; <-release })
	}()
	<-handled
	// While the handler runs, a burst of webhooks and ref changes arrives.
	for range 100 {
		w.Trigger()
	}
	close(release)
	waitFor(t, "the coalesced check", 10*time.Second, func() bool { return s.Stats().Lists >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Lists; got != 2 {
		t.Fatalf("100 triggers during a handler made %d checks in all, want 2", got)
	}
}

func TestWatcherRetriesUntilRepositoryAppears(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	s := openSource(t, dir, t.TempDir())
	w := NewWatcher(s, WatchOptions{Interval: time.Hour, NoFSNotify: true})
	var got revLog
	runWatcher(t, w, got.add)
	waitFor(t, "a failed check", 10*time.Second, func() bool { return s.Stats().Lists >= 1 })
	if got.last() != "" {
		t.Fatal("a revision from a missing repository")
	}
	r := newWorkRepo(t)
	sha := r.commit("late", map[string]string{"f": "1"})
	// Move a real repository into place; a backoff retry finds it.
	if err := os.Rename(r.dir, dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a retry to find the repository", 20*time.Second, func() bool { return got.last() == sha })
}
