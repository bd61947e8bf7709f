package reconciler

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/policy"
	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/reconciler/source"
	"github.com/bosun-gitops/bosun/reconciler/status"
	"github.com/bosun-gitops/bosun/state"
)

// Store is the part of the director's state the reconciler uses; state/postgres.Store
// satisfies it.
type Store interface {
	Revision(ctx context.Context, sha string) (state.Revision, error)
	LastAccepted(ctx context.Context) (state.Revision, error)
	Judge(ctx context.Context, j state.Judgement) ([]state.Task, error)
	Verdict(ctx context.Context, sha string) (state.Verdict, error)
	DeploymentRenders(ctx context.Context) ([]state.DeploymentRender, error)
	AppliedInstances(ctx context.Context, deployment string) ([]state.AppliedInstance, error)
	PutAppliedInstances(ctx context.Context, put []state.AppliedInstance, forget []string) error
	ForgetDeployment(ctx context.Context, deployment string) error
	Instances(ctx context.Context, deployment string) ([]state.Instance, error)
	VMAddresses(ctx context.Context) ([]string, error)
	ReserveAddresses(ctx context.Context, deployment string, ips map[string][]string) (map[string][]string, error)
	ReservedAddresses(ctx context.Context, except string) (map[string][]string, error)
	AppliedByInstance(ctx context.Context, deployment string) (map[string]state.Applied, error)
	PutDeployment(ctx context.Context, d state.Deployment) error
	DeleteDeployment(ctx context.Context, name string) error
	Enqueue(ctx context.Context, t state.Task) (state.Task, error)
	SharedLinks(ctx context.Context, deployment string) ([]state.SharedLink, error)
	PutSharedLinks(ctx context.Context, deployment string, links []state.SharedLink) error
	ConsumedLinks(ctx context.Context, consumer string) (map[string][]state.SharedLink, error)
	PutConsumedLinks(ctx context.Context, consumer string, links map[string][]state.SharedLink) error
}

// Suspensions says whether an operator suspended a deployment; *postgres.Store.
type Suspensions interface {
	DeploymentSuspended(ctx context.Context, deployment string) (bool, error)
}

// suspended reports whether bosun.yml or an operator suspended deployment name.
func (r *Reconciler) suspended(ctx context.Context, cfg RepoConfig, name string) bool {
	if cfg.Suspended(name) {
		return true
	}
	if r.cfg.Suspensions == nil {
		return false
	}
	s, err := r.cfg.Suspensions.DeploymentSuspended(ctx, name)
	if err != nil {
		// Unknown is not suspended: a deploy the operator did not stop is the safer miss
		// than a fleet that silently stops converging; the error is logged.
		r.log.Warn("could not read the deployment's suspension; treating it as not suspended", "deployment", name, "err", err)
		return false
	}
	return s
}

// Converger carries out tasks: reconciler/converge.Executor satisfies it.
type Converger interface {
	Run(ctx context.Context, t converge.Task, emit func(state.TaskEvent) error) (converge.Result, error)
	Act(ctx context.Context, deployment string, instanceIDs []string, p state.ActionParams, emit func(state.TaskEvent) error) (converge.Result, error)
}

// Gate judges revisions with the last accepted revision's policies; *policy.Gate.
type Gate interface {
	Judge(ctx context.Context, in policy.Input, proposed fs.FS) (policy.Verdict, error)
	Accept(v policy.Verdict)
	Engine() *policy.Engine
	Set(e *policy.Engine)
}

// StatusWriter commits outcomes to the status branch; *status.Writer.
type StatusWriter interface {
	Write(ctx context.Context, o status.Outcome) (string, error)
}

// Source is the tracked branch; *source.Source.
type Source interface {
	Check(ctx context.Context) (source.Revision, bool, error)
	FetchRevision(ctx context.Context, sha string) (source.Revision, error)
}

// Watcher calls handle for every new head; *source.Watcher. Optional: without one the
// reconciler polls its Source every PollInterval.
type Watcher interface {
	Run(ctx context.Context, handle func(context.Context, source.Revision)) error
	Trigger()
}

// Cloud answers whether a VM exists, for the drift check; any cpi.CPI.
type Cloud interface {
	HasVM(ctx context.Context, cid cpi.VMCID) (bool, error)
}

