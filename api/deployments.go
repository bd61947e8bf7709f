package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/bosun-gitops/bosun/state"
	"gopkg.in/yaml.v3"
)

// deployment returns deployment name if p may read it (or write it, when write).
func (s *Server) deployment(ctx context.Context, p *Principal, name, doing string, write bool) (state.Deployment, error) {
	if write && !s.o.Auth.CanWrite(p, name) {
		return state.Deployment{}, writeDenied(p, doing, name)
	}
	if !s.o.Auth.CanRead(p, name) {
		return state.Deployment{}, readDenied(p, name)
	}
	d, err := s.o.Store.Deployment(ctx, name)
	if errors.Is(err, state.ErrNotFound) {
		return d, errorf(http.StatusNotFound, "no deployment named %s: `bosun deployments` lists them", name)
	}
	return d, err
}

// manifestSummary is the little of a manifest /deployments shows.
type manifestSummary struct {
	Releases []struct {
		Name    string `yaml:"name"`
		Version string `yaml:"version"`
	} `yaml:"releases"`
	Stemcells []struct {
		Alias   string `yaml:"alias"`
		OS      string `yaml:"os"`
		Name    string `yaml:"name"`
		Version string `yaml:"version"`
	} `yaml:"stemcells"`
}

// deploymentView summarises d; counts, when not nil, holds every deployment's instance
// count, else d's instances are counted here.
func (s *Server) deploymentView(ctx context.Context, d state.Deployment, susp map[string]state.Suspension, counts map[string]int) (Deployment, error) {
	v := Deployment{Name: d.Name, Revision: d.Revision, Teams: s.o.Auth.TeamsOf(d.Name), CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	var m manifestSummary
	// The manifest is summarised, never returned: it may hold credentials.
	if len(d.Manifest) > 0 && yaml.Unmarshal(d.Manifest, &m) == nil {
		for _, r := range m.Releases {
			v.Releases = append(v.Releases, r.Name+"/"+r.Version)
		}
		for _, sc := range m.Stemcells {
			os := sc.OS
			if os == "" {
				os = sc.Name
			}
			v.Stemcells = append(v.Stemcells, os+"/"+sc.Version)
		}
	}
	if su, ok := susp[d.Name]; ok {
		v.Suspended = &su
	}
	if counts != nil {
		v.Instances = counts[d.Name]
		return v, nil
	}
	is, err := s.o.Store.Instances(ctx, d.Name)
	if err != nil {
		return v, err
	}
	v.Instances = len(is)
	return v, nil
}

func (s *Server) suspensions(ctx context.Context) (map[string]state.Suspension, error) {
	ss, err := s.o.Store.Suspensions(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]state.Suspension, len(ss))
	for _, su := range ss {
		out[su.Deployment] = su
	}
	return out, nil
}

func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	ds, err := s.o.Store.Deployments(r.Context())
	if err != nil {
		return nil, err
	}
	susp, err := s.suspensions(r.Context())
	if err != nil {
		return nil, err
	}
	var counts map[string]int
	if c, ok := s.o.Store.(InstanceCounter); ok {
		if counts, err = c.InstanceCounts(r.Context()); err != nil {
			return nil, err
		}
	}
	out := []Deployment{}
	for _, d := range ds {
		if !s.o.Auth.CanRead(p, d.Name) {
			continue
		}
		v, err := s.deploymentView(r.Context(), d, susp, counts)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *Server) getDeployment(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	d, err := s.deployment(r.Context(), p, r.PathValue("name"), "", false)
	if err != nil {
		return nil, err
	}
	susp, err := s.suspensions(r.Context())
	if err != nil {
		return nil, err
	}
	return s.deploymentView(r.Context(), d, susp, nil)
}

// observed answers a deployment's observed state as the planner sees it. A deployment
// the director does not have is no 404 here: the token may still read it (by name), and
// its plan needs the addresses the others hold.
func (s *Server) observed(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	name := r.PathValue("name")
	if !s.o.Auth.CanRead(p, name) {
		return nil, readDenied(p, name)
	}
	if s.o.Observed == nil {
		return nil, notWired("reconciler (bosun plan --director reads what it plans from)")
	}
	known := true
	d, err := s.o.Store.Deployment(r.Context(), name)
	if errors.Is(err, state.ErrNotFound) {
		known = false
	} else if err != nil {
		return nil, err
	}
	o, err := s.o.Observed.Observed(r.Context(), name)
	if err != nil {
		return nil, fmt.Errorf("observed state of %s: %w", name, err)
	}
	o.Deployment, o.Known, o.Revision = name, known, d.Revision
	if o.Instances == nil {
		o.Instances = []ObservedInstance{}
	}
	return o, nil
}

