package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/blobstore/local"
	"github.com/bosun-gitops/bosun/blobstore/signed"
)

// maxReply bounds a reply as the bus bounds a message (BOSH: 1 MiB).
const maxReply = 1 << 20

// Options configure an Agent beyond its settings.
type Options struct {
	// Root is the directory BOSH's /var/vcap lives beneath ("/" on a real VM).
	Root string
	// HeartbeatInterval overrides settings' env.bosun.heartbeat_interval.
	HeartbeatInterval time.Duration
	Log               *slog.Logger
}

// Agent serves one VM.
type Agent struct {
	settings Settings
	opts     Options
	paths    paths
	log      *slog.Logger
	t        protocol.Transport
	// blob is how blobs are reached; update_settings may replace it (under settingsMu).
	blob blobAccess
	// bootBlobstore is settings.json's blobstore section, which update_settings with an
	// empty blobstores list goes back to.
	bootBlobstore BlobstoreSettings
	sup           *supervisor
	tasks         *tasks
	vitals        *vitalsSampler

	// jobsMu serialises actions that change installed jobs or their processes.
	jobsMu sync.Mutex
	// installMu serialises unpacking into data/, compileMu compilations (they share
	// packages/ links for dependencies).
	installMu  sync.Mutex
	compileMu  sync.Mutex
	settingsMu sync.Mutex
	// overrideMu serialises changes to bosh/update_settings.json (read, change, write).
	overrideMu sync.Mutex
	// disksMu serialises mount_disk, unmount_disk and migrate_disk, which read and
	// write the disk records in bosh/.
	disksMu sync.Mutex
	specMu  sync.Mutex
	spec    protocol.ApplySpec
}

// New prepares an agent; Run connects it.
func New(s Settings, t protocol.Transport, opts Options) (*Agent, error) {
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{settings: s, opts: opts, paths: paths{filepath.Join(opts.Root, "var", "vcap")}, t: t, tasks: newTasks()}
	a.log = opts.Log.With("agent_id", s.AgentID)
	for _, d := range []string{a.paths.boshDir(), a.paths.dataDir("packages"), a.paths.dataDir("jobs"), a.paths.dataDir("tmp"), a.paths.sysLog(""), a.paths.sysRun(), a.paths.jobsDir(), a.paths.packagesDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("start agent: %w", err)
		}
	}
	if b, err := os.ReadFile(a.paths.specFile()); err == nil {
		if err := json.Unmarshal(b, &a.spec); err != nil {
			return nil, fmt.Errorf("start agent: read applied spec %s: %w", a.paths.specFile(), err)
		}
	}
	a.bootBlobstore = s.Blobstore
	o, err := a.loadOverride()
	if err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	a.applyOverride(o)
	// Blobstores the director sent with update_settings outlive a restart: they are
	// what it knows this VM to hold, in place of settings.json's (made at create_vm).
	if b, err := parseBlobstores(o.Blobstores); err != nil {
		return nil, fmt.Errorf("start agent: %s: %w", a.overridePath(), err)
	} else if b != nil {
		a.settings.Blobstore = *b
	}
	if a.blob, err = openBlobAccess(a.settings.Blobstore); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	env := s.Env.Bosun
	a.sup = newSupervisor(a.paths, a.log, time.Duration(env.StableAfter), env.LogMaxBytes, a.alert)
	a.vitals = newVitalsSampler()
	return a, nil
}

// blobAccess is how the agent reaches blobs: its own blobstore (provider local; nil
// otherwise) and the client for signed URLs.
type blobAccess struct {
	store blobstore.Store
	http  signed.Client
}

