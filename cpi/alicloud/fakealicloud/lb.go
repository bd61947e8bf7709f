package fakealicloud

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Seeded load balancers.
const (
	SLB             = "lb-bosun"    // a CLB (SLB) instance
	SLB2            = "lb-bosun-2"  // another one
	VServerGroup    = "rsp-bosun"   // a VServer group of SLB
	NLBServerGroup  = "sgp-bosun"   // an NLB server group (type Instance)
	NLBServerGroup2 = "sgp-bosun-2" // another one
)

const (
	slbVersion = "2014-05-15"
	nlbVersion = "2022-04-30"
)

// Backend is a server behind a load balancer: in a CLB's default server group
// (Port 0), a VServer group or an NLB server group.
type Backend struct {
	ServerID, Type string
	Port, Weight   int
}

type lbGroup struct {
	id, kind string // kind: "slb", "vsg", "nlb"
	lb       string // a VServer group's CLB
	backends []Backend
}

var slbActions = map[string]actionFunc{
	"AddBackendServers":             (*Cloud).addBackendServers,
	"AddVServerGroupBackendServers": (*Cloud).addVServerGroupBackendServers,
}

var nlbActions = map[string]actionFunc{
	"AddServersToServerGroup":      (*Cloud).addServersToServerGroup,
	"ListServerGroupServers":       (*Cloud).listServerGroupServers,
	"RemoveServersFromServerGroup": (*Cloud).removeServersFromServerGroup,
}

func seedLBs() map[string]*lbGroup {
	return map[string]*lbGroup{
		SLB: {id: SLB, kind: "slb"}, SLB2: {id: SLB2, kind: "slb"}, VServerGroup: {id: VServerGroup, kind: "vsg", lb: SLB},
		NLBServerGroup: {id: NLBServerGroup, kind: "nlb"}, NLBServerGroup2: {id: NLBServerGroup2, kind: "nlb"},
	}
}

// Backends lists the servers behind a CLB (its default server group), a VServer
// group or an NLB server group; nil for an id the region does not have.
func (c *Cloud) Backends(id string) []Backend {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.lbs[id]; g != nil {
		return append([]Backend{}, g.backends...)
	}
	return nil
}

// releaseBackends drops a released instance from CLB backends, as CLB does. NLB
// server groups keep it: the CPI must take it out before releasing it.
func (c *Cloud) releaseBackends(instance string) {
	for _, g := range c.lbs {
		if g.kind != "nlb" {
			g.backends = slices.DeleteFunc(g.backends, func(b Backend) bool { return b.ServerID == instance })
		}
	}
}

// clbBackends parses CLB's BackendServers parameter: a JSON array of at most 20
// {ServerId, Weight, Type, Port} objects, numbers as strings or numbers.
func (c *Cloud) clbBackends(p params, needPort bool) ([]Backend, *apiError) {
	raw := p.get("BackendServers")
	if raw == "" {
		return nil, errf(400, "MissingParameter", "The input parameter BackendServers that is mandatory for processing this request is not supplied.")
	}
	var in []map[string]any
	if err := json.Unmarshal([]byte(raw), &in); err != nil || len(in) == 0 || len(in) > 20 {
		return nil, errf(400, "InvalidParameter", "The specified parameter BackendServers is not valid.")
	}
	var out []Backend
	for _, m := range in {
		b := Backend{ServerID: fmt.Sprint(m["ServerId"]), Type: "ecs", Weight: 100}
		if t, ok := m["Type"].(string); ok && t != "" {
			b.Type = t
		}
		var e *apiError
		if b.Weight, e = jsonInt(m, "Weight", 100, 0, 100); e != nil {
			return nil, e
		}
		if needPort {
			if _, ok := m["Port"]; !ok {
				return nil, errf(400, "MissingParameter", "The input parameter BackendServers.Port is not supplied.")
			}
			if b.Port, e = jsonInt(m, "Port", 0, 1, 65535); e != nil {
				return nil, e
			}
		}
		if b.Type != "ecs" {
			return nil, errf(400, "InvalidParameter", "The specified backend server type %q is not supported here.", b.Type)
		}
		if c.instances[b.ServerID] == nil {
			return nil, errf(400, "InvalidBackendServers.ServerIdNotExist", "The specified ServerId %q does not exist.", b.ServerID)
		}
		out = append(out, b)
	}
	return out, nil
}

