package protocol

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Transport is the narrow view of a message bus the client and the agent need. The bus
// package adapts a *nats.Conn to it.
type Transport interface {
	Publish(subject string, data []byte) error
	// Subscribe calls handle for every message on subject (wildcards allowed) until the
	// returned function is called.
	Subscribe(subject string, handle func(subject string, data []byte)) (unsubscribe func() error, err error)
}

// ErrTimeout is returned when an agent does not answer within the call's timeout.
var ErrTimeout = errors.New("agent did not answer in time")

// ClientOptions tune a Client; zero values take BOSH's defaults.
type ClientOptions struct {
	// Timeout bounds one request/reply (default 45 s, as BOSH's director).
	Timeout time.Duration
	// Timeouts overrides Timeout per method (e.g. ping with 1 s while waiting for boot).
	Timeouts map[string]time.Duration
	// PollInterval is the longest wait between get_task calls (default 1 s). The first
	// polls come sooner (from 20 ms, doubling): most agent tasks (stop, apply, a job
	// without the script asked for) end in milliseconds, and a rollout runs several per
	// instance, one instance after another.
	PollInterval time.Duration
	// Retries on timeout for idempotent reads: get_task (default 4) and get_state (2).
	GetTaskRetries, GetStateRetries int
}

// Client is the director side of the protocol: one per director process, shared by all
// calls. Replies arrive on director.<uuid>.> and are matched to calls by request id.
type Client struct {
	t     Transport
	uuid  string
	opts  ClientOptions
	unsub func() error

	mu      sync.Mutex
	pending map[string]chan []byte
}

