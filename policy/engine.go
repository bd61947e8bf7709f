package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"runtime/metrics"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Defaults bounding one evaluation; see WithLimits.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultMemoryLimit = 512 << 20
)

// Engine is one policy revision, compiled and prepared once. It is safe for concurrent use.
type Engine struct {
	revision string
	rules    []rule // sorted by package, then rule name
	need     *need  // the part of input the rules read
	timeout  time.Duration
	memory   uint64
}

type kind int

const (
	kindDeny kind = iota
	kindWarn
	kindException
)

// rule is one Conftest-style rule of one package, with its own prepared query so that an
// error or a timeout is pinned on the rule that caused it.
type rule struct {
	pkg  string // "policies.prod", without "data."
	name string // deny, deny_scale, warn, violation_x, exception
	kind kind
	file string
	line int
	q    rego.PreparedEvalQuery
}

func (r *rule) id() string { return r.pkg + "." + r.name }

// Option tunes Load.
type Option func(*Engine)

// WithRevision names the policy revision (say, the commit the policies were read from)
// instead of the sha256 of their files.
func WithRevision(id string) Option { return func(e *Engine) { e.revision = id } }

// WithLimits bounds each evaluation: at most timeout (less when ctx says so), and at most
// memory bytes of heap growth while it runs. Zero keeps the default.
func WithLimits(timeout time.Duration, memory uint64) Option {
	return func(e *Engine) {
		if timeout > 0 {
			e.timeout = timeout
		}
		if memory > 0 {
			e.memory = memory
		}
	}
}

// Load compiles every *.rego file under dir in fsys (not *_test.rego), with the JSON and
// YAML files beside them as `data`, and prepares the Conftest-style rules of every package
// under `policies`: deny, deny_<name>, violation, violation_<name>, warn, warn_<name> and
// exception. A syntax or type error fails Load, naming file and line; the caller keeps
// judging with the Engine it had.
//
// Trust is the caller's: pass the tree of the last accepted revision (or of a trusted
// ref), never the one about to be judged, so a commit cannot weaken its own gate.
func Load(ctx context.Context, fsys fs.FS, dir string, opts ...Option) (*Engine, error) {
	f, err := readFiles(fsys, dir, false)
	if err != nil {
		return nil, err
	}
	c, err := compile(f.modules)
	if err != nil {
		return nil, err
	}
	e := &Engine{revision: f.revision, need: inputNeed(c.Modules), timeout: DefaultTimeout, memory: DefaultMemoryLimit}
	for _, o := range opts {
		o(e)
	}
	store := inmem.NewFromObjectWithOpts(f.data, inmem.OptRoundTripOnWrite(false))
	seen := map[string]bool{}
	for _, path := range sortedKeys(c.Modules) {
		m := c.Modules[path]
		pkg := strings.TrimPrefix(m.Package.Path.String(), "data.")
		if pkg != "policies" && !strings.HasPrefix(pkg, "policies.") {
			continue // a library the policies import
		}
		for _, r := range m.Rules {
			name := r.Head.Name.String()
			if len(r.Head.Ref()) > 1 {
				name = r.Head.Ref()[0].Value.String()
			}
			k, ok := ruleKind(name)
			if !ok || seen[pkg+"."+name] {
				continue
			}
			seen[pkg+"."+name] = true
			q, err := rego.New(
				rego.Query("data."+pkg+"."+name),
				rego.Compiler(c),
				rego.Store(store),
				rego.Capabilities(capabilities()),
				rego.StrictBuiltinErrors(true),
			).PrepareForEval(ctx)
			if err != nil {
				return nil, fmt.Errorf("prepare policy rule %s.%s (%s:%d): %w", pkg, name, path, r.Location.Row, err)
			}
			e.rules = append(e.rules, rule{pkg: pkg, name: name, kind: k, file: path, line: r.Location.Row, q: q})
		}
	}
	sort.Slice(e.rules, func(i, j int) bool { return e.rules[i].id() < e.rules[j].id() })
	return e, nil
}