func jsonInt(m map[string]any, k string, def, lo, hi int) (int, *apiError) {
	v, ok := m[k]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(fmt.Sprint(v)))
	if err != nil || n < lo || n > hi {
		return 0, errf(400, "InvalidParameter", "The specified parameter BackendServers.%s is not valid.", k)
	}
	return n, nil
}

func backendList(bs []Backend) map[string]any {
	out := []map[string]any{}
	for _, b := range bs {
		m := map[string]any{"ServerId": b.ServerID, "Weight": b.Weight, "Type": b.Type}
		if b.Port != 0 {
			m["Port"] = b.Port
		}
		out = append(out, m)
	}
	return map[string]any{"BackendServer": out}
}

func hasBackend(g *lbGroup, b Backend) bool {
	return slices.ContainsFunc(g.backends, func(x Backend) bool { return x.ServerID == b.ServerID && x.Port == b.Port })
}

func (c *Cloud) addBackendServers(p params) (map[string]any, *apiError) {
	id := p.get("LoadBalancerId")
	g := c.lbs[id]
	if id == "" {
		return nil, errf(400, "MissingParameter", "The input parameter LoadBalancerId that is mandatory for processing this request is not supplied.")
	}
	if g == nil || g.kind != "slb" {
		return nil, errf(404, "InvalidLoadBalancerId.NotFound", "The specified LoadBalancerId does not exist.")
	}
	bs, e := c.clbBackends(p, false)
	if e != nil {
		return nil, e
	}
	for _, b := range bs {
		if hasBackend(g, b) {
			return nil, errf(400, "BackendServer.AlreadyExist", "The backend server %s is already added to load balancer %s.", b.ServerID, id)
		}
	}
	g.backends = append(g.backends, bs...)
	return map[string]any{"LoadBalancerId": id, "BackendServers": backendList(g.backends)}, nil
}

func (c *Cloud) addVServerGroupBackendServers(p params) (map[string]any, *apiError) {
	id := p.get("VServerGroupId")
	g := c.lbs[id]
	if id == "" {
		return nil, errf(400, "MissingParameter", "The input parameter VServerGroupId that is mandatory for processing this request is not supplied.")
	}
	if g == nil || g.kind != "vsg" {
		return nil, errf(404, "InvalidVServerGroupId.NotFound", "The specified VServerGroupId does not exist.")
	}
	bs, e := c.clbBackends(p, true)
	if e != nil {
		return nil, e
	}
	for _, b := range bs {
		if hasBackend(g, b) {
			return nil, errf(400, "BackendServer.AlreadyExistInVServerGroup", "The backend server %s:%d is already in VServer group %s.", b.ServerID, b.Port, id)
		}
	}
	g.backends = append(g.backends, bs...)
	return map[string]any{"VServerGroupId": id, "BackendServers": backendList(g.backends)}, nil
}

