package fakeopenstack

import (
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
)

const neutron = "/network/v2.0"

func (c *Cloud) neutronRoutes(m *http.ServeMux) {
	m.HandleFunc("GET "+neutron+"/networks/{id}", c.getNetwork)
	m.HandleFunc("GET "+neutron+"/ports", c.listPorts)
	m.HandleFunc("POST "+neutron+"/ports", c.createPort)
	m.HandleFunc("DELETE "+neutron+"/ports/{id}", c.deletePort)
	m.HandleFunc("GET "+neutron+"/security-groups", c.listSecurityGroups)
	m.HandleFunc("GET "+neutron+"/floatingips", c.listFloatingIPs)
	m.HandleFunc("PUT "+neutron+"/floatingips/{id}", c.updateFloatingIP)
}

// network returns the network; the caller holds c.mu.
func (c *Cloud) network(id string) *network {
	i := slices.IndexFunc(c.networks, func(n network) bool { return n.ID == id })
	if i < 0 {
		return nil
	}
	return &c.networks[i]
}

// freeIP finds an unused host address of n; the caller holds c.mu.
func (c *Cloud) freeIP(n *network) (string, bool) {
	used := map[string]bool{}
	for _, p := range c.ports {
		if p.NetworkID == n.ID {
			used[p.IP] = true
		}
	}
	// Skip the network address and the gateway (.1); stop before broadcast.
	a := n.CIDR.Addr().Next().Next()
	for n.CIDR.Contains(a) {
		next := a.Next()
		if !n.CIDR.Contains(next) {
			break // a is the broadcast address
		}
		if !used[a.String()] {
			return a.String(), true
		}
		a = next
	}
	return "", false
}

func (c *Cloud) getNetwork(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.network(r.PathValue("id"))
	if n == nil {
		fail(w, r, http.StatusNotFound, "Network %s could not be found.", r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"network": map[string]any{"id": n.ID, "name": n.Name, "status": "ACTIVE", "subnets": []string{n.SubnetID}, "admin_state_up": true}})
}

func (p *Port) view(subnet string) map[string]any {
	sgs := p.SecurityGroups
	if sgs == nil {
		sgs = []string{}
	}
	pairs := []any{}
	for _, a := range p.AllowedPairs {
		pairs = append(pairs, map[string]any{"ip_address": a})
	}
	return map[string]any{"id": p.ID, "name": p.Name, "network_id": p.NetworkID, "mac_address": p.MAC,
		"fixed_ips": []any{map[string]any{"subnet_id": subnet, "ip_address": p.IP}}, "device_id": p.DeviceID,
		"device_owner": p.DeviceOwner, "security_groups": sgs, "allowed_address_pairs": pairs,
		"status": "ACTIVE", "admin_state_up": true, "project_id": "project-1", "tenant_id": "project-1"}
}

func (c *Cloud) listPorts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []any{}
	for _, id := range slices.Sorted(maps.Keys(c.ports)) {
		p := c.ports[id]
		if q.Has("device_id") && p.DeviceID != q.Get("device_id") || q.Has("network_id") && p.NetworkID != q.Get("network_id") {
			continue
		}
		if f := q.Get("fixed_ips"); f != "" && f != "ip_address="+p.IP {
			continue
		}
		out = append(out, p.view(c.network(p.NetworkID).SubnetID))
	}
	writeJSON(w, http.StatusOK, map[string]any{"ports": out})
}