func ruleKind(name string) (kind, bool) {
	switch {
	case name == "exception":
		return kindException, true
	case name == "deny" || name == "violation" || strings.HasPrefix(name, "deny_") || strings.HasPrefix(name, "violation_"):
		return kindDeny, true
	case name == "warn" || strings.HasPrefix(name, "warn_"):
		return kindWarn, true
	}
	return 0, false
}

// Revision identifies the policies this Engine judges with.
func (e *Engine) Revision() string { return e.revision }

// Decision is the verdict on one change.
type Decision struct {
	PolicyRevision string        `json:"policy_revision"`
	Denies         []Message     `json:"denies"`
	Warnings       []Message     `json:"warnings"`
	Exceptions     []Message     `json:"exceptions"` // denies waived by an exception rule
	Duration       time.Duration `json:"duration_ns"`
}

// Allowed reports whether the change may proceed.
func (d Decision) Allowed() bool { return len(d.Denies) == 0 }

// Message is one deny, warning or waived deny.
type Message struct {
	Rule   string `json:"rule"` // package and rule: "policies.prod.deny"
	File   string `json:"file"` // where the rule (or, for an error, the failing expression) is
	Line   int    `json:"line"`
	Msg    string `json:"msg"`
	Reason string `json:"reason,omitempty"` // exceptions only: why the deny was waived
}

func (m Message) String() string {
	s := fmt.Sprintf("%s (%s:%d): %s", m.Rule, m.File, m.Line, m.Msg)
	if m.Reason != "" {
		s += " [waived: " + m.Reason + "]"
	}
	return s
}

// Evaluate judges in with every rule. It fails closed: when a rule errors, times out or
// runs out of memory, the Decision carries a deny naming the rule, file and line, and the
// error is returned as well.
//
// Only the part of input that the rules reference is built (see need): the verdict is the
// one the whole input would give.
func (e *Engine) Evaluate(ctx context.Context, in Input) (Decision, error) {
	start := time.Now()
	d, err := e.EvaluateValue(ctx, buildInput(in, e.need))
	d.Duration = time.Since(start)
	return d, err
}

// EvaluateValue judges an input already converted to an OPA value, such as InputValue
// gives (for callers that evaluate one input against several engines, and for
// benchmarks).
func (e *Engine) EvaluateValue(ctx context.Context, input ast.Value) (Decision, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeoutCause(ctx, e.timeout, fmt.Errorf("policy evaluation exceeded %s", e.timeout))
	defer cancel()
	ctx, stop := e.watchMemory(ctx)
	defer stop()

	d := Decision{PolicyRevision: e.revision, Denies: []Message{}, Warnings: []Message{}, Exceptions: []Message{}}
	var errs []error
	// Exceptions are per package, gathered before the denies they waive.
	waived := map[string]map[string]string{} // package → rule suffix → reason
	for i := range e.rules {
		r := &e.rules[i]
		if r.kind != kindException {
			continue
		}
		vals, err := e.eval(ctx, r, input)
		if err != nil {
			d.Denies = append(d.Denies, r.failure(err))
			errs = append(errs, err)
			if ctx.Err() != nil { // out of time or memory: the rest would fail alike
				d.Duration = time.Since(start)
				return d, errors.Join(errs...)
			}
			continue
		}
		for _, v := range vals {
			names, reason := exceptionOf(v)
			if reason == "" {
				reason = fmt.Sprintf("exception in %s:%d", r.file, r.line)
			}
			for _, n := range names {
				if waived[r.pkg] == nil {
					waived[r.pkg] = map[string]string{}
				}
				waived[r.pkg][n] = reason
			}
		}
	}
	for i := range e.rules {
		r := &e.rules[i]
		if r.kind == kindException {
			continue
		}
		vals, err := e.eval(ctx, r, input)
		if err != nil {
			d.Denies = append(d.Denies, r.failure(err))
			errs = append(errs, err)
			if ctx.Err() != nil { // out of time or memory: the rest would fail alike
				d.Duration = time.Since(start)
				return d, errors.Join(errs...)
			}
			continue
		}
		for _, v := range vals {
			m := Message{Rule: r.id(), File: r.file, Line: r.line, Msg: messageOf(v)}
			switch {
			case r.kind == kindWarn:
				d.Warnings = append(d.Warnings, m)
			case waived[r.pkg] != nil && waived[r.pkg][suffix(r.name)] != "":
				m.Reason = waived[r.pkg][suffix(r.name)]
				d.Exceptions = append(d.Exceptions, m)
			default:
				d.Denies = append(d.Denies, m)
			}
		}
	}
	d.Duration = time.Since(start)
	return d, errors.Join(errs...)
}