func instanceName(i state.Instance) string { return i.Group + "/" + strconv.Itoa(i.Index) }

func boolParam(r *http.Request, name string) bool {
	v := r.URL.Query().Get(name)
	return v == "1" || v == "true" || v == "yes"
}

func (s *Server) listInstances(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	d, err := s.deployment(r.Context(), p, r.PathValue("name"), "", false)
	if err != nil {
		return nil, err
	}
	is, err := s.o.Store.Instances(r.Context(), d.Name)
	if err != nil {
		return nil, err
	}
	out := make([]Instance, len(is))
	for k, i := range is {
		out[k] = Instance{Instance: i, Name: instanceName(i)}
	}
	if boolParam(r, "ps") || boolParam(r, "vitals") {
		if s.o.Prober == nil {
			return nil, notWired("agent prober (instances --ps needs one)")
		}
		s.probe(r.Context(), out)
	}
	return out, nil
}

// probe asks every instance's agent for its state, a bounded number at a time; one
// agent not answering marks that instance, never the whole listing.
func (s *Server) probe(ctx context.Context, is []Instance) {
	sem := make(chan struct{}, s.o.ProbeParallel)
	var wg sync.WaitGroup
	for k := range is {
		if is[k].AgentID == "" || is[k].VMCID == "" {
			is[k].ProcessState = "-"
			if is[k].State == state.InstanceDetached || is[k].VMCID == "" {
				is[k].ProcessState = "no vm"
			}
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, s.o.ProbeTimeout)
			defer cancel()
			pr, err := s.o.Prober.Probe(pctx, is[k].Instance)
			if err != nil {
				is[k].ProcessState, is[k].ProbeError = "unresponsive agent", err.Error()
				return
			}
			is[k].ProcessState, is[k].Probe = pr.JobState, &pr
		})
	}
	wg.Wait()
}

func (s *Server) listVMs(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	d, err := s.deployment(r.Context(), p, r.PathValue("name"), "", false)
	if err != nil {
		return nil, err
	}
	vms, err := s.o.Store.VMs(r.Context(), d.Name)
	if err != nil {
		return nil, err
	}
	is, err := s.o.Store.Instances(r.Context(), d.Name)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]state.Instance, len(is))
	for _, i := range is {
		byID[i.ID] = i
	}
	out := make([]VM, len(vms))
	var probed []Instance
	var at []int
	for k, v := range vms {
		out[k] = VM{VM: v}
		if i, ok := byID[v.InstanceID]; ok {
			out[k].Instance, out[k].AZ = instanceName(i), i.AZ
			if i.VMCID == v.CID {
				probed = append(probed, Instance{Instance: i})
				at = append(at, k)
			}
		}
	}
	if boolParam(r, "vitals") || boolParam(r, "ps") {
		if s.o.Prober == nil {
			return nil, notWired("agent prober (vms --vitals needs one)")
		}
		s.probe(r.Context(), probed)
		for n, k := range at {
			out[k].ProcessState = probed[n].ProcessState
			if probed[n].Probe != nil {
				out[k].Vitals = probed[n].Probe.Vitals
			}
		}
	}
	return out, nil
}

func (s *Server) listDisks(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	name := r.PathValue("name")
	if name == "" {
		name = r.URL.Query().Get("deployment")
	}
	var names []string
	if name != "" {
		d, err := s.deployment(r.Context(), p, name, "", false)
		if err != nil {
			return nil, err
		}
		names = []string{d.Name}
	} else {
		ds, err := s.o.Store.Deployments(r.Context())
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if s.o.Auth.CanRead(p, d.Name) {
				names = append(names, d.Name)
			}
		}
	}
	out := []Disk{}
	for _, n := range names {
		disks, err := s.o.Store.Disks(r.Context(), n)
		if err != nil {
			return nil, err
		}
		is, err := s.o.Store.Instances(r.Context(), n)
		if err != nil {
			return nil, err
		}
		byID := make(map[string]string, len(is))
		for _, i := range is {
			byID[i.ID] = instanceName(i)
		}
		for _, d := range disks {
			out = append(out, Disk{Disk: d, Instance: byID[d.InstanceID]})
		}
	}
	return out, nil
}

