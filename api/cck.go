package api

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/bosun-gitops/bosun/state"
)

// resolveProblems is POST /deployments/{name}/cck/resolve: scan, match the request's
// choices to what the scan found, refuse the whole request if one choice does not fit
// (nothing is changed then), and resolve; each resolution is an event with its user.
func (s *Server) resolveProblems(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	var req ResolveRequest
	if err := decodeBody(r, w, &req); err != nil {
		return nil, err
	}
	name := r.PathValue("name")
	d, err := s.deployment(r.Context(), p, name, "resolve cck problems of "+name, true)
	if err != nil {
		return nil, err
	}
	if s.o.Checker == nil {
		return nil, notWired("cloud check")
	}
	if !req.Auto && len(req.Resolutions) == 0 {
		return nil, errorf(http.StatusBadRequest, "no resolution chosen: set auto (each problem's default) or resolutions (problem number or type → resolution)")
	}
	probs, err := s.o.Checker.Scan(r.Context(), d.Name)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", d.Name, err)
	}
	for k := range probs {
		probs[k].ID = k + 1
	}
	choices, err := chooseResolutions(probs, req)
	if err != nil {
		return nil, err
	}
	out := make([]Resolution, 0, len(probs))
	var todo []ProblemChoice
	for _, c := range choices {
		if c.Resolution == "" {
			out = append(out, Resolution{Problem: c.Problem})
			continue
		}
		todo = append(todo, c)
	}
	if len(todo) > 0 {
		done, err := s.o.Checker.Resolve(r.Context(), d.Name, todo)
		if err != nil {
			return nil, fmt.Errorf("resolve problems of %s: %w", d.Name, err)
		}
		if len(done) != len(todo) {
			return nil, fmt.Errorf("resolve problems of %s: the checker answered %d resolutions for %d problems", d.Name, len(done), len(todo))
		}
		for k, res := range done {
			res.Problem = todo[k].Problem
			if res.Resolution == "" {
				res.Resolution = todo[k].Resolution
			}
			e := state.Event{User: p.Name, Action: "resolve_problem", ObjectType: "problem", ObjectName: res.Problem.Type + " " + res.Problem.Instance,
				Deployment: d.Name, Instance: res.Problem.Instance, TaskID: res.TaskID, Error: res.Error,
				Context: map[string]any{"problem": res.Problem.Type, "resolution": res.Resolution}}
			if err := s.event(r.Context(), e); err != nil {
				return nil, err
			}
			out = append(out, res)
		}
	}
	// In the scan's order, whether resolved or left alone.
	slices.SortStableFunc(out, func(a, b Resolution) int { return a.Problem.ID - b.Problem.ID })
	return out, nil
}

// chooseResolutions picks each problem's resolution: its number's choice, else its type's,
// else its default with auto (the first resolution the checker lists), else none. A
// choice naming no problem, or a resolution the problem does not offer, is a 400.
func chooseResolutions(probs []Problem, req ResolveRequest) ([]ProblemChoice, error) {
	types := map[string][]string{} // type → resolutions
	for _, p := range probs {
		if _, ok := types[p.Type]; !ok {
			types[p.Type] = p.Resolutions
		}
	}
	for _, k := range slices.Sorted(maps.Keys(req.Resolutions)) {
		if n, err := strconv.Atoi(k); err == nil {
			if n < 1 || n > len(probs) {
				return nil, errorf(http.StatusBadRequest, "resolution for problem %d: the scan found %d problems (`bosun cck` lists them)", n, len(probs))
			}
			continue
		}
		if _, ok := types[k]; !ok {
			found := slices.Sorted(maps.Keys(types))
			if len(found) == 0 {
				return nil, errorf(http.StatusBadRequest, "resolution for %s: the scan found no problems", k)
			}
			return nil, errorf(http.StatusBadRequest, "resolution for %s: the scan found no such problem (it found %s)", k, strings.Join(found, ", "))
		}
	}
	out := make([]ProblemChoice, len(probs))
	for i, p := range probs {
		c, ok := req.Resolutions[strconv.Itoa(p.ID)]
		if !ok {
			c, ok = req.Resolutions[p.Type]
		}
		if !ok && req.Auto && len(p.Resolutions) > 0 {
			c = p.Resolutions[0]
		}
		if c != "" && !slices.Contains(p.Resolutions, c) {
			return nil, errorf(http.StatusBadRequest, "problem %d (%s of %s): %q is not one of its resolutions: want %s", p.ID, p.Type, p.Instance, c, strings.Join(p.Resolutions, ", "))
		}
		out[i] = ProblemChoice{Problem: p, Resolution: c}
	}
	return out, nil
}