// suffix is the name an exception uses for a rule: "foo" for deny_foo, "" for deny.
func suffix(name string) string {
	_, s, _ := strings.Cut(name, "_")
	return s
}

// eval returns the rule's value as a list of entries: the members of a set or array, or
// the value itself; false and undefined are no entries.
func (e *Engine) eval(ctx context.Context, r *rule, input ast.Value) ([]any, error) {
	rs, err := r.q.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return nil, fmt.Errorf("evaluate %s: %w", r.id(), cause)
		}
		return nil, fmt.Errorf("evaluate %s: %w", r.id(), err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil
	}
	switch v := rs[0].Expressions[0].Value.(type) {
	case []any:
		return v, nil
	case bool:
		if !v {
			return nil, nil
		}
	case nil:
		return nil, nil
	}
	return []any{rs[0].Expressions[0].Value}, nil
}

// failure is the deny standing for a rule that could not be evaluated; it points at the
// failing expression when OPA says where that is.
func (r *rule) failure(err error) Message {
	m := Message{Rule: r.id(), File: r.file, Line: r.line, Msg: "policy could not be evaluated, so the change is rejected: " + err.Error()}
	var te *topdown.Error
	if errors.As(err, &te) && te.Location != nil {
		m.File, m.Line = te.Location.File, te.Location.Row
	}
	return m
}

// messageOf reads a deny or warn entry: a string, or an object with "msg"; anything else
// is shown as JSON rather than dropped, because a deny must never vanish.
func messageOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		if s, ok := x["msg"].(string); ok {
			return s
		}
	case bool:
		return "denied (the rule gives no message)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// exceptionOf reads an exception entry: Conftest's list of rule names (`rules :=
// ["foo"]` waives deny_foo and violation_foo; "" waives plain deny and violation), a
// single name, or an object {"rules": [...], "reason": "..."} (or "msg").
func exceptionOf(v any) (names []string, reason string) {
	switch x := v.(type) {
	case string:
		return []string{x}, ""
	case []any:
		for _, n := range x {
			if s, ok := n.(string); ok {
				names = append(names, s)
			}
		}
		return names, ""
	case map[string]any:
		names, _ = exceptionOf(x["rules"])
		if names == nil {
			if s, ok := x["rule"].(string); ok {
				names = []string{s}
			}
		}
		reason, _ = x["reason"].(string)
		if reason == "" {
			reason, _ = x["msg"].(string)
		}
		return names, reason
	}
	return nil, ""
}

// heapMetric is the live heap, read cheaply (no stop-the-world, unlike ReadMemStats).
const heapMetric = "/memory/classes/heap/objects:bytes"

// watchMemory cancels ctx when the heap grows by more than the engine's limit while an
// evaluation runs. OPA has no allocation limit of its own; this bounds a policy that
// builds a huge comprehension. Heap is process-wide, so the limit is set well above
// what the rest of the director allocates in one evaluation's time.
func (e *Engine) watchMemory(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	sample := []metrics.Sample{{Name: heapMetric}}
	heap := func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return sample[0].Value.Uint64()
	}
	base := heap()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if h := heap(); h > base && h-base > e.memory {
					cancel(fmt.Errorf("policy evaluation grew the heap by more than %d MiB", e.memory>>20))
					return
				}
			}
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}