func (s *Server) suspend(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	var req SuspendRequest
	if err := decodeBody(r, w, &req); err != nil {
		return nil, err
	}
	d, err := s.deployment(r.Context(), p, r.PathValue("name"), "suspend "+r.PathValue("name"), true)
	if err != nil {
		return nil, err
	}
	su, err := s.o.Store.SuspendDeployment(r.Context(), d.Name, p.Name, req.Reason)
	if err != nil {
		return nil, err
	}
	e := state.Event{User: p.Name, Action: "suspend", ObjectType: "deployment", ObjectName: d.Name, Deployment: d.Name}
	if req.Reason != "" {
		e.Context = map[string]any{"reason": req.Reason}
	}
	if err := s.event(r.Context(), e); err != nil {
		return nil, err
	}
	return su, nil
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	d, err := s.deployment(r.Context(), p, r.PathValue("name"), "resume "+r.PathValue("name"), true)
	if err != nil {
		return nil, err
	}
	was, err := s.o.Store.ResumeDeployment(r.Context(), d.Name)
	if err != nil {
		return nil, err
	}
	if err := s.event(r.Context(), state.Event{User: p.Name, Action: "resume", ObjectType: "deployment", ObjectName: d.Name, Deployment: d.Name,
		Context: map[string]any{"was_suspended": was}}); err != nil {
		return nil, err
	}
	return map[string]any{"deployment": d.Name, "was_suspended": was}, nil
}

// resolveInstance finds group/ref among is: ref is an index, an id, or a unique prefix of
// an id at least 4 characters long.
func resolveInstance(is []state.Instance, deployment, group, ref string) (state.Instance, error) {
	inGroup := false
	var matches []state.Instance
	for _, i := range is {
		if i.Group != group {
			continue
		}
		inGroup = true
		if strconv.Itoa(i.Index) == ref || i.ID == ref {
			return i, nil
		}
		if len(ref) >= 4 && strings.HasPrefix(i.ID, ref) {
			matches = append(matches, i)
		}
	}
	switch {
	case !inGroup:
		return state.Instance{}, errorf(http.StatusNotFound, "deployment %s has no instance group %s: `bosun instances %s` lists its instances", deployment, group, deployment)
	case len(matches) == 1:
		return matches[0], nil
	case len(matches) > 1:
		return state.Instance{}, errorf(http.StatusBadRequest, "%s/%s names %d instances; give more of the id", group, ref, len(matches))
	}
	return state.Instance{}, errorf(http.StatusNotFound, "deployment %s has no instance %s/%s: `bosun instances %s` lists them", deployment, group, ref, deployment)
}

var actions = map[string]bool{state.ActionRecreate: true, state.ActionRestart: true, state.ActionStop: true, state.ActionStart: true}

