package fakeopenstack

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/bosun-gitops/bosun/cpi/internal/fakecloud"
)

const nova = "/compute/v2.1"

func (c *Cloud) novaRoutes(m *http.ServeMux) {
	m.HandleFunc("GET "+nova+"/flavors/detail", c.listFlavors)
	m.HandleFunc("GET "+nova+"/flavors/{id}", c.getFlavor)
	m.HandleFunc("GET "+nova+"/os-keypairs/{name}", c.getKeyPair)
	m.HandleFunc("POST "+nova+"/servers", c.createServer)
	m.HandleFunc("GET "+nova+"/servers/detail", c.listServers)
	m.HandleFunc("GET "+nova+"/servers/{id}", c.getServer)
	m.HandleFunc("PUT "+nova+"/servers/{id}", c.updateServer)
	m.HandleFunc("DELETE "+nova+"/servers/{id}", c.deleteServer)
	m.HandleFunc("POST "+nova+"/servers/{id}/action", c.serverAction)
	m.HandleFunc("POST "+nova+"/servers/{id}/metadata", c.updateServerMetadata)
	m.HandleFunc("GET "+nova+"/servers/{id}/os-volume_attachments", c.listAttachments)
	m.HandleFunc("POST "+nova+"/servers/{id}/os-volume_attachments", c.attachVolume)
	m.HandleFunc("DELETE "+nova+"/servers/{id}/os-volume_attachments/{vol}", c.detachVolume)
}

func (f flavor) view() map[string]any {
	swap := any("")
	if f.Swap > 0 {
		swap = f.Swap
	}
	return map[string]any{"id": f.ID, "name": f.Name, "vcpus": f.VCPUs, "ram": f.RAM, "disk": f.Disk,
		"OS-FLV-EXT-DATA:ephemeral": f.Ephemeral, "swap": swap, "os-flavor-access:is_public": true, "rxtx_factor": 1.0, "links": []any{}}
}

func (c *Cloud) listFlavors(w http.ResponseWriter, r *http.Request) {
	var out []any
	for _, f := range c.flavors {
		out = append(out, f.view())
	}
	writeJSON(w, http.StatusOK, map[string]any{"flavors": out})
}

func (c *Cloud) getFlavor(w http.ResponseWriter, r *http.Request) {
	for _, f := range c.flavors {
		if f.ID == r.PathValue("id") {
			writeJSON(w, http.StatusOK, map[string]any{"flavor": f.view()})
			return
		}
	}
	fail(w, r, http.StatusNotFound, "Flavor %s could not be found.", r.PathValue("id"))
}

