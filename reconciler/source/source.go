package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Config says which branch of which repository to track and where to keep its mirror.
type Config struct {
	Remote Remote
	// Branch defaults to "main".
	Branch string
	// CacheDir holds the bare, single-branch, shallow mirror; it survives restarts so an
	// unchanged repository costs one ref listing, not a clone.
	CacheDir string
	// Timeout bounds each Check's network operations; default 60s, as Flux's.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Source tracks one branch of one repository. Its methods are safe for concurrent use.
type Source struct {
	remote  Remote
	ep      endpoint
	branch  plumbing.ReferenceName
	dir     string
	timeout time.Duration
	log     *slog.Logger

	// mu guards the cache repository: go-git's object storage is not safe for concurrent
	// use, and revisions read through it.
	mu      sync.Mutex
	storage *filesystem.Storage
	repo    *git.Repository
	last    plumbing.Hash

	lists, fetches atomic.Int64
}

// Stats counts network operations, so callers can see that unchanged checks stay cheap.
type Stats struct {
	Lists   int64 // ref listings (ls-remote)
	Fetches int64
}

// Open opens or creates the mirror in cfg.CacheDir. It does not touch the network.
func Open(cfg Config) (*Source, error) {
	ep, err := cfg.Remote.resolve()
	if err != nil {
		return nil, err
	}
	if cfg.Branch == "" {
		cfg.Branch = "main"
	}
	branch := plumbing.NewBranchReferenceName(cfg.Branch)
	if err := branch.Validate(); err != nil {
		return nil, fmt.Errorf("branch %q: %w", cfg.Branch, err)
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("source: a cache directory is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	s := &Source{remote: cfg.Remote, ep: ep, branch: branch, dir: cfg.CacheDir, timeout: cfg.Timeout,
		log: cfg.Logger.With("repository", cfg.Remote.String(), "branch", cfg.Branch)}
	if err := s.openCache(); err != nil {
		return nil, err
	}
	return s, nil
}

// Branch is the tracked branch's short name.
func (s *Source) Branch() string { return s.branch.Short() }

// Remote is the repository this source tracks.
func (s *Source) Remote() Remote { return s.remote }

// LocalDir is the repository's directory when it is a local path or file:// URL, else "".
func (s *Source) LocalDir() string { return s.ep.dir }

// Stats reports how many listings and fetches this source has made.
func (s *Source) Stats() Stats { return Stats{Lists: s.lists.Load(), Fetches: s.fetches.Load()} }

func (s *Source) openCache() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("source cache %s: %w", s.dir, err)
	}
	st := filesystem.NewStorageWithOptions(osfs.New(s.dir), cache.NewObjectLRUDefault(),
		filesystem.Options{KeepDescriptors: true})
	repo, err := git.Open(st, nil)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.Init(st, nil)
	}
	if err != nil {
		st.Close()
		return fmt.Errorf("source cache %s: %w", s.dir, err)
	}
	// The URL may change between runs; the mirror's objects are still good.
	_ = repo.DeleteRemote("origin")
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{s.ep.url},
		Fetch: []config.RefSpec{s.refSpec()}}); err != nil {
		st.Close()
		return fmt.Errorf("source cache %s: %w", s.dir, err)
	}
	s.storage, s.repo = st, repo
	return nil
}

func (s *Source) refSpec() config.RefSpec {
	return config.RefSpec("+" + s.branch.String() + ":" + s.branch.String())
}

// Close releases the mirror's open files.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storage.Close()
}