// nlbServers parses Servers.N.* (ServerId, ServerType, Port, Weight).
func (c *Cloud) nlbServers(p params, adding bool) ([]Backend, *apiError) {
	var out []Backend
	for i := 1; ; i++ {
		pre := "Servers." + strconv.Itoa(i) + "."
		id, ok := p[pre+"ServerId"]
		if !ok {
			break
		}
		b := Backend{ServerID: id, Type: p[pre+"ServerType"], Weight: 100}
		if b.Type != "Ecs" && b.Type != "Eni" && b.Type != "Eci" && b.Type != "Ip" {
			return nil, errf(400, "IllegalParam.serverType", "The param of serverType is illegal.")
		}
		port, err := strconv.Atoi(p[pre+"Port"])
		if err != nil || port < 0 || port > 65535 {
			return nil, errf(400, "IllegalParam.port", "The param of port is illegal.")
		}
		b.Port = port
		if w := p[pre+"Weight"]; adding && w != "" {
			if b.Weight, err = strconv.Atoi(w); err != nil || b.Weight < 0 || b.Weight > 100 {
				return nil, errf(400, "IllegalParam.weight", "The param of weight is illegal.")
			}
		}
		if adding && b.Type == "Ecs" && c.instances[id] == nil {
			return nil, errf(404, "ResourceNotFound.ecsInstance", "The specified resource %s is not found.", id)
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, errf(400, "MissingParam.Servers", "The param of Servers is missing.")
	}
	return out, nil
}

func (c *Cloud) nlbGroup(p params) (*lbGroup, *apiError) {
	g := c.lbs[p.get("ServerGroupId")]
	if g == nil || g.kind != "nlb" {
		return nil, errf(404, "ResourceNotFound.serverGroup", "The specified resource %s is not found.", p.get("ServerGroupId"))
	}
	return g, nil
}

// nlbToken answers a repeated ClientToken with the first answer's job.
func (c *Cloud) nlbToken(p params, action string) (string, bool) {
	t := p.get("ClientToken")
	if t == "" {
		return "", false
	}
	job, ok := c.tokens[action+"/"+t]
	return job, ok
}

func (c *Cloud) addServersToServerGroup(p params) (map[string]any, *apiError) {
	g, e := c.nlbGroup(p)
	if e != nil {
		return nil, e
	}
	if job, ok := c.nlbToken(p, "AddServersToServerGroup"); ok {
		return map[string]any{"ServerGroupId": g.id, "JobId": job}, nil
	}
	bs, e := c.nlbServers(p, true)
	if e != nil {
		return nil, e
	}
	for _, b := range bs {
		if hasBackend(g, b) {
			return nil, errf(400, "ResourceAlreadyAssociated.backendServer", "The backend server %s:%d is already in server group %s.", b.ServerID, b.Port, g.id)
		}
	}
	g.backends = append(g.backends, bs...)
	job := newID(8) + "-" + newID(4) + "-" + newID(12)
	if t := p.get("ClientToken"); t != "" {
		c.tokens["AddServersToServerGroup/"+t] = job
	}
	return map[string]any{"ServerGroupId": g.id, "JobId": job}, nil
}

func (c *Cloud) removeServersFromServerGroup(p params) (map[string]any, *apiError) {
	g, e := c.nlbGroup(p)
	if e != nil {
		return nil, e
	}
	if job, ok := c.nlbToken(p, "RemoveServersFromServerGroup"); ok {
		return map[string]any{"ServerGroupId": g.id, "JobId": job}, nil
	}
	bs, e := c.nlbServers(p, false)
	if e != nil {
		return nil, e
	}
	for _, b := range bs {
		if !hasBackend(g, b) {
			return nil, errf(404, "ResourceNotFound.backendServer", "The backend server %s:%d is not in server group %s.", b.ServerID, b.Port, g.id)
		}
	}
	for _, b := range bs {
		g.backends = slices.DeleteFunc(g.backends, func(x Backend) bool { return x.ServerID == b.ServerID && x.Port == b.Port })
	}
	job := newID(8) + "-" + newID(4) + "-" + newID(12)
	if t := p.get("ClientToken"); t != "" {
		c.tokens["RemoveServersFromServerGroup/"+t] = job
	}
	return map[string]any{"ServerGroupId": g.id, "JobId": job}, nil
}

// listServerGroupServers lists NLB backends, of one server group or of all,
// filtered by ServerIds.N, MaxResults a page, NextToken the offset.
func (c *Cloud) listServerGroupServers(p params) (map[string]any, *apiError) {
	var groups []*lbGroup
	if id := p.get("ServerGroupId"); id != "" {
		g, e := c.nlbGroup(p)
		if e != nil {
			return nil, e
		}
		groups = []*lbGroup{g}
	} else {
		for _, g := range c.lbs {
			if g.kind == "nlb" {
				groups = append(groups, g)
			}
		}
		slices.SortFunc(groups, func(a, b *lbGroup) int { return strings.Compare(a.id, b.id) })
	}
	ids := p.list("ServerIds")
	var all []map[string]any
	for _, g := range groups {
		for _, b := range g.backends {
			if len(ids) > 0 && !slices.Contains(ids, b.ServerID) {
				continue
			}
			all = append(all, map[string]any{"ServerId": b.ServerID, "ServerType": b.Type, "Port": b.Port, "Weight": b.Weight,
				"ServerGroupId": g.id, "Status": "Available"})
		}
	}
	size, e := p.integer("MaxResults", 20)
	if e != nil || size < 1 || size > 100 {
		return nil, errf(400, "IllegalParam.maxResults", "The param of maxResults is illegal.")
	}
	from := 0
	if t := p.get("NextToken"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 || n > len(all) {
			return nil, errf(400, "IllegalParam.NextToken", "The param of NextToken is illegal.")
		}
		from = n
	}
	to := min(from+size, len(all))
	next := ""
	if to < len(all) {
		next = strconv.Itoa(to)
	}
	page := all[from:to]
	if page == nil {
		page = []map[string]any{}
	}
	return map[string]any{"Servers": page, "TotalCount": len(all), "MaxResults": size, "NextToken": next}, nil
}