func (s *Server) action(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	var req ActionRequest
	if err := decodeBody(r, w, &req); err != nil {
		return nil, err
	}
	if !actions[req.Action] {
		return nil, errorf(http.StatusBadRequest, "action %q: want recreate, restart, stop or start", req.Action)
	}
	if req.Hard && req.Action != state.ActionStop {
		return nil, errorf(http.StatusBadRequest, "hard applies to stop only (it deletes the VM and keeps the disk)")
	}
	if req.Instance != "" && req.Group == "" {
		return nil, errorf(http.StatusBadRequest, "instance %q given without its group", req.Instance)
	}
	name := r.PathValue("name")
	d, err := s.deployment(r.Context(), p, name, req.Action+" instances of "+name, true)
	if err != nil {
		return nil, err
	}
	params := state.ActionParams{Action: req.Action, Group: req.Group, Hard: req.Hard}
	target, objType, instance := d.Name, "deployment", ""
	if req.Group != "" {
		is, err := s.o.Store.Instances(r.Context(), d.Name)
		if err != nil {
			return nil, err
		}
		if req.Instance == "" {
			found := false
			for _, i := range is {
				found = found || i.Group == req.Group
			}
			if !found {
				return nil, errorf(http.StatusNotFound, "deployment %s has no instance group %s: `bosun instances %s` lists its instances", d.Name, req.Group, d.Name)
			}
			target, objType = req.Group, "instance_group"
		} else {
			i, err := resolveInstance(is, d.Name, req.Group, req.Instance)
			if err != nil {
				return nil, err
			}
			// The task names the instance by id: an index may move to another instance
			// before the task runs.
			params.Instance = i.ID
			target, objType, instance = instanceName(i)+" ("+i.ID+")", "instance", i.Group+"/"+i.ID
		}
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	desc := req.Action
	if req.Hard {
		desc += " --hard"
	}
	desc += " " + target
	t, err := s.o.Store.Enqueue(r.Context(), state.Task{Type: state.TaskAction, Deployment: d.Name, Description: desc, Params: raw, User: p.Name})
	if err != nil {
		return nil, err
	}
	e := state.Event{User: p.Name, Action: req.Action, ObjectType: objType, ObjectName: target, Deployment: d.Name, Instance: instance, TaskID: t.ID}
	if req.Hard {
		e.Context = map[string]any{"hard": true}
	}
	if err := s.event(r.Context(), e); err != nil {
		return nil, err
	}
	w.Header().Set("Location", fmt.Sprintf("/tasks/%d", t.ID))
	return accepted{t}, nil
}

func (s *Server) cck(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	name := r.PathValue("name")
	// Scanning changes nothing: a reader may; resolving needs an admin.
	d, err := s.deployment(r.Context(), p, name, "run cck on "+name, false)
	if err != nil {
		return nil, err
	}
	if s.o.Checker == nil {
		return nil, notWired("cloud check")
	}
	probs, err := s.o.Checker.Scan(r.Context(), d.Name)
	e := state.Event{User: p.Name, Action: "cloud_check", ObjectType: "deployment", ObjectName: d.Name, Deployment: d.Name}
	if err != nil {
		e.Error = err.Error()
	} else {
		e.Context = map[string]any{"problems": len(probs)}
	}
	if eerr := s.event(r.Context(), e); eerr != nil {
		return nil, eerr
	}
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", d.Name, err)
	}
	for k := range probs {
		probs[k].ID = k + 1
	}
	if probs == nil {
		probs = []Problem{}
	}
	return probs, nil
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	name := r.PathValue("name")
	// Logs may carry what the jobs print, secrets included: fetching them is an action.
	d, err := s.deployment(r.Context(), p, name, "fetch logs of "+name, true)
	if err != nil {
		return nil, err
	}
	if s.o.Logs == nil {
		return nil, notWired("log fetcher")
	}
	is, err := s.o.Store.Instances(r.Context(), d.Name)
	if err != nil {
		return nil, err
	}
	i, err := resolveInstance(is, d.Name, r.PathValue("group"), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if i.AgentID == "" || i.VMCID == "" {
		return nil, errorf(http.StatusConflict, "%s has no VM, so no logs to fetch (state %s)", instanceName(i), i.State)
	}
	e := state.Event{User: p.Name, Action: "fetch_logs", ObjectType: "instance", ObjectName: i.Group + "/" + i.ID, Deployment: d.Name, Instance: i.Group + "/" + i.ID}
	if err := s.event(r.Context(), e); err != nil {
		return nil, err
	}
	// Headers go out with the first byte, so that an agent failing before it sends any
	// still gets the caller a JSON error rather than an empty 200.
	lw := &lazyWriter{w: w, ctype: "application/gzip", disposition: fmt.Sprintf("attachment; filename=%q", fmt.Sprintf("%s.%s.%d.tgz", d.Name, i.Group, i.Index))}
	if err := s.o.Logs.FetchLogs(r.Context(), i, lw); err != nil {
		if !lw.wrote {
			return nil, fmt.Errorf("fetch logs of %s: %w", instanceName(i), err)
		}
		s.o.Log.Warn("log download broke off", "instance", instanceName(i), "err", err)
		panic(http.ErrAbortHandler) // the client sees a broken transfer, not a short tarball
	}
	return nil, nil
}

// lazyWriter writes headers only with the first byte of the body.
type lazyWriter struct {
	w                  http.ResponseWriter
	ctype, disposition string
	wrote              bool
}

func (l *lazyWriter) Write(b []byte) (int, error) {
	if !l.wrote {
		l.wrote = true
		l.w.Header().Set("Content-Type", l.ctype)
		l.w.Header().Set("Content-Disposition", l.disposition)
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(b)
}

func (s *Server) reconcile(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	if !p.IsAdmin() {
		return nil, writeDenied(p, "reconcile (it reaches every deployment)", "")
	}
	if s.o.Reconciler == nil {
		return nil, notWired("reconciler")
	}
	err := s.o.Reconciler.ReconcileNow(r.Context())
	e := state.Event{User: p.Name, Action: "reconcile", ObjectType: "director"}
	if err != nil {
		e.Error = err.Error()
	}
	if eerr := s.event(r.Context(), e); eerr != nil {
		return nil, eerr
	}
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	return accepted{map[string]any{"reconcile": "requested"}}, nil
}

// sortedKeys is for stable output.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