func (c *Cloud) getKeyPair(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("name") != KeyPair {
		fail(w, r, http.StatusNotFound, "Keypair %s not found for user user-1", r.PathValue("name"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keypair": map[string]any{"name": KeyPair, "public_key": "ssh-ed25519 AAAA fake", "fingerprint": "00:11", "type": "ssh"}})
}

type createServerRequest struct {
	Server struct {
		Name             string              `json:"name"`
		ImageRef         string              `json:"imageRef"`
		FlavorRef        string              `json:"flavorRef"`
		AvailabilityZone string              `json:"availability_zone"`
		KeyName          string              `json:"key_name"`
		UserData         string              `json:"user_data"`
		ConfigDrive      bool                `json:"config_drive"`
		Metadata         map[string]string   `json:"metadata"`
		SecurityGroups   []map[string]string `json:"security_groups"`
		Networks         any                 `json:"networks"`
		BlockDevices     []map[string]any    `json:"block_device_mapping_v2"`
	} `json:"server"`
	Hints struct {
		Group string `json:"group"`
	} `json:"os:scheduler_hints"`
}

func (c *Cloud) createServer(w http.ResponseWriter, r *http.Request) {
	var req createServerRequest
	if !decode(w, r, &req) {
		return
	}
	in := req.Server
	if len(in.UserData) > 65535 {
		fail(w, r, http.StatusBadRequest, "Invalid input for field/attribute user_data. Value: is too long")
		return
	}
	userData, err := base64.StdEncoding.DecodeString(in.UserData)
	if err != nil {
		fail(w, r, http.StatusBadRequest, "Invalid input for field/attribute user_data: not base64")
		return
	}
	c.mu.Lock()
	s, status, msg := c.newServer(in.Name, in.ImageRef, in.FlavorRef, in.AvailabilityZone, in.KeyName, req.Hints.Group,
		in.SecurityGroups, in.Networks, in.BlockDevices)
	if s != nil {
		s.UserData, s.ConfigDrive = userData, in.ConfigDrive
		s.Metadata = fakecloud.CloneMap(in.Metadata)
	}
	hook := c.onCreate
	var cp Server
	if s != nil {
		cp = s.copy()
	}
	c.mu.Unlock()
	if s == nil {
		fail(w, r, status, "%s", msg)
		return
	}
	if hook != nil {
		hook(cp, cp.UserData)
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"server": map[string]any{"id": s.ID, "links": []any{}, "OS-DCF:diskConfig": "MANUAL", "adminPass": "fake"}})
}

// newServer validates and records a server; the caller holds c.mu.
func (c *Cloud) newServer(name, image, flavorRef, az, key, group string, sgs []map[string]string, nets any, bdm []map[string]any) (*Server, int, string) {
	if name == "" {
		return nil, 400, "Invalid input for field/attribute name."
	}
	if len(c.servers) >= c.opts.MaxServers {
		return nil, 403, fmt.Sprintf("Quota exceeded for instances: Requested 1, but already used %d of %d instances", len(c.servers), c.opts.MaxServers)
	}
	if !slices.ContainsFunc(c.flavors, func(f flavor) bool { return f.ID == flavorRef }) {
		return nil, 400, fmt.Sprintf("Flavor %s could not be found.", flavorRef)
	}
	if az != "" && !slices.Contains(c.azs, az) {
		return nil, 400, "The requested availability zone is not available"
	}
	if key != "" && key != KeyPair {
		return nil, 400, fmt.Sprintf("Invalid key_name provided.")
	}
	bootImage := image
	for _, b := range bdm {
		if b["source_type"] == "image" {
			bootImage, _ = b["uuid"].(string)
		}
	}
	if img, ok := c.images[bootImage]; !ok || img.Status != "active" {
		return nil, 400, fmt.Sprintf("Image %s could not be found.", bootImage)
	}
	var groups []string
	for _, g := range sgs {
		i := slices.IndexFunc(c.sgs, func(s [2]string) bool { return s[1] == g["name"] || s[0] == g["name"] })
		if i < 0 {
			return nil, 400, fmt.Sprintf("Security group %s not found for project project-1.", g["name"])
		}
		groups = append(groups, c.sgs[i][1])
	}
	s := &Server{ID: newID(), Name: name, Status: "BUILD", AZ: az, Flavor: flavorRef, Image: image, KeyName: key,
		Group: group, SecurityGroups: groups, BlockDevices: bdm, fate: c.fate}
	if s.AZ == "" {
		s.AZ = c.azs[0]
	}
	// Networks: pre-made ports are bound, networks get a port of Nova's making.
	var bind []*Port
	var alloc []string
	if list, ok := nets.([]any); ok {
		for _, n := range list {
			m, _ := n.(map[string]any)
			if pid, _ := m["port"].(string); pid != "" {
				p, ok := c.ports[pid]
				if !ok {
					return nil, 404, fmt.Sprintf("Port id %s could not be found.", pid)
				}
				if p.DeviceID != "" {
					return nil, 409, fmt.Sprintf("Port %s is still in use.", pid)
				}
				bind = append(bind, p)
			} else if uuid, _ := m["uuid"].(string); uuid != "" {
				if c.network(uuid) == nil {
					return nil, 400, fmt.Sprintf("Network %s could not be found.", uuid)
				}
				alloc = append(alloc, uuid)
			}
		}
	}
	for _, p := range bind {
		p.DeviceID, p.DeviceOwner = s.ID, "compute:"+s.AZ
	}
	for _, netID := range alloc {
		ip, ok := c.freeIP(c.network(netID))
		if !ok {
			s.fate, s.fault = "ERROR", fmt.Sprintf("Build of instance %s aborted: Failed to allocate the network(s): No more IP addresses available on network %s.", s.ID, netID)
			break
		}
		p := &Port{ID: newID(), NetworkID: netID, MAC: mac(), IP: ip, DeviceID: s.ID, DeviceOwner: "compute:" + s.AZ, SecurityGroups: groups}
		c.ports[p.ID] = p
	}
	for _, b := range bdm {
		if b["destination_type"] == "volume" && b["source_type"] == "image" {
			size, _ := b["volume_size"].(float64)
			v := &Volume{ID: newID(), Name: "", Status: "in-use", AZ: s.AZ, Size: int(size), Metadata: map[string]string{},
				Server: s.ID, Device: "/dev/vda", bootOf: s.ID}
			c.volumes[v.ID] = v
		}
	}
	c.servers[s.ID] = s
	return s, 0, ""
}

func mac() string {
	b := []byte(newID())
	return fmt.Sprintf("fa:16:3e:%c%c:%c%c:%c%c", b[0], b[1], b[2], b[3], b[4], b[5])
}

// server returns the server, advancing its state by one poll when advance is set;
// the caller holds c.mu. A server whose deletion completed is removed and nil.
func (c *Cloud) server(id string, advance bool) (*Server, func()) {
	s, ok := c.servers[id]
	if !ok {
		return nil, nil
	}
	if !advance {
		return s, nil
	}
	s.polls++
	switch {
	case s.deleting && s.polls >= c.opts.Polls:
		return nil, c.removeServer(s)
	case s.Status == "BUILD" && s.polls >= c.opts.Polls && s.fate != "BUILD":
		s.polls = 0
		if s.fate == "ERROR" {
			s.Status = "ERROR"
			if s.fault == "" {
				s.fault = "No valid host was found. There are not enough hosts available."
			}
		} else {
			s.Status = "ACTIVE"
		}
	case s.Status == "REBOOT" && s.polls >= c.opts.Polls:
		s.Status, s.polls = "ACTIVE", 0
	}
	return s, nil
}

// removeServer drops a deleted server: its volumes are detached (its root volume
// deleted), ports Nova made are deleted and pre-made ones unbound. It returns the
// delete hook to call once c.mu is released.
func (c *Cloud) removeServer(s *Server) func() {
	delete(c.servers, s.ID)
	for id, v := range c.volumes {
		if v.bootOf == s.ID {
			delete(c.volumes, id)
		} else if v.Server == s.ID {
			v.Server, v.Device, v.Status, v.next = "", "", "available", ""
		}
	}
	for id, p := range c.ports {
		if p.DeviceID != s.ID {
			continue
		}
		if p.Name == "" {
			delete(c.ports, id)
		} else {
			p.DeviceID, p.DeviceOwner = "", ""
		}
		for _, f := range c.fips {
			if f.PortID == id {
				f.PortID = ""
			}
		}
	}
	hook, cp := c.onDelete, s.copy()
	return func() {
		if hook != nil {
			hook(cp)
		}
	}
}

func (c *Cloud) serverView(s *Server) map[string]any {
	addrs := map[string]any{}
	for _, p := range c.ports {
		if p.DeviceID == s.ID {
			n := c.network(p.NetworkID)
			addrs[n.Name] = append(asList(addrs[n.Name]), map[string]any{"addr": p.IP, "version": 4, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": p.MAC})
		}
	}
	var vols []any
	for _, v := range c.volumes {
		if v.Server == s.ID && v.next != "available" {
			vols = append(vols, map[string]any{"id": v.ID})
		}
	}
	var sgs []any
	for _, g := range s.SecurityGroups {
		sgs = append(sgs, map[string]any{"name": g})
	}
	image := any("")
	if s.Image != "" {
		image = map[string]any{"id": s.Image}
	}
	status, task := s.Status, any(nil)
	if s.deleting {
		task = "deleting"
	}
	v := map[string]any{"id": s.ID, "name": s.Name, "status": status, "tenant_id": "project-1", "user_id": "user-1",
		"metadata": s.Metadata, "flavor": map[string]any{"id": s.Flavor}, "image": image, "addresses": addrs,
		"key_name": s.KeyName, "OS-EXT-AZ:availability_zone": s.AZ, "OS-EXT-STS:task_state": task,
		"os-extended-volumes:volumes_attached": vols, "security_groups": sgs, "config_drive": map[bool]string{true: "True"}[s.ConfigDrive]}
	if s.Status == "ERROR" {
		v["fault"] = map[string]any{"code": 500, "message": s.fault}
	}
	return v
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func (c *Cloud) getServer(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	s, hook := c.server(r.PathValue("id"), true)
	var view map[string]any
	if s != nil {
		view = c.serverView(s)
	}
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
	if s == nil {
		fail(w, r, http.StatusNotFound, "Instance %s could not be found.", r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": view})
}

func (c *Cloud) listServers(w http.ResponseWriter, r *http.Request) {
	var re *regexp.Regexp
	if name := r.URL.Query().Get("name"); name != "" {
		var err error
		if re, err = regexp.Compile(name); err != nil {
			fail(w, r, http.StatusBadRequest, "Invalid name filter: %v", err)
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []any{}
	for _, id := range slices.Sorted(maps.Keys(c.servers)) {
		s := c.servers[id]
		if re == nil || re.MatchString(s.Name) {
			out = append(out, c.serverView(s))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"servers": out})
}

func (c *Cloud) withServer(w http.ResponseWriter, r *http.Request, f func(s *Server)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, _ := c.server(r.PathValue("id"), false)
	if s == nil || s.deleting {
		fail(w, r, http.StatusNotFound, "Instance %s could not be found.", r.PathValue("id"))
		return
	}
	f(s)
}

func (c *Cloud) updateServer(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Server struct {
			Name string `json:"name"`
		} `json:"server"`
	}
	if !decode(w, r, &req) {
		return
	}
	c.withServer(w, r, func(s *Server) {
		if req.Server.Name != "" {
			s.Name = req.Server.Name
		}
		writeJSON(w, http.StatusOK, map[string]any{"server": c.serverView(s)})
	})
}

func (c *Cloud) deleteServer(w http.ResponseWriter, r *http.Request) {
	c.withServer(w, r, func(s *Server) {
		s.deleting, s.polls = true, 0
		w.WriteHeader(http.StatusNoContent)
	})
}

func (c *Cloud) serverAction(w http.ResponseWriter, r *http.Request) {
	var req map[string]any
	if !decode(w, r, &req) {
		return
	}
	c.withServer(w, r, func(s *Server) {
		if _, ok := req["reboot"]; !ok {
			fail(w, r, http.StatusBadRequest, "unsupported action")
			return
		}
		if s.Status != "ACTIVE" {
			fail(w, r, http.StatusConflict, "Cannot 'reboot' instance %s while it is in vm_state %s", s.ID, strings.ToLower(s.Status))
			return
		}
		s.Status, s.polls = "REBOOT", 0
		w.WriteHeader(http.StatusAccepted)
	})
}

func (c *Cloud) updateServerMetadata(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Metadata map[string]string `json:"metadata"`
	}
	if !decode(w, r, &req) {
		return
	}
	c.withServer(w, r, func(s *Server) {
		for k, v := range req.Metadata {
			if len(k) > 255 || len(v) > 255 {
				fail(w, r, http.StatusBadRequest, "metadata key or value longer than 255 characters")
				return
			}
		}
		if s.Metadata == nil {
			s.Metadata = map[string]string{}
		}
		maps.Copy(s.Metadata, req.Metadata)
		writeJSON(w, http.StatusOK, map[string]any{"metadata": s.Metadata})
	})
}

func (v *Volume) attachmentView() map[string]any {
	return map[string]any{"id": v.ID, "serverId": v.Server, "volumeId": v.ID, "device": v.Device}
}

func (c *Cloud) listAttachments(w http.ResponseWriter, r *http.Request) {
	c.withServer(w, r, func(s *Server) {
		out := []any{}
		for _, id := range slices.Sorted(maps.Keys(c.volumes)) {
			if v := c.volumes[id]; v.Server == s.ID && v.next != "available" {
				out = append(out, v.attachmentView())
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"volumeAttachments": out})
	})
}

func (c *Cloud) attachVolume(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Attachment struct {
			VolumeID string `json:"volumeId"`
			Device   string `json:"device"`
		} `json:"volumeAttachment"`
	}
	if !decode(w, r, &req) {
		return
	}
	c.withServer(w, r, func(s *Server) {
		v, ok := c.volumes[req.Attachment.VolumeID]
		if !ok {
			fail(w, r, http.StatusNotFound, "Volume %s could not be found.", req.Attachment.VolumeID)
			return
		}
		if v.Status != "available" {
			fail(w, r, http.StatusBadRequest, "Invalid volume: volume %s status must be available, but is %s", v.ID, v.Status)
			return
		}
		if v.AZ != s.AZ {
			fail(w, r, http.StatusBadRequest, "Invalid volume: Server and volumes are not in the same availability zone.")
			return
		}
		// Like libvirt, Nova picks the next free virtio name whatever was asked.
		used := map[byte]bool{'a': true}
		for _, o := range c.volumes {
			if o.Server == s.ID && len(o.Device) == len("/dev/vdx") {
				used[o.Device[len(o.Device)-1]] = true
			}
		}
		letter := byte('b')
		if d := req.Attachment.Device; len(d) > 0 {
			letter = max(d[len(d)-1], 'b')
		}
		for used[letter] {
			letter++
		}
		v.Server, v.Device, v.Status, v.next, v.polls = s.ID, "/dev/vd"+string(letter), "attaching", "in-use", 0
		writeJSON(w, http.StatusOK, map[string]any{"volumeAttachment": v.attachmentView()})
	})
}

func (c *Cloud) detachVolume(w http.ResponseWriter, r *http.Request) {
	c.withServer(w, r, func(s *Server) {
		v, ok := c.volumes[r.PathValue("vol")]
		if !ok || v.Server != s.ID || v.next == "available" {
			fail(w, r, http.StatusNotFound, "volume_id not found: %s", r.PathValue("vol"))
			return
		}
		v.Status, v.next, v.polls = "detaching", "available", 0
		w.WriteHeader(http.StatusAccepted)
	})
}
