// Package fakeopenstack is an OpenStack cloud in one httptest server, for tests:
// Keystone v3 (tokens, catalog, version documents), Nova, Neutron, Cinder and Glance
// over their real HTTP APIs. Its state advances per poll (BUILD → ACTIVE, creating →
// available, attaching → in-use, deleting → gone), it rejects what real clouds reject
// (unknown flavor, zone, image or network; an address in use; quota), it injects
// faults (any status, Retry-After, slow or dropped responses, servers stuck in BUILD
// or ERROR), and it logs every request without bodies, so no credential is logged.
//
// A client reaches it exactly as a real cloud: through AuthURL and the catalog.
package fakeopenstack

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/cpi/internal/fakecloud"
)

// Seeded names and ids.
const (
	Username    = "admin"
	Password    = "fake-password-Zq8"
	Domain      = "Default"
	Project     = "bosun"
	Region      = "RegionOne"
	AppCredID   = "appcred-1"
	AppCredKey  = "fake-appcred-secret-Wx2"
	KeyPair     = "bosh"
	NetPrivate  = "11111111-0000-4000-8000-000000000001" // 10.0.0.0/24
	NetTiny     = "11111111-0000-4000-8000-000000000002" // 10.9.0.0/30: two addresses
	NetExternal = "11111111-0000-4000-8000-000000000003" // floating IPs 203.0.113.10-12
	FloatingIP  = "203.0.113.10"
)

// Options change the seeded cloud.
type Options struct {
	// Polls is how many GETs a resource needs to move to its next state (default 2).
	Polls int
	// MaxServers and MaxVolumes are the project's quotas (default 50).
	MaxServers, MaxVolumes int
}

// Fault makes matching requests fail.
type Fault struct {
	Method string // "" matches any
	// Path matches requests whose path contains it ("" matches any).
	Path string
	// Times is how many requests it hits; 0 means every one until ClearFaults.
	Times int
	// Status answers with this status (with RetryAfter as the Retry-After header, and
	// Body, or a message in the service's error shape).
	Status     int
	RetryAfter string
	Body       string
	// Delay holds the request this long before acting (to exceed client timeouts).
	Delay time.Duration
	// Drop closes the connection without an answer (after Delay).
	Drop bool
	// After lets the request through to the cloud first, then fails the answer: the
	// cloud acted but the client cannot know.
	After bool
}

// Request is one logged request.
type Request struct {
	Method, Path, Query string
	Status              int
	RequestID           string
}

// Server is a Nova server as tests see it.
type Server struct {
	ID, Name, Status, AZ, Flavor, Image, KeyName, Group string
	Metadata                                            map[string]string
	UserData                                            []byte
	ConfigDrive                                         bool
	SecurityGroups                                      []string
	BlockDevices                                        []map[string]any
	polls                                               int
	deleting                                            bool
	fault                                               string
	fate                                                string
}

// Volume is a Cinder volume as tests see it.
type Volume struct {
	ID, Name, Status, AZ, Type string
	Size                       int
	Metadata                   map[string]string
	Server, Device             string // attachment
	polls                      int
	next                       string // the state the current transition ends in
	nextSize                   int
	bootOf                     string // server whose root disk it is
}

// Image is a Glance image as tests see it.
type Image struct {
	ID, Name, Status, DiskFormat, ContainerFormat, Visibility string
	Properties                                                map[string]string
	Size                                                      int64
	// Chunked reports that the data came without a Content-Length: streamed.
	Chunked bool
	polls   int
}

// Port is a Neutron port.
type Port struct {
	ID, Name, NetworkID, MAC, IP, DeviceID, DeviceOwner string
	SecurityGroups                                      []string
	AllowedPairs                                        []string
}

type snapshot struct {
	ID, VolumeID, Name, Status string
	Metadata                   map[string]string
	polls                      int
	deleting                   bool
}

type network struct {
	ID, Name, SubnetID string
	CIDR               netip.Prefix
}

type fip struct {
	ID, IP, PortID string
}

// Cloud is the fake. All methods are safe for concurrent use.
type Cloud struct {
	srv  *httptest.Server
	opts Options

	mu        sync.Mutex
	tokens    map[string]bool
	flavors   []flavor
	networks  []network
	sgs       [][2]string // id, name
	servers   map[string]*Server
	ports     map[string]*Port
	fips      []*fip
	volumes   map[string]*Volume
	snapshots map[string]*snapshot
	images    map[string]*Image
	azs       []string
	volTypes  []string
	faults    fakecloud.Faults[Fault]
	log       fakecloud.Log[Request]
	fate      string
	imageFate string
	onCreate  func(Server, []byte)
	onDelete  func(Server)
}