// openBlobAccess prepares access to the blobstore b names; b is checked already.
func openBlobAccess(b BlobstoreSettings) (blobAccess, error) {
	var acc blobAccess
	if b.Provider == "local" {
		st, err := local.Open(b.Options["blobstore_path"].(string))
		if err != nil {
			return acc, err
		}
		acc.store = st
	}
	// Signed URLs are verified against the blobstore's own CA when the settings give
	// one, and against the system roots only when they do not.
	hc, err := signed.NewClient([]byte(b.CA()))
	if err != nil {
		return acc, err
	}
	acc.http = hc
	return acc, nil
}

// blobs returns the current blob access; a request keeps what it got even if
// update_settings replaces it meanwhile.
func (a *Agent) blobs() blobAccess {
	a.settingsMu.Lock()
	defer a.settingsMu.Unlock()
	return a.blob
}

// Run serves requests and sends heartbeats until ctx ends, then stops every job process.
func (a *Agent) Run(ctx context.Context) error {
	unsub, err := a.t.Subscribe(protocol.AgentSubject(a.settings.AgentID), func(_ string, data []byte) {
		go a.handle(ctx, data)
	})
	if err != nil {
		return fmt.Errorf("agent %s: %w", a.settings.AgentID, err)
	}
	defer unsub()
	a.sup.reap()
	if _, err := os.Stat(a.startedMarker()); err == nil && len(a.jobNames()) > 0 {
		if _, err := a.start(ctx, nil); err != nil {
			a.log.Error("jobs not restarted", "err", err)
		}
	}
	a.log.Info("agent ready", "root", a.opts.Root)
	a.heartbeats(ctx)
	a.sup.stopAll(context.Background())
	return nil
}

