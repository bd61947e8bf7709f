package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/state"
)

// Client calls a director's API. Its methods return *Error for answers other than 2xx.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// ClientOptions tune a Client.
type ClientOptions struct {
	// CACert is a PEM bundle trusted for the director's certificate, in addition to the
	// system's roots.
	CACert []byte
	// HTTPClient replaces the default client (tests).
	HTTPClient *http.Client
}

// Error is an API error answer.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// NewClient returns a client of the director at baseURL (http:// or https://).
func NewClient(baseURL, token string, o ClientOptions) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("director URL %q: want http(s)://host:port", baseURL)
	}
	hc := o.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// A director that accepts the connection but never answers must not hang the
		// CLI; streams answer their headers at once, and logs within this bound.
		tr.ResponseHeaderTimeout = 2 * time.Minute
		if len(o.CACert) > 0 {
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(o.CACert) {
				return nil, errors.New("CA certificate: no PEM certificate found in it")
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		hc = &http.Client{Transport: tr}
	}
	return &Client{base: u, token: token, http: hc}, nil
}

// URL is the director's base URL.
func (c *Client) URL() string { return c.base.String() }

func (c *Client) request(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	if body == nil {
		return c.send(ctx, method, path, q, nil, "")
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return c.send(ctx, method, path, q, bytes.NewReader(b), "application/json")
}

// send makes a request with a body of contentType (none when body is nil); answers
// other than 2xx are *Error.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string) (*http.Response, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("director at %s: %w", c.base.Host, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb ErrorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			return nil, &Error{Status: resp.StatusCode, Message: eb.Error}
		}
		return nil, &Error{Status: resp.StatusCode, Message: fmt.Sprintf("director answered %s: %s", resp.Status, strings.TrimSpace(string(b)))}
	}
	return resp, nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.request(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("director at %s: %s %s: unreadable answer: %w", c.base.Host, method, path, err)
	}
	return nil
}

func seg(s string) string { return url.PathEscape(s) }

// Info returns the director's /info, with the token's user when it is accepted.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var v Info
	return v, c.do(ctx, "GET", "/info", nil, nil, &v)
}

// Deployments lists the deployments the token may see.
func (c *Client) Deployments(ctx context.Context) ([]Deployment, error) {
	var v []Deployment
	return v, c.do(ctx, "GET", "/deployments", nil, nil, &v)
}

// Deployment returns one deployment.
func (c *Client) Deployment(ctx context.Context, name string) (Deployment, error) {
	var v Deployment
	return v, c.do(ctx, "GET", "/deployments/"+seg(name), nil, nil, &v)
}

// Instances lists a deployment's instances; ps asks each agent for its processes and vitals.
func (c *Client) Instances(ctx context.Context, deployment string, ps bool) ([]Instance, error) {
	q := url.Values{}
	if ps {
		q.Set("ps", "1")
	}
	var v []Instance
	return v, c.do(ctx, "GET", "/deployments/"+seg(deployment)+"/instances", q, nil, &v)
}

// VMs lists a deployment's VMs; vitals asks each agent for them.
func (c *Client) VMs(ctx context.Context, deployment string, vitals bool) ([]VM, error) {
	q := url.Values{}
	if vitals {
		q.Set("vitals", "1")
	}
	var v []VM
	return v, c.do(ctx, "GET", "/deployments/"+seg(deployment)+"/vms", q, nil, &v)
}

// Disks lists persistent disks, of one deployment or (empty) of every visible one.
func (c *Client) Disks(ctx context.Context, deployment string) ([]Disk, error) {
	q := url.Values{}
	if deployment != "" {
		q.Set("deployment", deployment)
	}
	var v []Disk
	return v, c.do(ctx, "GET", "/disks", q, nil, &v)
}

// TaskQuery narrows Tasks.
type TaskQuery struct {
	Deployment string
	States     []string
	Limit      int
}

