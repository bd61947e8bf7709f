package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/bosun-gitops/bosun/reconciler/source"
)

// Config says where status commits go.
type Config struct {
	// Remote is the manifest repository; for a local path, commits are pushed straight
	// into it.
	Remote source.Remote
	// Branch defaults to "bosun/status".
	Branch string
	// CacheDir holds the writer's own bare clone of the status branch; not the source's cache.
	CacheDir string
	// Name and Email sign the commits as author and committer; default Bosun <bosun@localhost>.
	Name, Email string
	// Attempts bounds pushes per Write when the branch moved underneath; default 5.
	Attempts int
	// Redact is applied to free text before it is written; see the package comment.
	Redact func(string) string
	Logger *slog.Logger
	// Now stamps commits; default time.Now.
	Now func() time.Time
}

// Writer commits outcomes to the status branch. It is safe for concurrent use, and several
// writers (directors) may push to one repository: a push that loses the race is rebased
// onto the new head and retried.
type Writer struct {
	cfg    Config
	url    string
	auth   transport.AuthMethod
	branch plumbing.ReferenceName
	remote plumbing.ReferenceName // remote-tracking ref of branch
	log    *slog.Logger

	mu      sync.Mutex
	storage *filesystem.Storage
	repo    *git.Repository
	// pending outcomes not yet pushed, oldest first; a later Write or Flush retries them.
	pending []change
}

type change struct {
	path    string
	content []byte
	message string
}

// maxPending bounds outcomes kept while the repository refuses pushes.
const maxPending = 1000

// Open opens or creates the writer's clone in cfg.CacheDir. It does not touch the network.
func Open(cfg Config) (*Writer, error) {
	url, auth, err := cfg.Remote.Endpoint()
	if err != nil {
		return nil, err
	}
	if cfg.Branch == "" {
		cfg.Branch = "bosun/status"
	}
	branch := plumbing.NewBranchReferenceName(cfg.Branch)
	if err := branch.Validate(); err != nil {
		return nil, fmt.Errorf("status branch %q: %w", cfg.Branch, err)
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("status: a cache directory is required")
	}
	if cfg.Name == "" {
		cfg.Name = "Bosun"
	}
	if cfg.Email == "" {
		cfg.Email = "bosun@localhost"
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Writer{cfg: cfg, url: url, auth: auth, branch: branch,
		remote: plumbing.NewRemoteReferenceName("origin", cfg.Branch),
		log:    cfg.Logger.With("repository", cfg.Remote.String(), "branch", cfg.Branch)}
	if err := w.openCache(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) openCache() error {
	if err := os.MkdirAll(w.cfg.CacheDir, 0o700); err != nil {
		return fmt.Errorf("status cache %s: %w", w.cfg.CacheDir, err)
	}
	st := filesystem.NewStorage(osfs.New(w.cfg.CacheDir), cache.NewObjectLRUDefault())
	repo, err := git.Open(st, nil)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.Init(st, nil)
	}
	if err == nil {
		_ = repo.DeleteRemote("origin")
		_, err = repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{w.url},
			Fetch: []config.RefSpec{w.fetchSpec()}})
	}
	if err != nil {
		return fmt.Errorf("status cache %s: %w", w.cfg.CacheDir, err)
	}
	w.storage, w.repo = st, repo
	return nil
}

func (w *Writer) fetchSpec() config.RefSpec {
	return config.RefSpec("+" + w.branch.String() + ":" + w.remote.String())
}

// Branch is the status branch's short name.
func (w *Writer) Branch() string { return w.branch.Short() }

// Write commits o as deployments/<name>.yml and pushes it. It returns the new commit's
// sha, or "" when the file on the branch already says exactly this. When the push keeps
// failing the outcome stays pending, retried by the next Write or Flush, and the error
// says why.
func (w *Writer) Write(ctx context.Context, o Outcome) (string, error) {
	o = o.redacted(w.cfg.Redact)
	content, err := Render(o)
	if err != nil {
		return "", err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = append(w.pending, change{path: o.Path(), content: content, message: Message(o)})
	if n := len(w.pending) - maxPending; n > 0 {
		w.log.Warn("dropping status outcomes that could not be pushed", "count", n)
		w.pending = slices.Delete(w.pending, 0, n)
	}
	return w.flush(ctx)
}

// Flush pushes outcomes left pending by failed pushes.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) == 0 {
		return nil
	}
	_, err := w.flush(ctx)
	return err
}

// Pending is how many outcomes wait for a successful push.
func (w *Writer) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

func (w *Writer) flush(ctx context.Context) (string, error) {
	var lastErr error
	for attempt := 1; attempt <= w.cfg.Attempts; attempt++ {
		if attempt > 1 {
			// Writers that collided would collide again in lockstep without jitter.
			d := time.Duration(attempt*attempt)*20*time.Millisecond + rand.N(50*time.Millisecond)
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("push status to %s: %w", w.cfg.Remote, ctx.Err())
			case <-time.After(d):
			}
		}
		base, err := w.fetch(ctx)
		if err != nil {
			lastErr = err
			if permanent(err) || ctx.Err() != nil {
				break
			}
			continue
		}
		head, err := w.commitPending(base)
		if err != nil {
			return "", err
		}
		if head == base {
			w.pending = nil
			return "", nil
		}
		if err := w.push(ctx, base, head); err != nil {
			lastErr = err
			w.log.Debug("status push lost a race or failed; retrying", "attempt", attempt, "err", err)
			if permanent(err) || ctx.Err() != nil {
				break
			}
			continue
		}
		w.pending = nil
		return head.String(), nil
	}
	return "", fmt.Errorf("push status to %s (branch %s): gave up after %d attempts, %d outcome(s) kept for the next try: %w",
		w.cfg.Remote, w.branch.Short(), w.cfg.Attempts, len(w.pending), lastErr)
}

