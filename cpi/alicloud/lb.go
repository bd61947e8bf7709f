package alicloud

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/nlb"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/slb"
)

const (
	// defaultLBWeight is the weight BOSH's CPI gives a backend when the vm_type
	// names none (or 0), and CLB's and NLB's own default.
	defaultLBWeight = 100
	// nlbTag marks an instance create_vm put in NLB server groups, so that
	// delete_vm takes it out of them (and only then asks NLB anything: an account
	// that uses no NLB need not grant the CPI NLB's permissions).
	nlbTag = "bosun_nlb"
)

// lbPlan is where a new VM joins, from the vm_type's cloud_properties.
type lbPlan struct {
	slbs               []string // CLB instances: their default server group
	slbWeight          int
	vServerGroups      []string // CLB VServer groups
	vsgPort, vsgWeight int
	nlbGroups          []string // NLB server groups
	nlbPort, nlbWeight int
}

func (l lbPlan) empty() bool { return len(l.slbs)+len(l.vServerGroups)+len(l.nlbGroups) == 0 }

// checkLBs validates the load-balancer cloud_properties, naming the key at fault.
func checkLBs(p *vmProps) (lbPlan, error) {
	var l lbPlan
	var err error
	if l.slbs, err = lbIDs("slbs", p.SLBs); err != nil {
		return l, err
	}
	if l.vServerGroups, err = lbIDs("slb_server_group", p.SLBServerGroup); err != nil {
		return l, err
	}
	if l.nlbGroups, err = lbIDs("nlb_server_group_ids", p.NLBServerGroupIDs); err != nil {
		return l, err
	}
	for _, o := range []struct {
		key  string
		v    lbNumber
		ids  []string
		list string
	}{{"slb_weight", p.SLBWeight, l.slbs, "slbs"}, {"slb_server_group_port", p.SLBServerGroupPort, l.vServerGroups, "slb_server_group"},
		{"slb_server_group_weight", p.SLBServerGroupWeight, l.vServerGroups, "slb_server_group"},
		{"nlb_server_group_port", p.NLBServerGroupPort, l.nlbGroups, "nlb_server_group_ids"},
		{"nlb_server_group_weight", p.NLBServerGroupWeight, l.nlbGroups, "nlb_server_group_ids"}} {
		if o.v != "" && len(o.ids) == 0 {
			return l, fmt.Errorf("%s is set but %s names no load balancer", o.key, o.list)
		}
	}
	// Weights: 0 or none is 100, as in BOSH's CPI (which never sends a weight of 0).
	if l.slbWeight, err = lbInt("slb_weight", p.SLBWeight, defaultLBWeight, 0, 100); err != nil {
		return l, err
	}
	if l.vsgWeight, err = lbInt("slb_server_group_weight", p.SLBServerGroupWeight, defaultLBWeight, 0, 100); err != nil {
		return l, err
	}
	if l.nlbWeight, err = lbInt("nlb_server_group_weight", p.NLBServerGroupWeight, defaultLBWeight, 0, 100); err != nil {
		return l, err
	}
	if l.slbWeight == 0 {
		l.slbWeight = defaultLBWeight
	}
	if l.vsgWeight == 0 {
		l.vsgWeight = defaultLBWeight
	}
	if l.nlbWeight == 0 {
		l.nlbWeight = defaultLBWeight
	}
	// Ports have no default here: a backend on a port the service does not listen
	// on fails its health check silently, so the vm_type must say which.
	if len(l.vServerGroups) > 0 {
		if p.SLBServerGroupPort == "" {
			return l, fmt.Errorf("slb_server_group needs slb_server_group_port (the port the VM serves on, 1 to 65535)")
		}
		if l.vsgPort, err = lbInt("slb_server_group_port", p.SLBServerGroupPort, 0, 1, 65535); err != nil {
			return l, err
		}
	}
	if len(l.nlbGroups) > 0 {
		if p.NLBServerGroupPort == "" {
			return l, fmt.Errorf("nlb_server_group_ids needs nlb_server_group_port (the port the VM serves on, 1 to 65535)")
		}
		if l.nlbPort, err = lbInt("nlb_server_group_port", p.NLBServerGroupPort, 0, 1, 65535); err != nil {
			return l, err
		}
	}
	return l, nil
}

func lbIDs(key string, ids []string) ([]string, error) {
	seen := map[string]bool{}
	for _, id := range ids {
		switch {
		case id == "" || strings.ContainsAny(id, " \t\n,\"[]{}"):
			return nil, fmt.Errorf("%s: %q is not a load balancer or server group id", key, id)
		case seen[id]:
			return nil, fmt.Errorf("%s names %s twice", key, id)
		}
		seen[id] = true
	}
	return ids, nil
}

func lbInt(key string, v lbNumber, def, lo, hi int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(v)))
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s %q must be a whole number from %d to %d", key, string(v), lo, hi)
	}
	return n, nil
}

