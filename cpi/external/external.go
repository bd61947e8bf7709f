package external

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bosun-gitops/bosun/cpi"
)

// Config says how to run one external CPI.
type Config struct {
	// Name is how errors and logs name this CPI (the cpi-config name).
	Name string
	// Path is the executable; Args are its arguments (e.g. -configPath=cpi.json).
	Path string
	Args []string
	// Env is added to the scrubbed environment (PATH, TMPDIR, HOME) every call gets.
	Env []string
	// DirectorUUID goes into every request's context.
	DirectorUUID string
	// Properties are the cpi-config properties, merged into the request context.
	Properties map[string]any
	// Timeout bounds each call (default 30 minutes: stemcell uploads are slow).
	Timeout time.Duration
}

// maxResponse bounds what a CPI may print on stdout.
const maxResponse = 64 << 20

// CPI runs an external CPI executable. It implements cpi.CPI and every optional
// capability; those the executable lacks answer NotImplemented, as BOSH's do.
type CPI struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	info       *cpi.Info
	apiVersion int
}

var (
	_ cpi.CPI                    = (*CPI)(nil)
	_ cpi.Rebooter               = (*CPI)(nil)
	_ cpi.VMMetadataSetter       = (*CPI)(nil)
	_ cpi.DiskMetadataSetter     = (*CPI)(nil)
	_ cpi.DiskLister             = (*CPI)(nil)
	_ cpi.Snapshotter            = (*CPI)(nil)
	_ cpi.DiskResizer            = (*CPI)(nil)
	_ cpi.DiskUpdater            = (*CPI)(nil)
	_ cpi.VMPropertiesCalculator = (*CPI)(nil)
	_ cpi.VMLister               = (*CPI)(nil)
)

// New returns an adapter for the executable cfg names. The executable runs first
// when a call is made.
func New(cfg Config, log *slog.Logger) (*CPI, error) {
	if cfg.Path == "" {
		return nil, errors.New("external cpi: no executable given")
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Path
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CPI{cfg: cfg, log: log.With("cpi", cfg.Name)}, nil
}

// Name implements cpi.Namer.
func (c *CPI) Name() string { return c.cfg.Name }

// Info implements cpi.CPI. It runs `info` once; later calls answer from memory.
func (c *CPI) Info(ctx context.Context) (cpi.Info, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.info != nil {
		return *c.info, nil
	}
	var info cpi.Info
	err := c.run(ctx, "info", "", 0, 0, &info, nil)
	switch {
	case errors.Is(err, cpi.ErrNotImplemented):
		// A CPI older than `info` speaks v1.
		info = cpi.Info{APIVersion: 1}
	case err != nil:
		return cpi.Info{}, err
	}
	if info.APIVersion == 0 {
		info.APIVersion = 1
	}
	c.info, c.apiVersion = &info, min(info.APIVersion, cpi.APIVersion)
	return info, nil
}

func (c *CPI) version(ctx context.Context) (int, error) {
	if _, err := c.Info(ctx); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.apiVersion, nil
}

// call runs method with args after info has fixed the API version.
func (c *CPI) call(ctx context.Context, method, subject string, stemcellAPI int, result any, args ...any) error {
	v, err := c.version(ctx)
	if err != nil {
		return err
	}
	return c.run(ctx, method, subject, v, stemcellAPI, result, args)
}

func (c *CPI) errf(ctx context.Context, method, subject string, kind cpi.Kind, retry bool, cause error, format string, a ...any) *cpi.Error {
	return &cpi.Error{CPI: c.cfg.Name, Method: method, Instance: cpi.InstanceFrom(ctx), Subject: subject,
		Kind: kind, OkToRetry: retry, Msg: fmt.Sprintf(format, a...), Err: cause}
}

func requestID() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(1_000_000))
	return fmt.Sprintf("cpi-%06d", n.Int64())
}