// Observed is a deployment's observed state as the director's planner sees it; Known is
// false for one the director does not have.
func (c *Client) Observed(ctx context.Context, deployment string) (ObservedState, error) {
	var o ObservedState
	err := c.do(ctx, "GET", "/deployments/"+seg(deployment)+"/observed", nil, nil, &o)
	return o, err
}

// Tasks lists tasks, newest first.
func (c *Client) Tasks(ctx context.Context, tq TaskQuery) ([]state.Task, error) {
	q := url.Values{}
	if tq.Deployment != "" {
		q.Set("deployment", tq.Deployment)
	}
	if len(tq.States) > 0 {
		q.Set("state", strings.Join(tq.States, ","))
	}
	if tq.Limit > 0 {
		q.Set("limit", strconv.Itoa(tq.Limit))
	}
	var v []state.Task
	return v, c.do(ctx, "GET", "/tasks", q, nil, &v)
}

// Task returns one task.
func (c *Client) Task(ctx context.Context, id int64) (state.Task, error) {
	var v state.Task
	return v, c.do(ctx, "GET", "/tasks/"+strconv.FormatInt(id, 10), nil, nil, &v)
}

// CancelTask asks for task id to be cancelled and returns it as it then stands.
func (c *Client) CancelTask(ctx context.Context, id int64) (state.Task, error) {
	var v state.Task
	return v, c.do(ctx, "DELETE", "/tasks/"+strconv.FormatInt(id, 10), nil, nil, &v)
}

// TaskOutput calls fn for each line of task id's output after sequence number after;
// with follow it returns only once the task has ended (the last line carries the task).
// A dropped connection while following is picked up again from the last event seen.
func (c *Client) TaskOutput(ctx context.Context, id, after int64, follow bool, fn func(OutputLine) error) error {
	for attempt := 0; ; attempt++ {
		before := after
		ended, err := c.taskOutputOnce(ctx, id, &after, follow, fn)
		if after != before {
			attempt = 0 // a stream that made progress is not a failing one
		}
		var cbErr callbackError
		var apiErr *Error
		switch {
		case err == nil && (ended || !follow):
			return nil
		case errors.As(err, &cbErr):
			return cbErr.err
		case errors.As(err, &apiErr) || ctx.Err() != nil:
			return err
		case attempt >= 5:
			if err == nil {
				err = fmt.Errorf("task %d: its output stream kept ending before the task did", id)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 500 * time.Millisecond):
		}
	}
}

// callbackError carries the caller's own error out of TaskOutput unchanged.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

func (c *Client) taskOutputOnce(ctx context.Context, id int64, after *int64, follow bool, fn func(OutputLine) error) (ended bool, err error) {
	q := url.Values{"after": {strconv.FormatInt(*after, 10)}}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.request(ctx, "GET", "/tasks/"+strconv.FormatInt(id, 10)+"/output", q, nil)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l OutputLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return false, fmt.Errorf("task %d output: unreadable line: %w", id, err)
		}
		if l.Event == nil && l.Task == nil {
			continue // the server's keep-alive
		}
		if l.Event != nil {
			*after = l.Event.Seq
		}
		if err := fn(l); err != nil {
			return false, callbackError{err}
		}
		if l.Task != nil {
			return state.TaskFinal(l.Task.State), nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("task %d output: %w", id, err)
	}
	return false, nil
}

// EventQuery narrows Events.
type EventQuery struct {
	Deployment, Instance string
	TaskID, BeforeID     int64
	// Since and Until are RFC 3339 times or durations back from now ("2h").
	Since, Until string
	Limit        int
}

// Events lists audit events, newest first.
func (c *Client) Events(ctx context.Context, eq EventQuery) ([]state.Event, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" && v != "0" {
			q.Set(k, v)
		}
	}
	set("deployment", eq.Deployment)
	set("instance", eq.Instance)
	set("task", strconv.FormatInt(eq.TaskID, 10))
	set("before_id", strconv.FormatInt(eq.BeforeID, 10))
	set("since", eq.Since)
	set("until", eq.Until)
	set("limit", strconv.Itoa(eq.Limit))
	var v []state.Event
	return v, c.do(ctx, "GET", "/events", q, nil, &v)
}