// Check lists the remote branch and fetches only when its head is not already in the
// mirror. It returns the head and whether it differs from the one the previous Check
// returned (the first successful Check always reports a change).
func (s *Source) Check(ctx context.Context) (Revision, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	head, err := s.lsRemote(ctx)
	if err != nil {
		return Revision{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.repo.Storer.EncodedObject(plumbing.CommitObject, head); err != nil {
		if head, err = s.fetch(ctx, 1); err != nil {
			return Revision{}, false, err
		}
	} else if err := s.repo.Storer.SetReference(plumbing.NewHashReference(s.branch, head)); err != nil {
		return Revision{}, false, fmt.Errorf("source cache %s: %w", s.dir, err)
	}
	rev, err := s.revision(head)
	if err != nil {
		return Revision{}, false, err
	}
	changed := head != s.last
	s.last = head
	return rev, changed, nil
}

func (s *Source) lsRemote(ctx context.Context) (plumbing.Hash, error) {
	s.lists.Add(1)
	r := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{s.ep.url}})
	refs, err := r.ListContext(ctx, &git.ListOptions{Auth: s.ep.auth})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return plumbing.ZeroHash, fmt.Errorf("list refs of %s: the repository is empty (no branch %s yet)", s.remote, s.branch.Short())
	}
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("list refs of %s: %w%s", s.remote, s.remote.Redact(err), explain(err, s.ep.auth != nil))
	}
	for _, ref := range refs {
		if ref.Name() == s.branch {
			return ref.Hash(), nil
		}
	}
	return plumbing.ZeroHash, fmt.Errorf("list refs of %s: branch %s does not exist", s.remote, s.branch.Short())
}

// fetch brings the branch's head into the mirror with depth commits of its history (the
// head it found may be newer than the one Check listed). Shallow fetches into a shallow
// mirror are go-git's weak spot (force pushes, missing parents), so a failed fetch wipes
// the mirror and retries once from scratch, as Flux's throw-away clones would.
func (s *Source) fetch(ctx context.Context, depth int) (plumbing.Hash, error) {
	head, err := s.fetchOnce(ctx, depth)
	if err != nil && ctx.Err() == nil && !unreachable(err) {
		s.log.Warn("fetch into the mirror failed; starting the mirror afresh", "err", err)
		s.storage.Close()
		if rmErr := os.RemoveAll(s.dir); rmErr != nil {
			return plumbing.ZeroHash, fmt.Errorf("reset source cache %s: %w", s.dir, rmErr)
		}
		if oerr := s.openCache(); oerr != nil {
			return plumbing.ZeroHash, oerr
		}
		head, err = s.fetchOnce(ctx, depth)
	}
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("fetch %s of %s: %w%s", s.branch.Short(), s.remote, err, explain(err, s.ep.auth != nil))
	}
	s.log.Debug("fetched", "depth", depth, "head", head.String())
	return head, nil
}

func (s *Source) fetchOnce(ctx context.Context, depth int) (plumbing.Hash, error) {
	s.fetches.Add(1)
	err := s.repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin",
		RefSpecs: []config.RefSpec{s.refSpec()}, Depth: depth, Tags: git.NoTags, Force: true, Auth: s.ep.auth})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return plumbing.ZeroHash, s.remote.Redact(err)
	}
	ref, err := s.repo.Storer.Reference(s.branch)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("branch missing after fetch: %w", err)
	}
	if _, err := s.repo.Storer.EncodedObject(plumbing.CommitObject, ref.Hash()); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("commit %s missing after fetch: %w", ref.Hash(), err)
	}
	return ref.Hash(), nil
}

// unreachable reports errors that say nothing about the mirror's health.
func unreachable(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, transport.ErrAuthenticationRequired) ||
		errors.Is(err, transport.ErrAuthorizationFailed) || errors.Is(err, transport.ErrRepositoryNotFound)
}

// Head returns the mirror's current head of the branch without touching the network.
func (s *Source) Head() (Revision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref, err := s.repo.Storer.Reference(s.branch)
	if err != nil {
		return Revision{}, fmt.Errorf("source cache %s has no %s yet: %w", s.dir, s.branch.Short(), err)
	}
	return s.revision(ref.Hash())
}

// Revision reads a commit already in the mirror. With a shallow mirror that is the heads
// seen so far, not their ancestors; FetchRevision fetches those.
func (s *Source) Revision(sha string) (Revision, error) {
	h, err := parseSHA(sha)
	if err != nil {
		return Revision{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revision(h)
}

func (s *Source) revision(h plumbing.Hash) (Revision, error) {
	c, err := object.GetCommit(s.repo.Storer, h)
	if err != nil {
		return Revision{}, fmt.Errorf("read commit %s from %s: %w", h, s.dir, err)
	}
	return newRevision(c, s)
}