// Config is what a Reconciler is made of.
type Config struct {
	Source    Source
	Watcher   Watcher
	Store     Store
	Gate      Gate
	Converger Converger
	Status    StatusWriter
	// StatusBranch is the branch Status writes to, compared with bosun.yml's status_branch.
	StatusBranch string
	Blobs        blobstore.Store
	Renderer     *Renderer
	// Cloud enables the drift check every DriftInterval (default 1m); nil disables it.
	Cloud         Cloud
	DriftInterval time.Duration
	// DriftMeltdown keeps the drift check from recreating VMs when many of a deployment's
	// are missing at once (a cloud outage, a cloud API answering wrongly): then it
	// reports, as the health monitor's meltdown guard alerts rather than resurrects.
	// Zero: at least 5 instances and 20% of the deployment, the monitor's defaults.
	DriftMeltdown Meltdown
	// Agents adds the agents' side to the drift check (get_state of every instance whose
	// VM exists) and enables it like Cloud does; nil checks VMs only.
	Agents Agents
	// PollInterval is how often Run checks the source when there is no Watcher (default 30s).
	PollInterval time.Duration
	Logger       *slog.Logger
	// PolicySource, when set, is a separate trusted ref or repository named in the
	// director's config: the policies/ at its head judge every commit, and the judged
	// repository's own policies are never loaded. Its head is checked before each
	// judgement; a source that cannot be read or whose policies do not compile rejects.
	PolicySource Source
	// OnAccepted, when set, is handed bosun.yml of each accepted revision, and of the last
	// accepted one when the reconciler starts (the health monitor's resurrection rules
	// come from it). It runs under the reconciler's lock and must not block.
	OnAccepted func(RepoConfig)
	// Suspensions, when set, holds deployments an operator suspended through the API
	// (bosun suspend); they are judged and recorded like the others but not converged.
	Suspensions Suspensions
	// NewID makes instance ids (default: random UUIDs).
	NewID func() string
	Now   func() time.Time
}

// Reconciler turns new commits into tasks and tasks into a converged fleet and status
// commits.
type Reconciler struct {
	cfg Config
	log *slog.Logger

	// mu serialises judging: one revision at a time, in order.
	mu     sync.Mutex
	inited bool
	prev   *Rendered // last accepted revision, rendered
	last   string    // last judged sha
	// shown is prev for readers that must not wait for a judgement in progress (the
	// API's observed state): set with prev.
	shown atomic.Pointer[Rendered]
	// policySHA is the PolicySource head whose policies the gate holds.
	policySHA string
	// waiting is a head the watcher saw that could not be judged (the trusted policy
	// source unreadable): judgeWaiting judges it again until it can be.
	waiting source.Revision
	// renderMu serialises renders, so the judge and task handlers never generate the same
	// variable twice; cache holds revisions rendered recently, by sha.
	renderMu sync.Mutex
	cacheMu  sync.Mutex
	cache    map[string]*Rendered
	order    []string

	driftMu   sync.Mutex
	driftSeen map[string]map[string]bool // deployment → the drift items last seen (acted on)
}