type flavor struct {
	ID, Name                          string
	VCPUs, RAM, Disk, Ephemeral, Swap int
}

// New starts a cloud, closed when the test ends.
func New(t testing.TB, opts Options) *Cloud {
	if opts.Polls <= 0 {
		opts.Polls = 2
	}
	if opts.MaxServers == 0 {
		opts.MaxServers = 50
	}
	if opts.MaxVolumes == 0 {
		opts.MaxVolumes = 50
	}
	c := &Cloud{opts: opts, tokens: map[string]bool{},
		flavors: []flavor{
			{ID: "1", Name: "m1.small", VCPUs: 1, RAM: 2048, Disk: 10},
			{ID: "2", Name: "m1.large", VCPUs: 4, RAM: 8192, Disk: 40, Ephemeral: 20, Swap: 1024},
		},
		networks: []network{
			{ID: NetPrivate, Name: "private", SubnetID: "sub-private", CIDR: netip.MustParsePrefix("10.0.0.0/24")},
			{ID: NetTiny, Name: "tiny", SubnetID: "sub-tiny", CIDR: netip.MustParsePrefix("10.9.0.0/30")},
			{ID: NetExternal, Name: "public", SubnetID: "sub-public", CIDR: netip.MustParsePrefix("203.0.113.0/24")},
		},
		sgs:       [][2]string{{"sg-0001", "default"}, {"sg-0002", "bosh"}},
		servers:   map[string]*Server{},
		ports:     map[string]*Port{},
		volumes:   map[string]*Volume{},
		snapshots: map[string]*snapshot{},
		images:    map[string]*Image{},
		azs:       []string{"nova", "z2"},
		volTypes:  []string{"standard", "ssd"},
	}
	for i, ip := range []string{"203.0.113.10", "203.0.113.11", "203.0.113.12"} {
		c.fips = append(c.fips, &fip{ID: fmt.Sprintf("fip-%d", i+1), IP: ip})
	}
	c.srv = httptest.NewServer(c.routes())
	t.Cleanup(c.srv.Close)
	return c
}

// URL is the cloud's base URL.
func (c *Cloud) URL() string { return c.srv.URL }

// AuthURL is Keystone's URL, unversioned as operators usually give it.
func (c *Cloud) AuthURL() string { return c.srv.URL + "/identity" }

// ConfigJSON is an OpenStack CPI config (openstack.ParseConfig, `bosun cpi serve
// openstack --config`) for this cloud, polling fast as a test wants.
func (c *Cloud) ConfigJSON() []byte {
	b, _ := json.Marshal(map[string]any{"auth_url": c.AuthURL(), "username": Username, "api_key": Password,
		"domain": Domain, "project": Project, "region": Region, "default_key_name": KeyPair,
		"default_security_groups": []string{"default"}, "wait_resource_poll_interval": 0.005, "state_timeout": 30,
		"retry_config": map[string]any{"sleep_duration": 0.01}})
	return b
}

// Inject adds a fault.
func (c *Cloud) Inject(f Fault) { c.faults.Inject(f) }

// ClearFaults removes every fault.
func (c *Cloud) ClearFaults() { c.faults.Clear() }

// SetServerFate decides how servers created from now on end: "" (ACTIVE), "ERROR",
// or "BUILD" (stuck there).
func (c *Cloud) SetServerFate(fate string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fate = fate
}

// SetImageFate decides what uploaded images become: "" (active) or, say, "killed"
// (Glance could not import the data).
func (c *Cloud) SetImageFate(status string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.imageFate = status
}

// SetQuota changes the project's server and volume quotas.
func (c *Cloud) SetQuota(servers, volumes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opts.MaxServers, c.opts.MaxVolumes = servers, volumes
}

// RevokeTokens invalidates every token issued, as an expiry would.
func (c *Cloud) RevokeTokens() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.tokens)
}

// OnServerCreate calls f, outside any lock, for each server created, with the
// user_data it was given (decoded): the hook that boots a local agent.
func (c *Cloud) OnServerCreate(f func(s Server, userData []byte)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onCreate = f
}

// OnServerDelete calls f when a server is finally gone.
func (c *Cloud) OnServerDelete(f func(s Server)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onDelete = f
}

// Requests returns the request log.
func (c *Cloud) Requests() []Request { return c.log.All() }

// AddImage puts an image in Glance (for light stemcells) and returns its id.
func (c *Cloud) AddImage(name, status string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := newID()
	c.images[id] = &Image{ID: id, Name: name, Status: status, DiskFormat: "qcow2", ContainerFormat: "bare", Visibility: "public", Properties: map[string]string{}}
	return id
}