// Locks lists the deployment locks held now.
func (c *Client) Locks(ctx context.Context) ([]state.Lock, error) {
	var v []state.Lock
	return v, c.do(ctx, "GET", "/locks", nil, nil, &v)
}

// Revisions lists the latest judged commits, newest first.
func (c *Client) Revisions(ctx context.Context, limit int) ([]state.Revision, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var v []state.Revision
	return v, c.do(ctx, "GET", "/revisions", q, nil, &v)
}

// Sources lists the tracked repository branches.
func (c *Client) Sources(ctx context.Context) ([]Source, error) {
	var v []Source
	return v, c.do(ctx, "GET", "/sources", nil, nil, &v)
}

// Reconcile asks the director to look for new commits now.
func (c *Client) Reconcile(ctx context.Context) error {
	return c.do(ctx, "POST", "/reconcile", nil, nil, nil)
}

// Suspend holds deployment's reconciliation.
func (c *Client) Suspend(ctx context.Context, deployment, reason string) (state.Suspension, error) {
	var v state.Suspension
	return v, c.do(ctx, "POST", "/deployments/"+seg(deployment)+"/suspend", nil, SuspendRequest{Reason: reason}, &v)
}

// Resume lifts deployment's suspension and reports whether there was one.
func (c *Client) Resume(ctx context.Context, deployment string) (bool, error) {
	var v struct {
		WasSuspended bool `json:"was_suspended"`
	}
	return v.WasSuspended, c.do(ctx, "POST", "/deployments/"+seg(deployment)+"/resume", nil, nil, &v)
}

// Act enqueues an operator's action and returns its task.
func (c *Client) Act(ctx context.Context, deployment string, a ActionRequest) (state.Task, error) {
	var v state.Task
	return v, c.do(ctx, "POST", "/deployments/"+seg(deployment)+"/actions", nil, a, &v)
}

// CloudCheck scans deployment for problems.
func (c *Client) CloudCheck(ctx context.Context, deployment string) ([]Problem, error) {
	var v []Problem
	return v, c.do(ctx, "POST", "/deployments/"+seg(deployment)+"/cck", nil, nil, &v)
}

// ResolveProblems scans deployment again and applies the resolutions req chooses.
func (c *Client) ResolveProblems(ctx context.Context, deployment string, req ResolveRequest) ([]Resolution, error) {
	var v []Resolution
	return v, c.do(ctx, "POST", "/deployments/"+seg(deployment)+"/cck/resolve", nil, req, &v)
}

// Logs writes the gzipped tar of one instance's job logs to w.
func (c *Client) Logs(ctx context.Context, deployment, group, id string, w io.Writer) error {
	resp, err := c.request(ctx, "GET", "/deployments/"+seg(deployment)+"/instances/"+seg(group)+"/"+seg(id)+"/logs", nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("download logs of %s/%s: %w", group, id, err)
	}
	return nil
}

// PlanOptions are POST /plan's parameters besides the tree.
type PlanOptions struct {
	Base, Author, Message string
}

// Plan sends a gzipped tar of a working tree (at most MaxPlanUpload bytes) for the
// director to plan, and returns its answer: the reconciler's Preview, as JSON.
func (c *Client) Plan(ctx context.Context, tgz []byte, o PlanOptions) (json.RawMessage, error) {
	q := url.Values{}
	for k, v := range map[string]string{"base": o.Base, "author": o.Author, "message": o.Message} {
		if v != "" {
			q.Set(k, v)
		}
	}
	resp, err := c.send(ctx, http.MethodPost, "/plan", q, bytes.NewReader(tgz), "application/gzip")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("director at %s: POST /plan: %w", c.base.Host, err)
	}
	return b, nil
}