// New returns a reconciler; Source, Store, Gate, Converger, Status and Blobs are required.
func New(cfg Config) (*Reconciler, error) {
	switch {
	case cfg.Source == nil:
		return nil, errors.New("reconciler: no source")
	case cfg.Store == nil:
		return nil, errors.New("reconciler: no store")
	case cfg.Gate == nil:
		return nil, errors.New("reconciler: no policy gate")
	case cfg.Converger == nil:
		return nil, errors.New("reconciler: no converger")
	case cfg.Status == nil:
		return nil, errors.New("reconciler: no status writer")
	case cfg.Blobs == nil:
		return nil, errors.New("reconciler: no blobstore")
	}
	if cfg.Renderer == nil {
		cfg.Renderer = &Renderer{}
	}
	if cfg.Renderer.Releases == nil {
		cfg.Renderer.Releases = &Releases{}
	}
	if cfg.Renderer.Vars == nil {
		cfg.Renderer.Vars = &MemoryVariables{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NewID == nil {
		cfg.NewID = newUUID
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DriftMeltdown.MinDown <= 0 {
		cfg.DriftMeltdown.MinDown = 5
	}
	if cfg.DriftMeltdown.Percent <= 0 {
		cfg.DriftMeltdown.Percent = 0.2
	}
	if cfg.DriftInterval <= 0 {
		cfg.DriftInterval = time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 30 * time.Second
	}
	return &Reconciler{cfg: cfg, log: cfg.Logger, cache: map[string]*Rendered{}, driftSeen: map[string]map[string]bool{}}, nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Name names the director role.
func (r *Reconciler) Name() string { return "reconciler" }

// Run judges every new head of the source until ctx ends, and checks for drift.
func (r *Reconciler) Run(ctx context.Context) error {
	r.mu.Lock()
	err := r.init(ctx)
	r.mu.Unlock()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	if r.cfg.Cloud != nil || r.cfg.Agents != nil {
		wg.Go(func() { r.driftLoop(ctx) })
	}
	defer wg.Wait()
	if r.cfg.Watcher != nil {
		wg.Go(func() { r.judgeWaiting(ctx) })
		return r.cfg.Watcher.Run(ctx, func(ctx context.Context, rev source.Revision) {
			r.mu.Lock()
			defer r.mu.Unlock()
			_, err := r.judge(ctx, rev, false)
			if err != nil && ctx.Err() == nil {
				r.log.Error("judge revision", "sha", rev.Short(), "err", err)
			}
			// The newest head is the one to wait with; an older waiting one is superseded.
			r.waiting = source.Revision{}
			if errors.Is(err, errPolicySourceUnreadable) {
				r.waiting = rev
			}
		})
	}
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		if _, err := r.ReconcileNow(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("reconcile", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// judgeWaiting judges again, every poll interval, the head the watcher saw while the
// trusted policy source could not be read: the watcher calls only when the head moves.
func (r *Reconciler) judgeWaiting(ctx context.Context) {
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		if rev := r.waiting; rev.SHA != "" {
			_, err := r.judge(ctx, rev, false)
			switch {
			case ctx.Err() != nil:
			case errors.Is(err, errPolicySourceUnreadable):
				r.log.Warn("revision still waits for the trusted policy source", "sha", rev.Short(), "err", err)
			default:
				if err != nil {
					r.log.Error("judge revision", "sha", rev.Short(), "err", err)
				}
				r.waiting = source.Revision{}
			}
		}
		r.mu.Unlock()
	}
}

// RepoConfig is bosun.yml of the last accepted revision (the health monitor reads each
// deployment's resurrection settings from it); the zero value before any was accepted.
func (r *Reconciler) RepoConfig() RepoConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prev == nil {
		return RepoConfig{}
	}
	return r.prev.Config
}

// Redact replaces every variable value the reconciler has rendered lately in s: status
// writers apply it to free text (errors, log tails) before committing.
func (r *Reconciler) Redact(s string) string {
	r.cacheMu.Lock()
	var secrets []string
	for _, rd := range r.cache {
		secrets = append(secrets, rd.Secrets...)
	}
	r.cacheMu.Unlock()
	// Longest first, so that a secret containing another is replaced whole.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, sec := range slices.Compact(secrets) {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "(redacted)")
		}
	}
	return s
}

// Judgement is what became of one revision.
type Judgement struct {
	Revision string
	Verdict  string // accepted, rejected, failed; empty when the head was already judged
	Problems []string
	Tasks    []state.Task
}

// ReconcileNow checks the source at once and judges its head if it is new (the API's
// "reconcile now"). It returns what became of the head.
func (r *Reconciler) ReconcileNow(ctx context.Context) (Judgement, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.init(ctx); err != nil {
		return Judgement{}, err
	}
	rev, _, err := r.cfg.Source.Check(ctx)
	if err != nil {
		return Judgement{}, fmt.Errorf("check source: %w", err)
	}
	if r.cfg.Watcher != nil {
		r.cfg.Watcher.Trigger()
	}
	return r.judge(ctx, rev, false)
}

// Rotator is a Variables that can forget a value so that it is generated anew; *Vault.
type Rotator interface {
	Rotate(ctx context.Context, deployment, name string) error
}

// RotateVariable forgets variable name of deployment and judges the head again, so the
// deployment converges with a newly generated value (explicit rotation).
func (r *Reconciler) RotateVariable(ctx context.Context, deployment, name string) (Judgement, error) {
	rot, ok := r.cfg.Renderer.Vars.(Rotator)
	if !ok {
		return Judgement{}, errors.New("rotate variable: this director's variables cannot be rotated")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.init(ctx); err != nil {
		return Judgement{}, err
	}
	if err := rot.Rotate(ctx, deployment, name); err != nil {
		return Judgement{}, err
	}
	r.renderMu.Lock()
	r.cacheMu.Lock()
	r.cache, r.order = map[string]*Rendered{}, nil
	r.cacheMu.Unlock()
	r.renderMu.Unlock()
	rev, _, err := r.cfg.Source.Check(ctx)
	if err != nil {
		return Judgement{}, fmt.Errorf("check source: %w", err)
	}
	return r.judge(ctx, rev, true)
}

// init loads the last accepted revision: its policies judge, its render is "previous".
func (r *Reconciler) init(ctx context.Context) error {
	if r.inited {
		return nil
	}
	last, err := r.cfg.Store.LastAccepted(ctx)
	if errors.Is(err, state.ErrNotFound) {
		r.inited = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("reconciler start: %w", err)
	}
	r.inited = true
	// A new mirror (a fresh data dir, another director) holds at most the head, and commits
	// may have come since the last accepted revision: the source deepens its mirror to it.
	rev, err := r.cfg.Source.FetchRevision(ctx, last.SHA)
	if errors.Is(err, source.ErrNotInHistory) {
		r.log.Warn("the last accepted revision is no longer in the branch's history; the next commit is judged by its own policies", "sha", last.SHA, "err", err)
		return nil
	}
	if err != nil {
		r.log.Warn("the last accepted revision cannot be fetched; the next commit is judged by its own policies", "sha", last.SHA, "err", err)
		return nil
	}
	if r.cfg.Gate.Engine() == nil && r.cfg.PolicySource == nil {
		e, err := policy.Load(ctx, rev.FS(), PoliciesDir, policy.WithRevision(last.SHA))
		if err != nil {
			r.log.Warn("policies of the last accepted revision do not load", "sha", last.SHA, "err", err)
		} else {
			r.cfg.Gate.Set(e)
		}
	}
	rd, err := r.rendered(ctx, rev)
	if err != nil {
		r.log.Warn("the last accepted revision no longer renders", "sha", last.SHA, "err", err)
		return nil
	}
	r.accepted(rd)
	return nil
}

// accepted makes rd the last accepted revision and tells OnAccepted.
func (r *Reconciler) accepted(rd *Rendered) {
	r.prev = rd
	r.shown.Store(rd)
	if r.cfg.OnAccepted != nil {
		r.cfg.OnAccepted(rd.Config)
	}
}

// rendered renders rev, from cache when it was rendered lately.
func (r *Reconciler) rendered(ctx context.Context, rev source.Revision) (*Rendered, error) {
	r.renderMu.Lock()
	defer r.renderMu.Unlock()
	r.cacheMu.Lock()
	rd, ok := r.cache[rev.SHA]
	r.cacheMu.Unlock()
	if ok {
		return rd, nil
	}
	rd, err := r.cfg.Renderer.Render(ctx, rev.SHA, rev.FS())
	if err != nil {
		return nil, err
	}
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	if _, ok := r.cache[rev.SHA]; !ok {
		r.cache[rev.SHA] = rd
		r.order = append(r.order, rev.SHA)
		if len(r.order) > 4 {
			delete(r.cache, r.order[0])
			r.order = r.order[1:]
		}
	}
	return rd, nil
}

func commitOf(rev source.Revision) policy.Commit {
	p := func(x source.Person) policy.Person {
		return policy.Person{Name: x.Name, Email: x.Email, Time: x.When.UTC().Format(time.RFC3339)}
	}
	return policy.Commit{SHA: rev.SHA, Author: p(rev.Author), Committer: p(rev.Committer), Message: rev.Message,
		Payload: rev.SignedPayload, ArmoredSignature: rev.Signature}
}

func messages(ms []policy.Message) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.String())
	}
	return out
}

// deploymentDirs lists deployments/<name> directories of a tree, even one that does not
// render: a failure is reported to the deployments it may concern.
func deploymentDirs(fsys fs.FS) []string {
	ents, _ := fs.ReadDir(fsys, DeploymentsDir)
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// judge renders, judges and persists one revision; force judges one already judged (after
// a variable's rotation). The caller holds r.mu.
func (r *Reconciler) judge(ctx context.Context, rev source.Revision, force bool) (Judgement, error) {
	j := Judgement{Revision: rev.SHA}
	if rev.SHA == "" || rev.SHA == r.last && !force {
		return j, nil
	}
	if _, err := r.cfg.Store.Revision(ctx, rev.SHA); err == nil && !force {
		r.last = rev.SHA
		return j, nil
	} else if err != nil && !errors.Is(err, state.ErrNotFound) {
		return j, err
	}
	log := r.log.With("sha", rev.Short())
	started := r.cfg.Now()
	renders, err := r.cfg.Store.DeploymentRenders(ctx)
	if err != nil {
		return j, err
	}
	digests := map[string]state.DeploymentRender{}
	for _, d := range renders {
		digests[d.Deployment] = d
	}
	srev := state.Revision{SHA: rev.SHA, Author: rev.Author.Name + " <" + rev.Author.Email + ">", Message: rev.Message}

	rd, rerr := r.rendered(ctx, rev)
	if rerr != nil {
		var bad *RenderError
		if !errors.As(rerr, &bad) {
			return j, rerr // not the commit's fault (a database or blobstore error): retried on the next check
		}
		srev.Verdict = state.RevisionFailed
		j.Verdict, j.Problems = state.RevisionFailed, bad.Problems
		if _, err := r.cfg.Store.Judge(ctx, state.Judgement{Revision: srev, Verdict: state.Verdict{Error: rerr.Error()}}); err != nil {
			return j, err
		}
		r.last = rev.SHA
		log.Warn("revision does not render; nothing is touched", "problems", len(bad.Problems), "err", rerr)
		r.writeAll(ctx, concerned(bad.Problems, deploymentDirs(rev.FS()), slices.Collect(maps.Keys(digests))), status.Outcome{
			SourceCommit: rev.SHA, Result: status.Failed, StartedAt: started, FinishedAt: r.cfg.Now(),
			Summary: "failed to render " + rev.Short(),
			Error:   &status.Failure{Message: "the revision does not render, so nothing was touched:\n" + rerr.Error()},
		})
		return j, nil
	}

	// What would change: deployments whose render moved, created, deleted.
	var changed, deleted, kept []string
	for _, name := range rd.Names() {
		if prev, ok := digests[name]; !ok || prev.Digest != rd.Deployments[name].Digest {
			changed = append(changed, name)
		}
	}
	// A change that cannot be planned (no free address for a new instance, an AZ with no
	// subnet) fails now, with nothing enqueued, rather than in its task.
	var planProblems []string
	for _, name := range changed {
		d := rd.Deployments[name]
		obs, err := r.observed(ctx, d, name)
		if err != nil {
			return j, err
		}
		if _, err := plan.Compute(d.Desired, obs, plan.Options{NewID: r.cfg.NewID}); err != nil {
			planProblems = append(planProblems, fmt.Sprintf("%s: cannot be planned: %v", d.File, err))
		}
	}
	if len(planProblems) > 0 {
		rerr = &RenderError{Problems: planProblems}
		srev.Verdict = state.RevisionFailed
		j.Verdict, j.Problems = state.RevisionFailed, planProblems
		if _, err := r.cfg.Store.Judge(ctx, state.Judgement{Revision: srev, Verdict: state.Verdict{Error: rerr.Error()}}); err != nil {
			return j, err
		}
		r.last = rev.SHA
		log.Warn("revision cannot be planned; nothing is touched", "err", rerr)
		r.writeAll(ctx, concerned(planProblems, changed, nil), status.Outcome{
			SourceCommit: rev.SHA, Result: status.Failed, StartedAt: started, FinishedAt: r.cfg.Now(),
			Summary: "cannot plan " + rev.Short(),
			Error:   &status.Failure{Message: "the revision cannot be planned, so nothing was touched:\n" + rerr.Error()},
		})
		return j, nil
	}

	var warnings []string
	for _, name := range slices.Sorted(maps.Keys(digests)) {
		if _, ok := rd.Deployments[name]; ok {
			continue
		}
		switch {
		case len(rd.Deployments) == 0:
			kept = append(kept, name)
		case rd.Config.Protected(name):
			kept = append(kept, name)
			warnings = append(warnings, fmt.Sprintf("deployment %s: its directory is gone but bosun.yml protects it, so it is kept", name))
		default:
			deleted = append(deleted, name)
		}
	}
	if b := rd.Config.StatusBranch; b != "" && r.cfg.StatusBranch != "" && b != r.cfg.StatusBranch {
		warnings = append(warnings, fmt.Sprintf("bosun.yml asks for status branch %s, but this director writes to %s (its --status-branch)", b, r.cfg.StatusBranch))
	}
	if len(rd.Deployments) == 0 && len(kept) > 0 {
		warnings = append(warnings, "the repository has no deployments: an empty repository never deletes the fleet, so "+strings.Join(kept, ", ")+" stay")
	}

	prevSnap := policy.Snapshot{}
	if r.prev != nil {
		prevSnap = r.prev.Snapshot
	}
	in := policy.Input{Commit: commitOf(rev), Previous: prevSnap, Proposed: rd.Snapshot, Secrets: rd.Secrets}
	if r.prev != nil {
		in.Secrets = append(slices.Clone(in.Secrets), r.prev.Secrets...)
	}
	var verdict policy.Verdict
	var verr error
	if r.cfg.PolicySource == nil {
		verdict, verr = r.cfg.Gate.Judge(ctx, in, rev.FS())
	} else if verr = r.trustedPolicies(ctx); verr == nil {
		// nil: the judged commit's own policies are never loaded, so it cannot change them.
		verdict, verr = r.cfg.Gate.Judge(ctx, in, nil)
	} else if ctx.Err() != nil {
		return j, verr // stopping, not the source's fault: judged again on the next start
	} else if errors.Is(verr, errPolicySourceUnreadable) {
		// Fail closed without a verdict: nothing is accepted, and the commit is judged
		// again once the trusted policies can be read.
		return j, fmt.Errorf("revision %s waits: %w", rev.Short(), verr)
	}
	sv := state.Verdict{PolicyRevision: verdict.PolicyRevision, Denies: messages(verdict.Denies),
		Warnings: append(messages(verdict.Warnings), warnings...), Exceptions: messages(verdict.Exceptions), EvaluatedIn: verdict.Duration}
	if verr != nil && len(sv.Denies) == 0 {
		// A gate error is a denial: fail closed.
		sv.Denies = []string{"policy evaluation failed: " + verr.Error()}
	}
	pol := &status.Policy{Deny: sv.Denies, Warn: sv.Warnings}
	if len(sv.Denies) > 0 {
		srev.Verdict, j.Verdict, j.Problems = state.RevisionRejected, state.RevisionRejected, sv.Denies
		if _, err := r.cfg.Store.Judge(ctx, state.Judgement{Revision: srev, Verdict: sv}); err != nil {
			return j, err
		}
		r.last = rev.SHA
		log.Warn("revision rejected by policy; nothing is touched", "denies", len(sv.Denies))
		targets := append(append(slices.Clone(changed), deleted...), kept...)
		if len(targets) == 0 {
			// A commit emptying the repository keeps the fleet, yet its rejection is still
			// written where the kept deployments' auditors look.
			targets = append(rd.Names(), kept...)
		}
		if len(targets) == 0 {
			targets = slices.Sorted(maps.Keys(digests))
		}
		r.writeAll(ctx, targets, status.Outcome{SourceCommit: rev.SHA, Result: status.Rejected, Policy: pol, StartedAt: started, FinishedAt: r.cfg.Now()})
		return j, nil
	}

	// Accepted: one task per changed deployment, one per deleted one.
	judgement := state.Judgement{Revision: srev, Verdict: sv, Forget: deleted}
	judgement.Revision.Verdict = state.RevisionAccepted
	for _, name := range changed {
		if r.suspended(ctx, rd.Config, name) {
			log.Info("deployment is suspended; not converged", "deployment", name)
			continue
		}
		d := rd.Deployments[name]
		params, _ := json.Marshal(DeployParams{Revision: rev.SHA, Digest: d.Digest, Warnings: sv.Warnings})
		judgement.Tasks = append(judgement.Tasks, state.Task{Type: state.TaskDeploy, Deployment: name, Params: params,
			Description: fmt.Sprintf("deploy %s at %s", name, rev.Short()), User: "bosun"})
		judgement.Renders = append(judgement.Renders, state.DeploymentRender{Deployment: name, Revision: rev.SHA, Digest: d.Digest})
	}
	for _, name := range deleted {
		params, _ := json.Marshal(DeployParams{Revision: rev.SHA})
		judgement.Tasks = append(judgement.Tasks, state.Task{Type: state.TaskDeleteDeployment, Deployment: name, Params: params,
			Description: fmt.Sprintf("delete %s (directory removed at %s)", name, rev.Short()), User: "bosun"})
	}
	tasks, err := r.cfg.Store.Judge(ctx, judgement)
	if err != nil {
		return j, err
	}
	r.cfg.Gate.Accept(verdict)
	r.accepted(rd)
	r.last = rev.SHA
	j.Verdict, j.Tasks = state.RevisionAccepted, tasks
	log.Info("revision accepted", "tasks", len(tasks), "changed", changed, "deleted", deleted, "warnings", len(sv.Warnings))
	return j, nil
}

// errPolicySourceUnreadable: the trusted policy source could not be read (a network
// failure, a repository gone). The commit is not judged, neither accepted nor rejected,
// and is judged again at the next poll: a passing outage must not reject it for good.
var errPolicySourceUnreadable = errors.New("the trusted policy source cannot be read")

// trustedPolicies installs the policies at the PolicySource's head in the gate, loading
// them again only when that head moved. On any failure the gate is emptied, so that no
// stale policies judge: the caller rejects the commit (fail closed).
func (r *Reconciler) trustedPolicies(ctx context.Context) error {
	rev, _, err := r.cfg.PolicySource.Check(ctx)
	if err == nil && rev.SHA == "" {
		r.cfg.Gate.Set(nil)
		r.policySHA = ""
		return errors.New("the trusted policy source's branch has no commit, so nothing is accepted")
	}
	if err != nil {
		r.cfg.Gate.Set(nil)
		r.policySHA = ""
		return fmt.Errorf("%w, so nothing is judged until it can be: %w", errPolicySourceUnreadable, err)
	}
	if rev.SHA == r.policySHA && r.cfg.Gate.Engine() != nil {
		return nil
	}
	e, err := policy.Load(ctx, rev.FS(), PoliciesDir, policy.WithRevision(rev.SHA))
	if err != nil {
		r.cfg.Gate.Set(nil)
		r.policySHA = ""
		return fmt.Errorf("the trusted policy source's policies at %s do not load, so nothing is accepted: %w", rev.Short(), err)
	}
	r.cfg.Gate.Set(e)
	r.policySHA = rev.SHA
	r.log.Info("trusted policies loaded", "policy_revision", rev.Short())
	return nil
}

// DeployParams are a deploy or delete task's params: the revision to converge to. The
// plan is computed when the task runs, against the state as it is then.
type DeployParams struct {
	Revision string   `json:"revision"`
	Digest   string   `json:"digest,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// concerned picks the deployments a render failure concerns: those whose directory a
// problem names, else every deployment of the tree and of the fleet.
func concerned(problems, dirs, known []string) []string {
	var out []string
	for _, d := range append(slices.Clone(dirs), known...) {
		for _, p := range problems {
			if strings.Contains(p, DeploymentsDir+"/"+d+"/") && !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	if len(out) > 0 {
		return out
	}
	out = append(slices.Clone(dirs), known...)
	slices.Sort(out)
	return slices.Compact(out)
}

// writeAll writes one outcome per deployment. A status branch that cannot be written is
// logged, never fatal: the writer keeps the outcome and retries.
func (r *Reconciler) writeAll(ctx context.Context, deployments []string, o status.Outcome) {
	for _, d := range deployments {
		o.Deployment = d
		r.writeStatus(ctx, o)
	}
}

func (r *Reconciler) writeStatus(ctx context.Context, o status.Outcome) {
	if _, err := r.cfg.Status.Write(ctx, o); err != nil {
		r.log.Error("write status commit", "deployment", o.Deployment, "result", o.Result, "err", err)
	}
}

// appliedData is what the reconciler remembers of a converged instance.
type appliedData struct {
	Fingerprint plan.Fingerprint  `json:"fingerprint"`
	IPs         map[string]string `json:"ips,omitempty"`
}

// Observed is deployment name's instances as the planner sees them, and the addresses
// other deployments hold: what `bosun plan --director` plans against, through the API.
// It reads the store only; a deployment the director does not have has no instances.
func (r *Reconciler) Observed(ctx context.Context, name string) (plan.Observed, error) {
	// The last accepted render names each group's networks, for instances that never
	// converged (their addresses are stored in network order only); nil before any.
	var d *Deployment
	if rd := r.shown.Load(); rd != nil {
		d = rd.Deployments[name]
	}
	o, err := r.observed(ctx, d, name)
	if err != nil {
		return o, fmt.Errorf("read the observed state of %s: %w", name, err)
	}
	return o, nil
}

// observed is a deployment's instances as the planner sees them, and the addresses other
// deployments hold.
func (r *Reconciler) observed(ctx context.Context, d *Deployment, name string) (plan.Observed, error) {
	var o plan.Observed
	insts, err := r.cfg.Store.Instances(ctx, name)
	if err != nil {
		return o, err
	}
	all, err := r.cfg.Store.AppliedInstances(ctx, "")
	if err != nil {
		return o, err
	}
	applied := map[string]appliedData{}
	for _, a := range all {
		var ad appliedData
		if err := json.Unmarshal(a.Data, &ad); err != nil {
			continue
		}
		if a.Deployment != name {
			for n, ip := range ad.IPs {
				if o.IPsInUse == nil {
					o.IPsInUse = map[string][]string{}
				}
				o.IPsInUse[n] = append(o.IPsInUse[n], ip)
			}
			continue
		}
		applied[a.InstanceID] = ad
	}
	nets := map[string][]string{} // group → network names in order
	if d != nil {
		for _, ig := range d.Manifest.InstanceGroups {
			for _, n := range ig.Networks {
				nets[ig.Name] = append(nets[ig.Name], n.Name)
			}
		}
	}
	for _, in := range insts {
		pi := plan.Instance{ID: in.ID, Group: in.Group, Index: in.Index, AZ: in.AZ, Bootstrap: in.Bootstrap, VMCID: in.VMCID, State: in.State}
		if ad, ok := applied[in.ID]; ok {
			pi.Applied, pi.IPs = ad.Fingerprint, ad.IPs
		}
		if pi.IPs == nil && len(in.IPs) > 0 {
			pi.IPs = map[string]string{}
			for i, n := range nets[in.Group] {
				if i < len(in.IPs) {
					pi.IPs[n] = in.IPs[i]
				}
			}
		}
		pi.VMMissing = in.VMCID == "" && in.State != state.InstanceDetached
		o.Instances = append(o.Instances, pi)
	}
	if err := r.heldAddresses(ctx, nets, &o); err != nil {
		return o, err
	}
	reserved, err := r.cfg.Store.ReservedAddresses(ctx, name)
	if err != nil {
		return o, err
	}
	for n, ips := range reserved {
		if o.IPsInUse == nil {
			o.IPsInUse = map[string][]string{}
		}
		o.IPsInUse[n] = append(o.IPsInUse[n], ips...)
	}
	return o, nil
}

// planReserved plans d against obs and reserves the addresses the plan hands out. When
// another deployment, planned at the same time, claimed one of them first, it plans
// again with those counted as in use.
func (r *Reconciler) planReserved(ctx context.Context, name string, des plan.Desired, obs plan.Observed, opts plan.Options) (plan.Plan, plan.Observed, error) {
	for attempt := 0; ; attempt++ {
		p, err := plan.Compute(des, obs, opts)
		if err != nil {
			return p, obs, err
		}
		taken, err := r.cfg.Store.ReserveAddresses(ctx, name, planAddresses(p))
		if err != nil {
			return p, obs, fmt.Errorf("plan %s: %w", name, err)
		}
		if len(taken) == 0 {
			return p, obs, nil
		}
		if attempt == 3 {
			return p, obs, fmt.Errorf("plan %s: addresses %v keep being claimed by other deployments planned at the same time; the next run tries again", name, taken)
		}
		if obs.IPsInUse == nil {
			obs.IPsInUse = map[string][]string{}
		}
		for n, ips := range taken {
			obs.IPsInUse[n] = append(obs.IPsInUse[n], ips...)
		}
	}
}

// planAddresses lists the addresses the instances p keeps or makes hold, by network.
func planAddresses(p plan.Plan) map[string][]string {
	out := map[string][]string{}
	for _, g := range p.Groups {
		for _, in := range g.Instances {
			if in.Action == plan.Delete {
				continue
			}
			for _, a := range in.IPs {
				if a.IP != "" {
					out[a.Network] = append(out[a.Network], a.IP)
				}
			}
		}
	}
	return out
}

// heldAddresses marks in use the addresses VMs hold that the applied state does not
// name: an instance moved to a new address by create-swap-delete in a rollout that
// failed before recording it, or a VM whose instance is gone from the applied state.
// They are marked on every network of the deployment: an address belongs to one subnet
// anyway, so the mark costs nothing elsewhere.
func (r *Reconciler) heldAddresses(ctx context.Context, nets map[string][]string, o *plan.Observed) error {
	known := map[string]bool{}
	for _, in := range o.Instances {
		for _, ip := range in.IPs {
			known[ip] = true
		}
	}
	for _, ips := range o.IPsInUse {
		for _, ip := range ips {
			known[ip] = true
		}
	}
	addrs, err := r.cfg.Store.VMAddresses(ctx)
	if err != nil {
		return err
	}
	var held []string
	for _, ip := range addrs {
		if !known[ip] {
			held = append(held, ip)
		}
	}
	if len(held) == 0 {
		return nil
	}
	var names []string
	for _, ns := range nets {
		for _, n := range ns {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	if o.IPsInUse == nil {
		o.IPsInUse = map[string][]string{}
	}
	for _, n := range names {
		o.IPsInUse[n] = append(o.IPsInUse[n], held...)
	}
	return nil
}