// AddPort makes an unbound port holding ip on network netID, as a create_vm
// interrupted after making its port leaves one.
func (c *Cloud) AddPort(netID, name, ip string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := &Port{ID: newID(), Name: name, NetworkID: netID, MAC: mac(), IP: ip}
	c.ports[p.ID] = p
	return p.ID
}

// AddNetwork makes a tenant network with one subnet on cidr and returns its id: a
// whole deploy against the fake uses a 127.x network, so the local agents' jobs bind
// to addresses this machine has.
func (c *Cloud) AddNetwork(name, cidr string) (string, error) {
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", fmt.Errorf("fake network %s: %w", name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id := newID()
	c.networks = append(c.networks, network{ID: id, Name: name, SubnetID: "sub-" + id, CIDR: prefix.Masked()})
	return id, nil
}

// Servers returns every server not yet gone.
func (c *Cloud) Servers() []Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Server
	for _, s := range c.servers {
		out = append(out, s.copy())
	}
	slices.SortFunc(out, func(a, b Server) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Volumes returns every volume not yet gone.
func (c *Cloud) Volumes() []Volume {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Volume
	for _, v := range c.volumes {
		cp := *v
		cp.Metadata = fakecloud.CloneMap(v.Metadata)
		out = append(out, cp)
	}
	return out
}

// Images returns every image.
func (c *Cloud) Images() []Image {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Image
	for _, i := range c.images {
		cp := *i
		cp.Properties = fakecloud.CloneMap(i.Properties)
		out = append(out, cp)
	}
	return out
}

// Ports returns every port.
func (c *Cloud) Ports() []Port {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Port
	for _, p := range c.ports {
		out = append(out, *p)
	}
	return out
}

// FloatingIPPort returns the port a floating IP is associated with.
func (c *Cloud) FloatingIPPort(ip string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.fips {
		if f.IP == ip {
			return f.PortID
		}
	}
	return ""
}

func (s *Server) copy() Server {
	cp := *s
	cp.Metadata = fakecloud.CloneMap(s.Metadata)
	cp.UserData = slices.Clone(s.UserData)
	return cp
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// statusWriter records the status for the log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// middleware: request id, log, faults, token check.
func (c *Cloud) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rid := "req-" + newID()
		rw.Header().Set("X-Openstack-Request-Id", rid)
		w := &statusWriter{ResponseWriter: rw}
		defer func() {
			c.log.Add(Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Status: w.status, RequestID: rid})
		}()
		f := c.faults.Take(func(f *Fault) bool {
			return (f.Method == "" || f.Method == r.Method) && strings.Contains(r.URL.Path, f.Path)
		}, func(f *Fault) *int { return &f.Times })
		if f != nil && !fakecloud.Hold(r, f.Delay) {
			return
		}
		if f != nil && f.After {
			next.ServeHTTP(&discardWriter{h: http.Header{}}, r)
		}
		if f != nil && f.Drop {
			fakecloud.Drop(rw)
			return
		}
		if f != nil && f.Status != 0 {
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			if f.Body != "" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(f.Status)
				w.Write([]byte(f.Body))
				return
			}
			fail(w, r, f.Status, "injected fault: %s", http.StatusText(f.Status))
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/identity") && r.URL.Path != "/image" && r.URL.Path != "/image/" &&
			r.URL.Path != "/network" && r.URL.Path != "/network/" {
			c.mu.Lock()
			ok := c.tokens[r.Header.Get("X-Auth-Token")]
			c.mu.Unlock()
			if !ok {
				fail(w, r, http.StatusUnauthorized, "The request you have made requires authentication.")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// fail answers in the error shape of the service the path belongs to.
func fail(w http.ResponseWriter, r *http.Request, status int, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	var body any
	switch {
	case strings.HasPrefix(r.URL.Path, "/network"):
		typ := map[int]string{404: "NotFound", 409: "Conflict", 400: "BadRequest"}[status]
		body = map[string]any{"NeutronError": map[string]any{"type": typ, "message": msg, "detail": ""}}
	case strings.HasPrefix(r.URL.Path, "/identity"):
		body = map[string]any{"error": map[string]any{"code": status, "message": msg, "title": http.StatusText(status)}}
	case strings.HasPrefix(r.URL.Path, "/image"):
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		fmt.Fprintf(w, "%d %s\n\n%s\n", status, http.StatusText(status), msg)
		return
	default:
		key := map[int]string{400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
			409: "conflictingRequest", 413: "overLimit", 429: "overLimit"}[status]
		if key == "" {
			key = "computeFault"
		}
		body = map[string]any{key: map[string]any{"code": status, "message": msg}}
	}
	writeJSON(w, status, body)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		fail(w, r, http.StatusBadRequest, "Malformed request body: %v", err)
		return false
	}
	return true
}