// run makes one call: one process, one request, one response. The exit code is
// ignored as BOSH does; only a missing or malformed response is an error of its own.
func (c *CPI) run(ctx context.Context, method, subject string, apiVersion, stemcellAPI int, result any, args []any) error {
	rid := requestID()
	log := c.log.With("method", method, "request_id", rid)
	rawArgs := make([]json.RawMessage, len(args))
	for i, a := range args {
		b, err := json.Marshal(a)
		if err != nil {
			return c.errf(ctx, method, subject, cpi.CpiError, false, err, "encode argument %d", i)
		}
		rawArgs[i] = b
	}
	rc := map[string]any{}
	for k, v := range c.cfg.Properties {
		rc[k] = v
	}
	rc["director_uuid"], rc["request_id"] = c.cfg.DirectorUUID, rid
	if stemcellAPI > 0 {
		rc["vm"] = map[string]any{"stemcell": map[string]any{"api_version": stemcellAPI}}
	}
	req, err := json.Marshal(request{Method: method, Arguments: rawArgs, Context: rc, APIVersion: apiVersion})
	if err != nil {
		return c.errf(ctx, method, subject, cpi.CpiError, false, err, "encode request")
	}

	// Whether a retry is safe when we cannot tell what the CPI did.
	unsure := readOnly(method)
	callCtx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(callCtx, c.cfg.Path, c.cfg.Args...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR=" + os.TempDir(), "HOME=" + envOr("HOME", "/")}, c.cfg.Env...)
	cmd.Stdin = bytes.NewReader(req)
	var stdout capped
	cmd.Stdout = &stdout
	stderr := &lineLogger{log: log, stream: "stderr"}
	cmd.Stderr = stderr
	// Its own process group, so that a timeout ends everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A child it left behind holding stdout must not hold us past its answer.
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	stderr.Flush()
	log.Debug("cpi call done", "duration", time.Since(start), "exit", exitStatus(cmd))

	if callCtx.Err() != nil {
		if ctx.Err() != nil {
			return c.errf(ctx, method, subject, cpi.CloudError, unsure, ctx.Err(), "call abandoned; its process group was killed")
		}
		return c.errf(ctx, method, subject, cpi.CloudError, unsure, context.DeadlineExceeded,
			"no answer within %s; its process group was killed and what it did is unknown", c.cfg.Timeout)
	}
	var ee *exec.ExitError
	if runErr != nil && !errors.As(runErr, &ee) && !errors.Is(runErr, exec.ErrWaitDelay) {
		// It never ran: nothing happened, but a retry will not fix a missing executable.
		return c.errf(ctx, method, subject, cpi.CpiError, false, runErr, "run %s", c.cfg.Path)
	}
	if stdout.over {
		return c.errf(ctx, method, subject, cpi.CpiError, unsure, nil, "answered with more than %d bytes", maxResponse)
	}
	resp, err := parseResponse(stdout.buf.Bytes())
	if err != nil {
		out := bytes.TrimSpace(stdout.buf.Bytes())
		status := exitStatus(cmd)
		if len(out) == 0 {
			return c.errf(ctx, method, subject, cpi.CpiError, unsure, nil, "ended (%s) without a response; its stderr is in the debug log", status)
		}
		return c.errf(ctx, method, subject, cpi.CpiError, unsure, err, "ended (%s) after answering %d bytes that are not a CPI response, starting %q",
			status, len(out), truncate(out, 40))
	}
	for _, line := range strings.Split(strings.TrimRight(resp.Log, "\n"), "\n") {
		if line != "" {
			log.Debug(line, "stream", "log")
		}
	}
	if resp.Error != nil {
		kind, known := kindOf(resp.Error)
		msg := resp.Error.Message
		if !known {
			msg = resp.Error.Type + ": " + msg
		}
		return c.errf(ctx, method, subject, kind, resp.Error.OkToRetry && kind.Retriable(), nil, "%s", msg)
	}
	if result != nil {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			return c.errf(ctx, method, subject, cpi.CpiError, unsure, err, "unexpected result %s", truncate(resp.Result, 80))
		}
	}
	return nil
}

// parseResponse decodes one CPI response: an object with a result or an error.
func parseResponse(b []byte) (response, error) {
	var resp response
	var keys map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&keys); err != nil {
		return resp, err
	}
	_, hasResult := keys["result"]
	_, hasError := keys["error"]
	if !hasResult && !hasError {
		return resp, errors.New("neither result nor error")
	}
	if err := json.Unmarshal(b[:dec.InputOffset()], &resp); err != nil {
		return resp, err
	}
	if resp.Error != nil && resp.Error.Type == "" && resp.Error.Message == "" {
		return resp, errors.New("error without type or message")
	}
	return resp, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func exitStatus(cmd *exec.Cmd) string {
	if cmd.ProcessState == nil {
		return "never"
	}
	return cmd.ProcessState.String()
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// capped is a buffer that stops growing at maxResponse.
type capped struct {
	buf  bytes.Buffer
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if c.buf.Len()+len(p) > maxResponse {
		c.over = true
		return len(p), nil
	}
	return c.buf.Write(p)
}

// lineLogger hands each line of a stream to the debug log.
type lineLogger struct {
	log    *slog.Logger
	stream string
	mu     sync.Mutex
	part   []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	consumed := 0
	for {
		i := bytes.IndexByte(l.part[consumed:], '\n')
		if i < 0 {
			break
		}
		l.log.Debug(string(l.part[consumed:consumed+i]), "stream", l.stream)
		consumed += i + 1
	}
	l.part = append(l.part[:0], l.part[consumed:]...)
	if len(l.part) > 64<<10 { // a line without end: log what we have
		l.log.Debug(string(l.part), "stream", l.stream)
		l.part = l.part[:0]
	}
	return len(p), nil
}

func (l *lineLogger) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.part) > 0 {
		l.log.Debug(string(l.part), "stream", l.stream)
		l.part = nil
	}
}

var _ io.Writer = (*lineLogger)(nil)