func (c *Cloud) createPort(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Port struct {
			NetworkID string `json:"network_id"`
			Name      string `json:"name"`
			FixedIPs  []struct {
				IPAddress string `json:"ip_address"`
			} `json:"fixed_ips"`
			SecurityGroups *[]string `json:"security_groups"`
			Pairs          []struct {
				IPAddress string `json:"ip_address"`
			} `json:"allowed_address_pairs"`
		} `json:"port"`
	}
	if !decode(w, r, &req) {
		return
	}
	in := req.Port
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.network(in.NetworkID)
	if n == nil {
		fail(w, r, http.StatusNotFound, "Network %s could not be found.", in.NetworkID)
		return
	}
	p := &Port{ID: newID(), Name: in.Name, NetworkID: n.ID, MAC: mac()}
	if in.SecurityGroups != nil {
		for _, g := range *in.SecurityGroups {
			if !slices.ContainsFunc(c.sgs, func(s [2]string) bool { return s[0] == g }) {
				fail(w, r, http.StatusNotFound, "Security group %s does not exist", g)
				return
			}
		}
		p.SecurityGroups = *in.SecurityGroups
	} else {
		p.SecurityGroups = []string{c.sgs[0][0]}
	}
	for _, a := range in.Pairs {
		p.AllowedPairs = append(p.AllowedPairs, a.IPAddress)
	}
	if len(in.FixedIPs) > 0 && in.FixedIPs[0].IPAddress != "" {
		ip, err := netip.ParseAddr(in.FixedIPs[0].IPAddress)
		if err != nil || !n.CIDR.Contains(ip) {
			neutronFail(w, http.StatusBadRequest, "InvalidIpForNetwork", fmt.Sprintf("IP address %s is not a valid IP for the specified network.", in.FixedIPs[0].IPAddress))
			return
		}
		for _, o := range c.ports {
			if o.NetworkID == n.ID && o.IP == ip.String() {
				neutronFail(w, http.StatusConflict, "IpAddressAlreadyAllocated", fmt.Sprintf("IP address %s already allocated in subnet %s", ip, n.SubnetID))
				return
			}
		}
		p.IP = ip.String()
	} else {
		ip, ok := c.freeIP(n)
		if !ok {
			neutronFail(w, http.StatusConflict, "IpAddressGenerationFailure", fmt.Sprintf("No more IP addresses available on network %s.", n.ID))
			return
		}
		p.IP = ip
	}
	c.ports[p.ID] = p
	writeJSON(w, http.StatusCreated, map[string]any{"port": p.view(n.SubnetID)})
}

func (c *Cloud) deletePort(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := r.PathValue("id")
	if _, ok := c.ports[id]; !ok {
		fail(w, r, http.StatusNotFound, "Port %s could not be found.", id)
		return
	}
	delete(c.ports, id)
	for _, f := range c.fips {
		if f.PortID == id {
			f.PortID = ""
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *Cloud) listSecurityGroups(w http.ResponseWriter, r *http.Request) {
	out := []any{}
	for _, g := range c.sgs {
		out = append(out, map[string]any{"id": g[0], "name": g[1], "description": "", "security_group_rules": []any{}, "project_id": "project-1", "tenant_id": "project-1"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"security_groups": out})
}

func (f *fip) view(c *Cloud) map[string]any {
	v := map[string]any{"id": f.ID, "floating_ip_address": f.IP, "floating_network_id": NetExternal, "port_id": nil,
		"status": "DOWN", "project_id": "project-1", "tenant_id": "project-1"}
	if p, ok := c.ports[f.PortID]; ok {
		v["port_id"], v["fixed_ip_address"], v["status"] = p.ID, p.IP, "ACTIVE"
	}
	return v
}

func (c *Cloud) listFloatingIPs(w http.ResponseWriter, r *http.Request) {
	want := r.URL.Query().Get("floating_ip_address")
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []any{}
	for _, f := range c.fips {
		if want == "" || f.IP == want {
			out = append(out, f.view(c))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"floatingips": out})
}

func (c *Cloud) updateFloatingIP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		FloatingIP struct {
			PortID *string `json:"port_id"`
		} `json:"floatingip"`
	}
	if !decode(w, r, &req) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.IndexFunc(c.fips, func(f *fip) bool { return f.ID == r.PathValue("id") })
	if i < 0 {
		fail(w, r, http.StatusNotFound, "Floating IP %s could not be found", r.PathValue("id"))
		return
	}
	f := c.fips[i]
	if pid := req.FloatingIP.PortID; pid != nil && *pid != "" {
		if _, ok := c.ports[*pid]; !ok {
			fail(w, r, http.StatusNotFound, "Port %s could not be found.", *pid)
			return
		}
		f.PortID = *pid
	} else {
		f.PortID = ""
	}
	writeJSON(w, http.StatusOK, map[string]any{"floatingip": f.view(c)})
}

func neutronFail(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{"NeutronError": map[string]any{"type": typ, "message": msg, "detail": ""}})
}
