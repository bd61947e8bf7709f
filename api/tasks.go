package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/state"
)

func intParam(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errorf(http.StatusBadRequest, "query parameter %s=%q: want a whole number ≥ 0", name, v)
	}
	return n, nil
}

// visibleDeployments is the deployment filter for p's listings: nil for tokens that see
// every deployment, else the deployments its teams own.
func (s *Server) visibleDeployments(r *http.Request, p *Principal) ([]string, error) {
	if p.AllDeployments() {
		return nil, nil
	}
	ds, err := s.o.Store.Deployments(r.Context())
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, d := range ds {
		if s.o.Auth.CanRead(p, d.Name) {
			out = append(out, d.Name)
		}
	}
	return out, nil
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	q := r.URL.Query()
	limit, err := intParam(r, "limit", 30)
	if err != nil {
		return nil, err
	}
	f := state.TaskFilter{Deployment: q.Get("deployment"), Limit: int(min(limit, 1000))}
	if f.Deployment != "" && !s.o.Auth.CanRead(p, f.Deployment) {
		return nil, readDenied(p, f.Deployment)
	}
	if st := q.Get("state"); st != "" {
		f.States = strings.Split(st, ",")
	}
	if f.Deployments, err = s.visibleDeployments(r, p); err != nil {
		return nil, err
	}
	ts, err := s.o.Store.Tasks(r.Context(), f)
	if err != nil {
		return nil, err
	}
	if ts == nil {
		ts = []state.Task{}
	}
	return ts, nil
}

// task returns task {id} if p may see it: a task of no deployment only to director-wide
// tokens.
func (s *Server) task(r *http.Request, p *Principal) (state.Task, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return state.Task{}, errorf(http.StatusBadRequest, "task id %q: want a task number (`bosun tasks --recent` lists them)", r.PathValue("id"))
	}
	t, err := s.o.Store.Task(r.Context(), id)
	if errors.Is(err, state.ErrNotFound) {
		return t, errorf(http.StatusNotFound, "no task %d: `bosun tasks --recent` lists the latest", id)
	}
	if err != nil {
		return t, err
	}
	if t.Deployment == "" && !p.AllDeployments() || t.Deployment != "" && !s.o.Auth.CanRead(p, t.Deployment) {
		return state.Task{}, &authError{http.StatusForbidden, fmt.Sprintf("token %s may not see task %d: it belongs to %s, which none of its scopes (%s) reach",
			p.Name, id, orDirector(t.Deployment), strings.Join(p.Scopes, ", "))}
	}
	return t, nil
}

func orDirector(deployment string) string {
	if deployment == "" {
		return "the director, not a deployment,"
	}
	return "deployment " + deployment
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	return s.task(r, p)
}

func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	t, err := s.task(r, p)
	if err != nil {
		return nil, err
	}
	if t.Deployment == "" && !p.IsAdmin() || t.Deployment != "" && !s.o.Auth.CanWrite(p, t.Deployment) {
		return nil, writeDenied(p, fmt.Sprintf("cancel task %d", t.ID), t.Deployment)
	}
	if state.TaskFinal(t.State) {
		return nil, errorf(http.StatusConflict, "task %d already ended (%s); there is nothing to cancel", t.ID, t.State)
	}
	t, err = s.o.Store.RequestCancel(r.Context(), t.ID)
	if err != nil {
		return nil, err
	}
	if err := s.event(r.Context(), state.Event{User: p.Name, Action: "cancel", ObjectType: "task", ObjectName: strconv.FormatInt(t.ID, 10),
		Deployment: t.Deployment, TaskID: t.ID, Context: map[string]any{"state": t.State}}); err != nil {
		return nil, err
	}
	return t, nil
}

// taskOutput streams task {id}'s events as newline-delimited JSON. With follow it keeps
// the response open, sending events as they are recorded, until the task ends; the last
// line is always the task itself.
func (s *Server) taskOutput(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	t, err := s.task(r, p)
	if err != nil {
		return nil, err
	}
	after, err := intParam(r, "after", 0)
	if err != nil {
		return nil, err
	}
	follow := boolParam(r, "follow")
	ctx := r.Context()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	flush()
	poll, quiet := s.o.FollowPoll, time.Duration(0)
	for {
		// The task is read before its events: events are written before a task ends, so
		// once a final state is seen, the events read after it are all there will be.
		if t, err = s.o.Store.Task(ctx, t.ID); err != nil {
			s.o.Log.Warn("task output: read task", "task", t.ID, "err", err)
			return nil, nil // headers are out; the client sees the stream end without a task line
		}
		evs, err := s.o.Store.TaskEvents(ctx, t.ID, after)
		if err != nil {
			s.o.Log.Warn("task output: read events", "task", t.ID, "err", err)
			return nil, nil
		}
		for k := range evs {
			if err := enc.Encode(OutputLine{Event: &evs[k]}); err != nil {
				return nil, nil // the client went away
			}
			after = evs[k].Seq
		}
		if !follow || state.TaskFinal(t.State) {
			_ = enc.Encode(OutputLine{Task: &t})
			flush()
			return nil, nil
		}
		if len(evs) > 0 {
			flush()
			poll, quiet = s.o.FollowPoll, 0
		} else {
			if poll < 4*s.o.FollowPoll {
				poll += s.o.FollowPoll / 2 // a quiet task is read less often
			}
			// An empty line now and then keeps proxies from closing a quiet stream and
			// tells a client gone away from one still reading.
			if quiet += poll; quiet >= s.o.KeepAlive {
				if _, err := io.WriteString(w, "{}\n"); err != nil {
					return nil, nil
				}
				flush()
				quiet = 0
			}
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-s.stop:
			return nil, nil
		case <-time.After(poll):
		}
	}
}