// NewClient subscribes to the director's reply subjects.
func NewClient(t Transport, directorUUID string, opts ClientOptions) (*Client, error) {
	if directorUUID == "" || strings.ContainsAny(directorUUID, ".*> ") {
		return nil, fmt.Errorf("new agent client: director uuid %q is not one subject token", directorUUID)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 45 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.GetTaskRetries == 0 {
		opts.GetTaskRetries = 4
	}
	if opts.GetStateRetries == 0 {
		opts.GetStateRetries = 2
	}
	c := &Client{t: t, uuid: directorUUID, opts: opts, pending: map[string]chan []byte{}}
	unsub, err := t.Subscribe("director."+directorUUID+".>", c.deliver)
	if err != nil {
		return nil, fmt.Errorf("new agent client: subscribe to replies: %w", err)
	}
	c.unsub = unsub
	return c, nil
}

// Close stops receiving replies; calls in flight time out.
func (c *Client) Close() error { return c.unsub() }

func (c *Client) deliver(subject string, data []byte) {
	i := strings.LastIndexByte(subject, '.')
	if i < 0 {
		return
	}
	c.mu.Lock()
	ch := c.pending[subject[i+1:]]
	delete(c.pending, subject[i+1:])
	c.mu.Unlock()
	if ch != nil {
		ch <- data
	}
}

// Call sends one request and waits for its reply. Exceptions come back as *Error.
func (c *Client) Call(ctx context.Context, agentID, method string, args ...any) (json.RawMessage, error) {
	retries := 0
	switch method {
	case MethodGetTask:
		retries = c.opts.GetTaskRetries
	case MethodGetState:
		retries = c.opts.GetStateRetries
	}
	for attempt := 0; ; attempt++ {
		v, err := c.call(ctx, agentID, method, args)
		if errors.Is(err, ErrTimeout) && attempt < retries && ctx.Err() == nil {
			continue
		}
		return v, err
	}
}

func (c *Client) call(ctx context.Context, agentID, method string, args []any) (json.RawMessage, error) {
	raw := make([]json.RawMessage, len(args))
	for i, a := range args {
		b, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("%s on agent %s: encode argument %d: %w", method, agentID, i, err)
		}
		raw[i] = b
	}
	id := newID()
	req, err := json.Marshal(Request{Protocol: Version, Method: method, Arguments: raw, ReplyTo: ReplySubject(c.uuid, agentID, id)})
	if err != nil {
		return nil, fmt.Errorf("%s on agent %s: encode request: %w", method, agentID, err)
	}
	ch := make(chan []byte, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	timeout := c.opts.Timeout
	if d, ok := c.opts.Timeouts[method]; ok {
		timeout = d
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	if err := c.t.Publish(AgentSubject(agentID), req); err != nil {
		return nil, fmt.Errorf("%s on agent %s: publish: %w", method, agentID, err)
	}
	select {
	case data := <-ch:
		var resp Response
		if err := json.Unmarshal(data, &resp); err != nil {
			return nil, fmt.Errorf("%s on agent %s: decode reply: %w", method, agentID, err)
		}
		if resp.Exception != nil {
			return nil, &Error{Code: resp.Exception.Code, Message: resp.Exception.Message, Op: method + " on agent " + agentID}
		}
		return resp.Value, nil
	case <-timer.C:
		return nil, fmt.Errorf("%s on agent %s: %w after %s", method, agentID, ErrTimeout, timeout)
	case <-ctx.Done():
		return nil, fmt.Errorf("%s on agent %s: %w", method, agentID, ctx.Err())
	}
}

// firstPoll is the wait before the first get_task of an asynchronous action.
const firstPoll = 20 * time.Millisecond

// Run calls an asynchronous action and polls get_task until it finishes, returning the
// task's result. A bare (old-style) reply without agent_task_id is the result itself.
// If ctx ends first the task is cancelled on the agent, best effort.
func (c *Client) Run(ctx context.Context, agentID, method string, args ...any) (json.RawMessage, error) {
	v, err := c.Call(ctx, agentID, method, args...)
	if err != nil {
		return nil, err
	}
	wait := min(firstPoll, c.opts.PollInterval)
	for {
		h, ok := taskHandle(v)
		if !ok {
			return v, nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			wait = min(2*wait, c.opts.PollInterval)
			v, err = c.Call(ctx, agentID, MethodGetTask, h.AgentTaskID)
		}
		if ctx.Err() != nil {
			cctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
			c.Call(cctx, agentID, MethodCancelTask, h.AgentTaskID) //nolint:errcheck // best effort: the caller's error is ctx's
			cancel()
			return nil, fmt.Errorf("%s on agent %s: %w", method, agentID, ctx.Err())
		}
		var failed *Error
		if errors.As(err, &failed) {
			// The task's own failure reads as the action's, not as get_task's.
			return nil, &Error{Code: failed.Code, Message: failed.Message, Op: method + " on agent " + agentID}
		}
		if err != nil {
			return nil, fmt.Errorf("%s on agent %s: task %s: %w", method, agentID, h.AgentTaskID, err)
		}
	}
}

func taskHandle(v json.RawMessage) (TaskHandle, bool) {
	var h TaskHandle
	if len(v) == 0 || v[0] != '{' || json.Unmarshal(v, &h) != nil {
		return h, false
	}
	return h, h.AgentTaskID != "" && h.State == TaskRunning
}

// Into decodes a call's value into out, naming what was decoded on failure.
func Into[T any](v json.RawMessage, err error) (T, error) {
	var out T
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(v, &out); err != nil {
		return out, fmt.Errorf("decode agent reply as %T: %w", out, err)
	}
	return out, nil
}

// Typed helpers for the methods the director uses.

func (c *Client) Ping(ctx context.Context, agentID string) error {
	_, err := c.Call(ctx, agentID, MethodPing)
	return err
}

func (c *Client) Info(ctx context.Context, agentID string) (Info, error) {
	return Into[Info](c.Call(ctx, agentID, MethodInfo))
}

// GetState asks for the instance's state; full adds vitals.
func (c *Client) GetState(ctx context.Context, agentID string, full bool) (State, error) {
	if full {
		return Into[State](c.Call(ctx, agentID, MethodGetState, "full"))
	}
	return Into[State](c.Call(ctx, agentID, MethodGetState))
}

func (c *Client) Prepare(ctx context.Context, agentID string, spec ApplySpec) error {
	_, err := c.Run(ctx, agentID, MethodPrepare, spec)
	return err
}

func (c *Client) Apply(ctx context.Context, agentID string, spec ApplySpec) error {
	_, err := c.Run(ctx, agentID, MethodApply, spec)
	return err
}

func (c *Client) Start(ctx context.Context, agentID string) error {
	_, err := c.Run(ctx, agentID, MethodStart)
	return err
}

func (c *Client) Stop(ctx context.Context, agentID string) error {
	_, err := c.Run(ctx, agentID, MethodStop)
	return err
}

// Drain runs the jobs' drain scripts: kind is "update" (with the next spec) or "shutdown".
func (c *Client) Drain(ctx context.Context, agentID, kind string, next *ApplySpec) (int, error) {
	args := []any{kind}
	if next != nil {
		args = append(args, next)
	}
	return Into[int](c.Run(ctx, agentID, MethodDrain, args...))
}

// RunScript runs bin/<name> of every job that has it.
func (c *Client) RunScript(ctx context.Context, agentID, name string, env map[string]string) error {
	_, err := c.Run(ctx, agentID, MethodRunScript, name, map[string]any{"env": env})
	return err
}

// CompilePackage compiles a source package whose blob the agent reads from its own
// blobstore.
func (c *Client) CompilePackage(ctx context.Context, agentID string, pkg BlobRef, name, version string, deps map[string]CompileDependency) (BlobResult, error) {
	r, err := Into[CompileResult](c.Run(ctx, agentID, MethodCompilePackage, pkg.BlobstoreID, pkg.SHA1, name, version, deps))
	return r.Result, err
}

// CompilePackageWithSignedURL compiles a package fetched from and uploaded to signed URLs.
func (c *Client) CompilePackageWithSignedURL(ctx context.Context, agentID string, req CompileWithSignedURL) (BlobResult, error) {
	r, err := Into[CompileResult](c.Run(ctx, agentID, MethodCompilePackageWithSignedURL, req))
	return r.Result, err
}

// FetchLogs bundles logs ("job", "agent" or "system") and uploads them.
func (c *Client) FetchLogs(ctx context.Context, agentID, logType string, filters []string) (BlobResult, error) {
	return Into[BlobResult](c.Run(ctx, agentID, MethodFetchLogs, logType, filters))
}

func (c *Client) FetchLogsWithSignedURL(ctx context.Context, agentID string, req FetchLogsWithSignedURL) (BlobResult, error) {
	return Into[BlobResult](c.Run(ctx, agentID, MethodFetchLogsWithSignedURL, req))
}

func (c *Client) MountDisk(ctx context.Context, agentID, diskCID string) error {
	_, err := c.Run(ctx, agentID, MethodMountDisk, diskCID)
	return err
}

func (c *Client) UnmountDisk(ctx context.Context, agentID, diskCID string) error {
	_, err := c.Run(ctx, agentID, MethodUnmountDisk, diskCID)
	return err
}

// MigrateDisk copies the disk at store onto the one mount_disk mounted as the
// migration target, and makes that the disk at store.
func (c *Client) MigrateDisk(ctx context.Context, agentID string) error {
	_, err := c.Run(ctx, agentID, MethodMigrateDisk)
	return err
}

func (c *Client) ListDisk(ctx context.Context, agentID string) ([]string, error) {
	return Into[[]string](c.Run(ctx, agentID, MethodListDisk))
}

func (c *Client) UpdateSettings(ctx context.Context, agentID string, s map[string]any) error {
	_, err := c.Run(ctx, agentID, MethodUpdateSettings, s)
	return err
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