// lbBackend is one backend in CLB's BackendServers JSON parameter.
type lbBackend struct {
	ServerID string `json:"ServerId"`
	Weight   string `json:"Weight"`
	Type     string `json:"Type"`
	Port     string `json:"Port,omitempty"`
}

func backendsJSON(b lbBackend) string {
	out, _ := json.Marshal([]lbBackend{b})
	return string(out)
}

// registerLBs puts the running instance behind the load balancers the vm_type
// names. The first refusal stops it: create_vm then deletes the instance, which
// takes it out of those it joined (see deleteInstance).
func (c *CPI) registerLBs(ctx context.Context, l lbPlan, id string) error {
	for _, lb := range l.slbs {
		r := slb.CreateAddBackendServersRequest()
		r.LoadBalancerId = lb
		r.BackendServers = backendsJSON(lbBackend{ServerID: id, Weight: strconv.Itoa(l.slbWeight), Type: "ecs"})
		// Not idempotent: CLB refuses a backend it has, so a lost answer is not resent.
		if err := c.do(ctx, call{ep: c.slb}, r, slb.CreateAddBackendServersResponse()); err != nil {
			return fmt.Errorf("register with SLB %s: %w", lb, err)
		}
		c.log.Info("registered VM with SLB", "vm_cid", id, "slb", lb, "weight", l.slbWeight)
	}
	for _, g := range l.vServerGroups {
		r := slb.CreateAddVServerGroupBackendServersRequest()
		r.VServerGroupId = g
		r.BackendServers = backendsJSON(lbBackend{ServerID: id, Weight: strconv.Itoa(l.vsgWeight), Type: "ecs", Port: strconv.Itoa(l.vsgPort)})
		if err := c.do(ctx, call{ep: c.slb}, r, slb.CreateAddVServerGroupBackendServersResponse()); err != nil {
			return fmt.Errorf("register with SLB server group %s (port %d): %w", g, l.vsgPort, err)
		}
		c.log.Info("registered VM with SLB server group", "vm_cid", id, "server_group", g, "port", l.vsgPort, "weight", l.vsgWeight)
	}
	for _, g := range l.nlbGroups {
		r := nlb.CreateAddServersToServerGroupRequest()
		r.ServerGroupId = g
		// The ClientToken makes a resend after a lost answer safe.
		r.ClientToken = newID()
		r.Servers = &[]nlb.AddServersToServerGroupServers{{ServerId: id, ServerType: "Ecs", Port: strconv.Itoa(l.nlbPort), Weight: strconv.Itoa(l.nlbWeight)}}
		if err := c.do(ctx, call{ep: c.nlb, idempotent: true}, r, nlb.CreateAddServersToServerGroupResponse()); err != nil {
			return fmt.Errorf("register with NLB server group %s (port %d): %w", g, l.nlbPort, err)
		}
		c.log.Info("registered VM with NLB server group", "vm_cid", id, "server_group", g, "port", l.nlbPort, "weight", l.nlbWeight)
	}
	return nil
}

// deregisterNLB takes the instance out of every NLB server group that has it.
// Releasing an ECS instance takes it out of CLB backends (BOSH's CPI relies on
// that and never calls CLB on delete), but BOSH's CPI removes NLB backends itself
// before deleting, and so does this one.
func (c *CPI) deregisterNLB(ctx context.Context, id string) error {
	var found []nlb.Server
	token := ""
	for page := 0; page < 1000; page++ {
		r := nlb.CreateListServerGroupServersRequest()
		r.ServerIds = &[]string{id}
		r.MaxResults = requests.NewInteger(100)
		r.NextToken = token
		resp := nlb.CreateListServerGroupServersResponse()
		if err := c.do(ctx, call{ep: c.nlb, idempotent: true}, r, resp); err != nil {
			return fmt.Errorf("list the NLB server groups of instance %s: %w", id, err)
		}
		for _, s := range resp.Servers {
			if s.ServerId == id {
				found = append(found, s)
			}
		}
		if token = resp.NextToken; token == "" {
			break
		}
	}
	for _, s := range found {
		r := nlb.CreateRemoveServersFromServerGroupRequest()
		r.ServerGroupId = s.ServerGroupId
		r.ClientToken = newID()
		r.Servers = &[]nlb.RemoveServersFromServerGroupServers{{ServerId: id, ServerType: cmp.Or(s.ServerType, "Ecs"), Port: strconv.Itoa(s.Port)}}
		err := c.do(ctx, call{ep: c.nlb, idempotent: true}, r, nlb.CreateRemoveServersFromServerGroupResponse())
		if err != nil && !codeIs(err, "ResourceNotFound.serverGroup", "ResourceNotFound.backendServer") {
			return fmt.Errorf("remove instance %s from NLB server group %s: %w", id, s.ServerGroupId, err)
		}
		c.log.Info("deregistered VM from NLB server group", "vm_cid", id, "server_group", s.ServerGroupId, "port", s.Port)
	}
	return nil
}
