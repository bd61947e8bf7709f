package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchOptions tune a Watcher; zero values take the defaults.
type WatchOptions struct {
	// Interval between polls when nothing else triggers a check; default 1m.
	Interval time.Duration
	// Jitter spreads polls by up to this fraction of Interval either way; default 0.1.
	Jitter float64
	// MaxBackoff caps the retry delay after a failed check; default Interval.
	MaxBackoff time.Duration
	// NoFSNotify turns off watching a local repository's refs.
	NoFSNotify bool
}

// Watcher decides when to check a Source: on poll, on a local ref change, on a webhook, or
// when asked. Triggers that arrive while a check or its handler runs coalesce into one
// more check.
type Watcher struct {
	src  *Source
	opts WatchOptions
	log  *slog.Logger
	kick chan struct{}
}

// NewWatcher returns a watcher for src; Run starts it.
func NewWatcher(src *Source, opts WatchOptions) *Watcher {
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.Jitter <= 0 {
		opts.Jitter = 0.1
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = opts.Interval
	}
	return &Watcher{src: src, opts: opts, log: src.log, kick: make(chan struct{}, 1)}
}

// Trigger asks for a check soon. It never blocks; pending requests coalesce.
func (w *Watcher) Trigger() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run checks the source at once and then whenever triggered or a poll is due, calling
// handle for every new head (handle runs in Run's goroutine, so it is never concurrent
// with itself). Failed checks are logged and retried with exponential backoff from one
// second up to MaxBackoff. Run returns when ctx is done.
func (w *Watcher) Run(ctx context.Context, handle func(context.Context, Revision)) error {
	if dir := w.src.LocalDir(); dir != "" && !w.opts.NoFSNotify {
		stop, err := w.watchRefs(ctx, dir)
		if err != nil {
			// Polling still works; say why pick-up is slower.
			w.log.Warn("not watching the local repository for commits; polling only", "err", err)
		} else {
			defer stop()
		}
	}
	backoff := time.Duration(0)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-w.kick:
		}
		rev, changed, err := w.src.Check(ctx)
		var next time.Duration
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			backoff = min(max(2*backoff, time.Second), w.opts.MaxBackoff)
			next = backoff
			w.log.Error("checking the repository failed", "err", err, "retry_in", next.String())
		default:
			backoff = 0
			next = w.jittered()
			if changed {
				w.log.Info("new revision", "sha", rev.SHA, "subject", rev.Subject())
				handle(ctx, rev)
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

func (w *Watcher) jittered() time.Duration {
	spread := float64(w.opts.Interval) * w.opts.Jitter
	return w.opts.Interval + time.Duration((rand.Float64()*2-1)*spread)
}

// watchRefs triggers a check when the branch's ref, packed-refs or HEAD change. fsnotify
// watches directories, not files: git replaces refs by renaming a .lock file over them,
// which a watch on the file itself would lose.
func (w *Watcher) watchRefs(ctx context.Context, repoDir string) (func(), error) {
	gitDir, err := findGitDir(repoDir)
	if err != nil {
		return nil, err
	}
	branch := filepath.Join(gitDir, filepath.FromSlash(w.src.branch.String()))
	wanted := map[string]bool{
		branch:                               true,
		filepath.Join(gitDir, "packed-refs"): true,
		filepath.Join(gitDir, "HEAD"):        true,
	}
	nw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("fsnotify: %w", err)
	}
	// Watch gitDir and every directory down to the branch's, as far as they exist; the
	// rest are added when they appear.
	dirs := []string{gitDir}
	for d := filepath.Dir(branch); d != gitDir; d = filepath.Dir(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := nw.Add(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			nw.Close()
			return nil, fmt.Errorf("watch %s: %w", d, err)
		}
	}
	isDir := map[string]bool{}
	for _, d := range dirs {
		isDir[d] = true
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer nw.Close()
		// A commit touches several files in a burst; wait for it to settle so the check
		// sees the finished ref.
		const settle = 30 * time.Millisecond
		debounce := time.NewTimer(time.Hour)
		debounce.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-nw.Events:
				if !ok {
					return
				}
				if ev.Op == fsnotify.Chmod {
					continue
				}
				if isDir[ev.Name] && ev.Has(fsnotify.Create) {
					_ = nw.Add(ev.Name)
				}
				if wanted[ev.Name] || (isDir[ev.Name] && ev.Has(fsnotify.Create)) {
					debounce.Reset(settle)
				}
			case err, ok := <-nw.Errors:
				if !ok {
					return
				}
				w.log.Warn("watching the local repository", "err", err)
			case <-debounce.C:
				w.Trigger()
			}
		}
	}()
	return func() { cancel(); <-done }, nil
}

// findGitDir returns the git directory of a work tree (its .git) or of a bare repository.
func findGitDir(dir string) (string, error) {
	dotgit := filepath.Join(dir, ".git")
	fi, err := os.Stat(dotgit)
	switch {
	case err == nil && fi.IsDir():
		return dotgit, nil
	case err == nil:
		// A linked work tree: ".git" is a file saying "gitdir: <path>".
		b, err := os.ReadFile(dotgit)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", dotgit, err)
		}
		p, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir: ")
		if !ok {
			return "", fmt.Errorf("%s is neither a directory nor a gitdir pointer", dotgit)
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		// Branch refs live in the common directory shared by all work trees.
		if c, err := os.ReadFile(filepath.Join(p, "commondir")); err == nil {
			common := strings.TrimSpace(string(c))
			if !filepath.IsAbs(common) {
				common = filepath.Join(p, common)
			}
			return filepath.Clean(common), nil
		}
		return p, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err == nil {
		return dir, nil
	}
	return "", fmt.Errorf("%s is not a git repository", dir)
}
