package policy

import (
	"context"
	"fmt"
	"io/fs"
	"sync"

	"github.com/bosun-gitops/bosun/policy/signing"
)

// Gate holds the policies of the last accepted revision, so that a commit is always judged
// by the policies before it: a commit that deletes or weakens a policy is still judged by
// it, and its own policies take over only once it is accepted. Safe for concurrent use.
//
// When the director's config names a separate trusted ref or repository for policies,
// the reconciler calls Set whenever that ref moves and passes nil as Judge's proposed tree.
type Gate struct {
	dir      string
	opts     []Option
	verifier *signing.Verifier
	required bool
	mu       sync.RWMutex
	cur      *Engine
}

// VerifySignatures makes the gate check every commit's signature against the trusted keys
// of the director's config (never the repository's) and show the outcome to policies as
// input.commit.signature. When required, a commit not validly signed by one of those keys
// is rejected like a policy denial. Call before the gate is used.
func (g *Gate) VerifySignatures(v *signing.Verifier, required bool) {
	g.verifier, g.required = v, required
}

// NewGate returns a gate judging with e (nil when no revision was accepted yet: the first
// commit is then judged by its own policies, there being nothing older to trust). dir is
// where policies live in a revision's tree; opts apply to every Engine it loads.
func NewGate(e *Engine, dir string, opts ...Option) *Gate {
	return &Gate{cur: e, dir: dir, opts: opts}
}

// Engine returns the policies judging now.
func (g *Gate) Engine() *Engine {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.cur
}

// Set replaces the judging policies (policies from a trusted ref that moved).
func (g *Gate) Set(e *Engine) {
	g.mu.Lock()
	g.cur = e
	g.mu.Unlock()
}

// Verdict is a Decision plus the proposed revision's policies, which judge the next commit
// once this one is accepted.
type Verdict struct {
	Decision
	next *Engine
}

// Judge evaluates in with the current policies. When proposed (the judged revision's tree)
// is given, its policies must load too: a commit whose policies do not compile is
// rejected with the file and line, and the current policies keep judging.
func (g *Gate) Judge(ctx context.Context, in Input, proposed fs.FS) (Verdict, error) {
	var next *Engine
	var loadErr error
	if proposed != nil {
		next, loadErr = Load(ctx, proposed, g.dir, g.opts...)
	}
	var unsigned *Message
	if g.verifier != nil {
		r := g.verifier.Verify(in.Commit.Payload, in.Commit.ArmoredSignature)
		in.Commit.Signature = Signature{Status: string(r.Status), Signer: r.Signer, Type: r.Type}
		if g.required && r.Status != signing.Valid {
			unsigned = &Message{Rule: "bosun.signature", Msg: signatureProblem(in.Commit.SHA, r)}
		}
	}
	judge := g.Engine()
	if judge == nil {
		if next == nil {
			if loadErr == nil {
				loadErr = fmt.Errorf("no policies to judge with: no revision accepted yet and none proposed")
			}
			return Verdict{Decision: rejected("", loadErr)}, loadErr
		}
		judge = next
	}
	d, err := judge.Evaluate(ctx, in)
	if unsigned != nil {
		d.Denies = append(d.Denies, *unsigned)
	}
	if loadErr != nil {
		d.Denies = append(d.Denies, Message{Rule: "bosun.policies_load", Msg: "the policies in this commit do not load, so it is rejected: " + loadErr.Error()})
		return Verdict{Decision: d}, loadErr
	}
	return Verdict{Decision: d, next: next}, err
}

// Accept installs the policies of an accepted revision to judge the commits after it. A
// rejected verdict changes nothing.
func (g *Gate) Accept(v Verdict) {
	if !v.Allowed() || v.next == nil {
		return
	}
	g.Set(v.next)
}

func signatureProblem(sha string, r signing.Result) string {
	const want = "; the director accepts only commits signed by a key in its config"
	switch r.Status {
	case signing.Unsigned:
		return fmt.Sprintf("commit %s is not signed%s", sha, want)
	case signing.Untrusted:
		return fmt.Sprintf("commit %s is signed by %s key %s, which is not trusted%s", sha, r.Type, r.Signer, want)
	}
	return fmt.Sprintf("commit %s has a %s signature that does not verify%s", sha, r.Type, want)
}

func rejected(revision string, err error) Decision {
	return Decision{PolicyRevision: revision, Denies: []Message{{Rule: "bosun.policies_load", Msg: err.Error()}}, Warnings: []Message{}, Exceptions: []Message{}}
}

// NextRevision is the revision of the policies that judge next once v is accepted.
func (v Verdict) NextRevision() string {
	if v.next == nil {
		return ""
	}
	return v.next.Revision()
}