func (a *Agent) heartbeats(ctx context.Context) {
	every := a.opts.HeartbeatInterval
	if every <= 0 {
		every = time.Duration(a.settings.Env.Bosun.HeartbeatInterval)
	}
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := a.t.Publish(protocol.HeartbeatSubject(a.settings.AgentID), a.heartbeat()); err != nil {
			a.log.Warn("heartbeat not sent", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeat encodes BOSH's heartbeat payload.
func (a *Agent) heartbeat() []byte {
	spec := a.currentSpec()
	hb := protocol.Heartbeat{
		Deployment: spec.Deployment,
		NodeID:     spec.ID,
		Vitals:     a.vitals.sample(a.paths),
	}
	hb.JobState, hb.NumberOfProcesses = a.jobState()
	if spec.Name != "" {
		hb.Job, hb.Index = &spec.Name, &spec.Index
	}
	b, _ := json.Marshal(hb)
	return b
}

// alert publishes BOSH's alert for a process that died (monit's "does not exist" event,
// which BOSH rates severity 1).
func (a *Agent) alert(process, summary string) {
	al := protocol.Alert{
		ID:        newID(),
		Severity:  protocol.SeverityAlert,
		Title:     fmt.Sprintf("%s (%s) - does not exist - restart", process, a.settings.IP()),
		Summary:   summary,
		CreatedAt: time.Now().Unix(),
	}
	b, _ := json.Marshal(al)
	if err := a.t.Publish(protocol.AlertSubject(a.settings.AgentID), b); err != nil {
		a.log.Warn("alert not sent", "title", al.Title, "err", err)
	}
}

func (a *Agent) currentSpec() protocol.ApplySpec {
	a.specMu.Lock()
	defer a.specMu.Unlock()
	return a.spec
}

func (a *Agent) handle(ctx context.Context, data []byte) {
	var req protocol.Request
	if err := json.Unmarshal(data, &req); err != nil {
		a.log.Warn("undecodable request dropped", "err", err)
		return
	}
	// Only the director's reply subjects for this agent are answerable; the bus would
	// refuse anything else anyway.
	if parts := strings.Split(req.ReplyTo, "."); len(parts) != 4 || parts[0] != "director" || parts[2] != a.settings.AgentID {
		a.log.Warn("request with a foreign reply subject dropped", "method", req.Method)
		return
	}
	value, err := a.dispatch(ctx, req.Method, req.Arguments)
	a.reply(req.ReplyTo, req.Method, value, err)
}

func (a *Agent) reply(to, method string, value any, err error) {
	var resp protocol.Response
	if err != nil {
		a.log.Warn("request failed", "method", method, "err", err)
		resp.Exception = &protocol.Exception{Message: err.Error(), Code: protocol.CodeOf(err)}
	} else {
		b, merr := json.Marshal(value)
		if merr != nil {
			resp.Exception = &protocol.Exception{Message: fmt.Sprintf("encode %s reply: %v", method, merr), Code: protocol.CodeInternal}
		} else {
			resp.Value = b
		}
	}
	out, _ := json.Marshal(resp)
	if len(out) > maxReply {
		out, _ = json.Marshal(protocol.Response{Exception: &protocol.Exception{Message: fmt.Sprintf("%s reply is %d bytes, more than the bus carries", method, len(out)), Code: protocol.CodeInternal}})
	}
	if err := a.t.Publish(to, out); err != nil {
		a.log.Warn("reply not sent", "method", method, "err", err)
	}
}

type action func(ctx context.Context, args []json.RawMessage) (any, error)

func (a *Agent) dispatch(ctx context.Context, method string, args []json.RawMessage) (any, error) {
	sync := map[string]action{
		protocol.MethodPing:       func(context.Context, []json.RawMessage) (any, error) { return "pong", nil },
		protocol.MethodInfo:       func(context.Context, []json.RawMessage) (any, error) { return protocol.Info{APIVersion: 1}, nil },
		protocol.MethodGetState:   a.getState,
		protocol.MethodGetTask:    a.getTask,
		protocol.MethodCancelTask: a.cancelTask,
	}
	async := map[string]action{
		protocol.MethodPrepare:                     a.prepare,
		protocol.MethodApply:                       a.apply,
		protocol.MethodStart:                       a.start,
		protocol.MethodStop:                        a.stop,
		protocol.MethodDrain:                       a.drain,
		protocol.MethodRunScript:                   a.runScript,
		protocol.MethodCompilePackage:              a.compilePackage,
		protocol.MethodCompilePackageWithSignedURL: a.compilePackageWithSignedURL,
		protocol.MethodFetchLogs:                   a.fetchLogs,
		protocol.MethodFetchLogsWithSignedURL:      a.fetchLogsWithSignedURL,
		protocol.MethodMountDisk:                   a.mountDisk,
		protocol.MethodUnmountDisk:                 a.unmountDisk,
		protocol.MethodMigrateDisk:                 a.migrateDisk,
		protocol.MethodListDisk:                    a.listDisk,
		protocol.MethodAddPersistentDisk:           a.addPersistentDisk,
		protocol.MethodRemovePersistentDisk:        a.removePersistentDisk,
		protocol.MethodUpdateSettings:              a.updateSettings,
	}
	if f, ok := sync[method]; ok {
		return f(ctx, args)
	}
	f, ok := async[method]
	if !ok {
		return nil, protocol.UnknownMethod(method)
	}
	return a.tasks.start(ctx, method, func(ctx context.Context) (any, error) { return f(ctx, args) }), nil
}

// arg decodes argument i into out; a missing optional argument leaves out untouched.
func arg(method string, args []json.RawMessage, i int, out any, required bool) error {
	if i >= len(args) {
		if required {
			return protocol.Errorf(protocol.CodeBadArguments, "%s: argument %d is missing", method, i+1)
		}
		return nil
	}
	if err := json.Unmarshal(args[i], out); err != nil {
		return protocol.Errorf(protocol.CodeBadArguments, "%s: argument %d: %v", method, i+1, err)
	}
	return nil
}

// tasks tracks long-running actions (bosh-spec §8.3).
type tasks struct {
	mu sync.Mutex
	m  map[string]*task
}

type task struct {
	finished time.Time // zero while running
	cancel   context.CancelFunc
	done     chan struct{}
	value    any
	err      error
}

func newTasks() *tasks { return &tasks{m: map[string]*task{}} }

func (ts *tasks) start(ctx context.Context, method string, f func(context.Context) (any, error)) protocol.TaskHandle {
	ctx, cancel := context.WithCancel(ctx)
	id := newID()
	t := &task{cancel: cancel, done: make(chan struct{})}
	ts.mu.Lock()
	// Results are kept long enough for any director to collect them, then forgotten so a
	// long-lived agent does not grow.
	for old, ot := range ts.m {
		if !ot.finished.IsZero() && time.Since(ot.finished) > time.Hour {
			delete(ts.m, old)
		}
	}
	ts.m[id] = t
	ts.mu.Unlock()
	go func() {
		defer close(t.done)
		defer func() { ts.mu.Lock(); t.finished = time.Now(); ts.mu.Unlock() }()
		defer cancel()
		defer func() {
			if r := recover(); r != nil {
				t.err = protocol.Errorf(protocol.CodeInternal, "%s: agent fault: %v", method, r)
			}
		}()
		t.value, t.err = f(ctx)
		if t.err != nil && ctx.Err() != nil && errors.Is(t.err, context.Canceled) {
			t.err = protocol.Errorf(protocol.CodeTaskCancelled, "%s: cancelled", method)
		}
	}()
	return protocol.TaskHandle{AgentTaskID: id, State: protocol.TaskRunning}
}

func (a *Agent) getTask(_ context.Context, args []json.RawMessage) (any, error) {
	var id string
	if err := arg("get_task", args, 0, &id, true); err != nil {
		return nil, err
	}
	a.tasks.mu.Lock()
	t := a.tasks.m[id]
	a.tasks.mu.Unlock()
	if t == nil {
		return nil, protocol.Errorf(protocol.CodeTaskNotFound, "get_task: no task %s", id)
	}
	select {
	case <-t.done:
	default:
		return protocol.TaskHandle{AgentTaskID: id, State: protocol.TaskRunning}, nil
	}
	// A finished task is reported once more on every get_task until the agent restarts:
	// the director retries get_task on timeouts and must see the same answer.
	return t.value, t.err
}

func (a *Agent) cancelTask(_ context.Context, args []json.RawMessage) (any, error) {
	var id string
	if err := arg("cancel_task", args, 0, &id, true); err != nil {
		return nil, err
	}
	a.tasks.mu.Lock()
	t := a.tasks.m[id]
	a.tasks.mu.Unlock()
	if t == nil {
		return nil, protocol.Errorf(protocol.CodeTaskNotFound, "cancel_task: no task %s", id)
	}
	t.cancel()
	return "canceled", nil
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// paths is BOSH's /var/vcap layout beneath the agent's root.
type paths struct{ vcap string }

func (p paths) boshDir() string           { return filepath.Join(p.vcap, "bosh") }
func (p paths) specFile() string          { return filepath.Join(p.vcap, "bosh", "spec.json") }
func (p paths) dataDir(sub string) string { return filepath.Join(p.vcap, "data", sub) }
func (p paths) jobsDir() string           { return filepath.Join(p.vcap, "jobs") }
func (p paths) jobDir(job string) string  { return filepath.Join(p.vcap, "jobs", job) }
func (p paths) packagesDir() string       { return filepath.Join(p.vcap, "packages") }
func (p paths) sysLog(job string) string  { return filepath.Join(p.vcap, "sys", "log", job) }
func (p paths) sysRun() string            { return filepath.Join(p.vcap, "sys", "run") }
func (p paths) store() string             { return filepath.Join(p.vcap, "store") }

// host maps a /var/vcap path written in a rendered template to where it lives beneath
// this agent's root; other paths are left alone.
func (p paths) host(path string) string {
	if rest, ok := strings.CutPrefix(path, "/var/vcap/"); ok {
		return filepath.Join(p.vcap, rest)
	}
	return path
}
