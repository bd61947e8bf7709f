package source

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ErrNotInHistory is what FetchRevision wraps when the branch's history does not hold the
// commit: a force push took it away, or it never was on the branch.
var ErrNotInHistory = errors.New("commit is not in the branch's history")

// depths are the histories FetchRevision asks for in turn. Commits since the last
// accepted revision are usually few, so it starts small; it stops at the last one, as
// a director that missed thousands of commits has more to reckon with than policies.
var depths = []int{2, 8, 32, 128, 512, 2048, 4096}

// FetchRevision reads commit sha, deepening the mirror until it holds it. The mirror is
// shallow (the heads seen so far), so an older commit of the branch, such as the last
// revision a director accepted before commits came, is not in it until fetched; servers
// refuse to send a commit by sha alone, so this fetches the branch again with ever more
// history. A commit already in the mirror costs no network. The branch's reference stays
// the remote's head. It returns an error wrapping ErrNotInHistory when the branch's
// whole history, or its newest 4096 commits, do not hold sha.
func (s *Source) FetchRevision(ctx context.Context, sha string) (Revision, error) {
	h, err := parseSHA(sha)
	if err != nil {
		return Revision{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hasCommit(h) {
		return s.revision(h)
	}
	for _, depth := range depths {
		s.log.Info("deepening the mirror to reach a commit", "sha", sha, "depth", depth)
		head, err := s.deepen(ctx, depth)
		if err != nil {
			return Revision{}, err
		}
		if s.hasCommit(h) {
			return s.revision(h)
		}
		complete, err := s.complete(head)
		if err != nil {
			return Revision{}, err
		}
		if complete {
			return Revision{}, fmt.Errorf("%s of %s: %w (the mirror holds all of it; was it force-pushed away?)", sha, s.branch.Short(), ErrNotInHistory)
		}
	}
	return Revision{}, fmt.Errorf("%s is not among the newest %d commits of %s: %w", sha, depths[len(depths)-1], s.branch.Short(), ErrNotInHistory)
}

// deepen fetches the branch with depth commits of history, each fetch bounded by the
// source's timeout. go-git deepens a shallow repository this way (it sends its shallow
// commits and the server sends what lies between them and the new depth), but it never
// forgets a commit that stopped being shallow, so deepen does.
func (s *Source) deepen(ctx context.Context, depth int) (plumbing.Hash, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	head, err := s.fetch(ctx, depth)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if err := s.tidyShallow(); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("source cache %s: %w", s.dir, err)
	}
	return head, nil
}

// tidyShallow drops from the mirror's shallow list the commits whose parents are all in
// it now. Stale entries do no harm to reading, but every later fetch would claim them as
// history boundaries and be sent their parents again.
func (s *Source) tidyShallow() error {
	shallows, err := s.storage.Shallow()
	if err != nil {
		return err
	}
	var keep []plumbing.Hash
	for _, h := range shallows {
		c, err := object.GetCommit(s.repo.Storer, h)
		if err != nil {
			continue // not in the mirror: it bounds nothing
		}
		for _, p := range c.ParentHashes {
			if !s.hasCommit(p) {
				keep = append(keep, h)
				break
			}
		}
	}
	if len(keep) == len(shallows) {
		return nil
	}
	return s.storage.SetShallow(keep)
}

// complete reports whether the mirror holds every ancestor of head. go-git's shallow
// list is no witness (see deepen), so it walks the history.
func (s *Source) complete(head plumbing.Hash) (bool, error) {
	seen := map[plumbing.Hash]bool{head: true}
	queue := []plumbing.Hash{head}
	for len(queue) > 0 {
		c, err := object.GetCommit(s.repo.Storer, queue[0])
		queue = queue[1:]
		if err != nil {
			return false, fmt.Errorf("walk history in %s: %w", s.dir, err)
		}
		for _, p := range c.ParentHashes {
			if seen[p] {
				continue
			}
			if !s.hasCommit(p) {
				return false, nil
			}
			seen[p] = true
			queue = append(queue, p)
		}
	}
	return true, nil
}

func (s *Source) hasCommit(h plumbing.Hash) bool {
	_, err := s.repo.Storer.EncodedObject(plumbing.CommitObject, h)
	return err == nil
}

func parseSHA(sha string) (plumbing.Hash, error) {
	h := plumbing.NewHash(sha)
	if len(sha) != 40 || h.String() != sha {
		return plumbing.ZeroHash, fmt.Errorf("revision %q is not a full 40-hex commit sha", sha)
	}
	return h, nil
}