// permanent reports errors a retry will not fix.
func permanent(err error) bool {
	return errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) ||
		errors.Is(err, transport.ErrRepositoryNotFound) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}

// fetch updates the remote-tracking ref and returns the remote head, zero when the branch
// does not exist yet.
func (w *Writer) fetch(ctx context.Context) (plumbing.Hash, error) {
	err := w.repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{w.fetchSpec()},
		Depth: 1, Tags: git.NoTags, Force: true, Auth: w.auth})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
	case isMissingRef(err), errors.Is(err, transport.ErrEmptyRemoteRepository):
		// First outcome ever: the branch starts as an orphan.
		_ = w.repo.Storer.RemoveReference(w.remote)
		return plumbing.ZeroHash, nil
	default:
		return plumbing.ZeroHash, fmt.Errorf("fetch %s: %w", w.branch.Short(), w.cfg.Remote.Redact(err))
	}
	ref, err := w.repo.Storer.Reference(w.remote)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("fetch %s: %w", w.branch.Short(), err)
	}
	return ref.Hash(), nil
}

func isMissingRef(err error) bool {
	var noMatch git.NoMatchingRefSpecError
	return errors.As(err, &noMatch) || strings.Contains(err.Error(), "couldn't find remote ref")
}

// commitPending commits every pending change on top of base, skipping those whose file
// already has that content, and returns the resulting head.
func (w *Writer) commitPending(base plumbing.Hash) (plumbing.Hash, error) {
	head := base
	var tree plumbing.Hash
	if !base.IsZero() {
		c, err := object.GetCommit(w.repo.Storer, base)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read status head %s: %w", base, err)
		}
		tree = c.TreeHash
	}
	for _, ch := range w.pending {
		blob, err := w.putBlob(ch.content)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		newTree, err := w.putFile(tree, strings.Split(ch.path, "/"), blob)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("build status tree: %w", err)
		}
		if newTree == tree {
			continue
		}
		sig := object.Signature{Name: w.cfg.Name, Email: w.cfg.Email, When: w.cfg.Now()}
		c := &object.Commit{Author: sig, Committer: sig, Message: ch.message, TreeHash: newTree}
		if !head.IsZero() {
			c.ParentHashes = []plumbing.Hash{head}
		}
		if head, err = w.store(c); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("write status commit: %w", err)
		}
		tree = newTree
	}
	return head, nil
}

type encoder interface {
	Encode(plumbing.EncodedObject) error
}

func (w *Writer) store(v encoder) (plumbing.Hash, error) {
	o := w.repo.Storer.NewEncodedObject()
	if err := v.Encode(o); err != nil {
		return plumbing.ZeroHash, err
	}
	return w.repo.Storer.SetEncodedObject(o)
}

func (w *Writer) putBlob(content []byte) (plumbing.Hash, error) {
	o := w.repo.Storer.NewEncodedObject()
	o.SetType(plumbing.BlobObject)
	wr, err := o.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := wr.Write(content); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := wr.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return w.repo.Storer.SetEncodedObject(o)
}

// putFile returns the tree that is tree (zero: empty) with path set to blob.
func (w *Writer) putFile(tree plumbing.Hash, path []string, blob plumbing.Hash) (plumbing.Hash, error) {
	var entries []object.TreeEntry
	if !tree.IsZero() {
		t, err := object.GetTree(w.repo.Storer, tree)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries = slices.Clone(t.Entries)
	}
	i := slices.IndexFunc(entries, func(e object.TreeEntry) bool { return e.Name == path[0] })
	entry := object.TreeEntry{Name: path[0], Mode: filemode.Regular, Hash: blob}
	if len(path) > 1 {
		sub := plumbing.ZeroHash
		if i >= 0 && entries[i].Mode == filemode.Dir {
			sub = entries[i].Hash
		}
		h, err := w.putFile(sub, path[1:], blob)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entry = object.TreeEntry{Name: path[0], Mode: filemode.Dir, Hash: h}
	}
	if i >= 0 {
		if entries[i] == entry {
			return tree, nil
		}
		entries[i] = entry
	} else {
		entries = append(entries, entry)
	}
	// git orders a directory as if its name ended in "/".
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	slices.SortFunc(entries, func(a, b object.TreeEntry) int { return strings.Compare(key(a), key(b)) })
	return w.store(&object.Tree{Entries: entries})
}

// push moves the remote branch from base to head, only if it is still at base: the server
// compares and swaps, so two writers can never overwrite each other.
func (w *Writer) push(ctx context.Context, base, head plumbing.Hash) error {
	if err := w.repo.Storer.SetReference(plumbing.NewHashReference(w.branch, head)); err != nil {
		return fmt.Errorf("status cache: %w", err)
	}
	opts := &git.PushOptions{RemoteName: "origin", Auth: w.auth,
		RefSpecs: []config.RefSpec{config.RefSpec(w.branch.String() + ":" + w.branch.String())}}
	if !base.IsZero() {
		opts.ForceWithLease = &git.ForceWithLease{RefName: w.branch, Hash: base}
	}
	err := w.repo.PushContext(ctx, opts)
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("push %s: %w", w.branch.Short(), w.cfg.Remote.Redact(err))
	}
	return nil
}

// Close releases the writer's clone.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.storage.Close()
}
