package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/bosun-gitops/bosun/state"
)

// parseTime accepts RFC 3339 or a duration back from now ("2h", "30m").
func parseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, errorf(http.StatusBadRequest, "query parameter %s=%q: want an RFC 3339 time (2026-12-07T10:00:00Z) or a duration back from now (2h)", name, v)
	}
	return t, nil
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	q := r.URL.Query()
	f := state.EventFilter{Deployment: q.Get("deployment"), Instance: q.Get("instance")}
	var err error
	if f.TaskID, err = intParam(r, "task", 0); err != nil {
		return nil, err
	}
	if f.BeforeID, err = intParam(r, "before_id", 0); err != nil {
		return nil, err
	}
	limit, err := intParam(r, "limit", 200)
	if err != nil {
		return nil, err
	}
	f.Limit = int(min(limit, 1000))
	if f.Since, err = parseTime("since", q.Get("since")); err != nil {
		return nil, err
	}
	if f.Until, err = parseTime("until", q.Get("until")); err != nil {
		return nil, err
	}
	if f.Deployment != "" {
		if _, err := s.deployment(r.Context(), p, f.Deployment, "", false); err != nil && !errors.Is(err, state.ErrNotFound) {
			// A deleted deployment's events stay readable, so only a 403 stops here.
			var ae *authError
			if errors.As(err, &ae) {
				return nil, err
			}
		}
		// Events name instances group/id, as BOSH's do; operators type group/index.
		if f.Instance != "" {
			if is, err := s.o.Store.Instances(r.Context(), f.Deployment); err == nil {
				if grp, ref, ok := cutInstance(f.Instance); ok {
					if i, err := resolveInstance(is, f.Deployment, grp, ref); err == nil {
						f.Instance = i.Group + "/" + i.ID
					}
				}
			}
		}
	}
	if f.Deployments, err = s.visibleDeployments(r, p); err != nil {
		return nil, err
	}
	evs, err := s.o.Store.Events(r.Context(), f)
	if err != nil {
		return nil, err
	}
	if evs == nil {
		evs = []state.Event{}
	}
	return evs, nil
}

func cutInstance(s string) (group, ref string, ok bool) {
	for k := len(s) - 1; k >= 0; k-- {
		if s[k] == '/' {
			return s[:k], s[k+1:], k > 0 && k < len(s)-1
		}
	}
	return "", "", false
}

func (s *Server) listLocks(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	ls, err := s.o.Store.Locks(r.Context())
	if err != nil {
		return nil, err
	}
	out := []state.Lock{}
	for _, l := range ls {
		if s.o.Auth.CanRead(p, l.Deployment) {
			out = append(out, l)
		}
	}
	return out, nil
}

func (s *Server) listRevisions(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	// Revisions are commits of the one repository every team deploys from: any valid
	// token may read them.
	limit, err := intParam(r, "limit", 30)
	if err != nil {
		return nil, err
	}
	vs, err := s.o.Store.Revisions(r.Context(), int(min(max(limit, 1), 1000)))
	if err != nil {
		return nil, err
	}
	if vs == nil {
		vs = []state.Revision{}
	}
	return vs, nil
}

func (s *Server) listSources(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	if s.o.Sources == nil {
		return nil, notWired("source watcher (the reconciler)")
	}
	ss, err := s.o.Sources.Sources(r.Context())
	if err != nil {
		return nil, fmt.Errorf("list sources: %w", err)
	}
	if ss == nil {
		ss = []Source{}
	}
	return ss, nil
}
