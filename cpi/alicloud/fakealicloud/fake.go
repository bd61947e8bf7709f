// Package fakealicloud is an Alibaba Cloud region in one httptest server, for tests:
// the ECS (2014-05-26) and VPC (2016-04-28) RPC APIs, and the backend calls of SLB
// (CLB, 2014-05-15) and NLB (2022-04-30), as alibaba-cloud-sdk-go speaks
// them — Action and signed parameters in the query (NLB's in the form body), JSON answers with a RequestId,
// errors as {"Code","Message","RequestId"} with the real codes. It checks each
// request's AccessKeyId and HMAC-SHA1 signature (and refuses a reused nonce), keeps
// state that advances per poll (instances Pending → Stopped, Starting → Running;
// disks Creating → Available, Attaching → In_use, Detaching → Available; images
// Creating → Available; snapshots progressing → accomplished; EIPs Associating →
// InUse), honours ClientToken idempotency, rejects what ECS rejects (unknown image,
// instance type, zone, VSwitch, security group or key pair; an address in use; a
// VSwitch with no free address; quota; UserData over 32 KiB; wrong states; an unknown
// load balancer or server group, a backend added twice), injects
// faults (any status and code, slow or dropped answers, failures after acting) and
// logs every request without its secrets or user data. Its OSS (path-style at the
// same URL: PutBucket, PutObject, DeleteObject, DeleteBucket) checks OSS's V1
// header signature, answers OSS's XML errors, and keeps objects' sizes and digests;
// ImportImage needs the object to exist, and an import fails if it is deleted before
// the import ends.
//
// A client reaches it exactly as a real region: through its endpoint.
package fakealicloud

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/cpi/internal/fakecloud"
)

// Seeded names and ids.
const (
	AccessKeyID     = "LTAI5tBosunFakeKey01"
	AccessKeySecret = "fake-secret-Kq7vZ2pW"
	// SecurityToken is the STS token the region accepts when a request carries one.
	SecurityToken  = "fake-sts-token-Rm4xQ9"
	Region         = "cn-beijing"
	ZoneA          = "cn-beijing-a"
	ZoneB          = "cn-beijing-b"
	VPC            = "vpc-bosun"
	VSwitchA       = "vsw-bosun-a"    // 10.0.0.0/24 in ZoneA
	VSwitchB       = "vsw-bosun-b"    // 10.1.0.0/24 in ZoneB
	VSwitchTiny    = "vsw-bosun-tiny" // 10.9.0.0/29 in ZoneA: four free addresses
	SecurityGroup  = "sg-bosun"
	SecurityGroup2 = "sg-bosun-extra"
	KeyPair        = "bosh"
	EIP            = "47.95.0.10"
	EIP2           = "47.95.0.11"
	OSSBucket      = "bosun-stemcells"
	OSSObject      = "bosh-stemcell-alicloud.raw"
	// InstanceTypeNVMe attaches disks as NVMe devices.
	InstanceTypeNVMe = "ecs.g7se.large"
)

const (
	ecsVersion = "2014-05-26"
	vpcVersion = "2016-04-28"
)

// Options change the seeded region.
type Options struct {
	// Polls is how many Describe calls a resource needs to reach its next state
	// (default 2).
	Polls int
	// MaxInstances and MaxDisks are the account's quotas (default 50).
	MaxInstances, MaxDisks int
}

// Fault makes matching requests fail.
type Fault struct {
	Action string // "" matches any
	// Times is how many requests it hits; 0 means every one until ClearFaults.
	Times int
	// Status and Code are the answer (Code defaults by status: 503
	// ServiceUnavailable, 500 InternalError, else InjectedFault); Message its text.
	Status        int
	Code, Message string
	// Delay holds the request this long first.
	Delay time.Duration
	// Drop closes the connection without an answer.
	Drop bool
	// After lets the request act first, then fails the answer: the cloud acted but
	// the client cannot know.
	After bool
}

// Request is one logged request. Params hold every parameter but the signature,
// the access key id, the security token, UserData and Password.
type Request struct {
	Action, Version string
	Status          int
	Code, RequestID string
	Params          map[string]string
}

// Instance is an ECS instance as tests see it.
type Instance struct {
	ID, Name, Status, Zone, Type, Image, VSwitch, IP, KeyPair, ChargeType string
	SecurityGroups                                                        []string
	Tags                                                                  map[string]string
	UserData                                                              []byte
	EIP                                                                   string
	Token                                                                 string
	next                                                                  string
	polls                                                                 int
	deleting                                                              bool
	fate                                                                  string
}

// Disk is a cloud disk.
type Disk struct {
	ID, Name, Status, Zone, Category, Type, Instance, Device, PerformanceLevel string
	Size                                                                       int
	DeleteWithInstance, Encrypted                                              bool
	Tags                                                                       map[string]string
	next                                                                       string
	nextSize                                                                   int
	polls                                                                      int
}

// Image is a custom or shared image.
type Image struct {
	ID, Name, Status, Snapshot, Format, OSSObject string
	Size                                          int
	polls                                         int
	fate                                          string
}

// Snapshot is a disk snapshot.
type Snapshot struct {
	ID, Name, Disk, Status string
	Tags                   map[string]string
	polls                  int
}

// Eip is an elastic IP address.
type Eip struct {
	AllocationID, IP, Instance, Status string
	polls                              int
}

type vswitch struct {
	id, zone string
	cidr     netip.Prefix
}

type instanceType struct {
	id     string
	cpu    int
	memory float64
	nvme   string
}

// Cloud is the fake. All methods are safe for concurrent use.
type Cloud struct {
	srv  *httptest.Server
	opts Options

	mu        sync.Mutex
	nonces    map[string]bool
	types     []instanceType
	zones     []string
	vswitches []vswitch
	sgs       []string
	keyPairs  []string
	buckets   map[string]*ossBucket
	instances map[string]*Instance
	disks     map[string]*Disk
	images    map[string]*Image
	snapshots map[string]*Snapshot
	eips      []*Eip
	lbs       map[string]*lbGroup // CLBs, VServer groups, NLB server groups by id
	tokens    map[string]string   // ClientToken → resource id
	faults    fakecloud.Faults[Fault]
	log       fakecloud.Log[Request]
	fate      string
	imageFate string
	onStart   func(Instance, []byte)
	onStop    func(Instance)
	hooks     []func()
}

// New starts a region, closed when the test ends.
func New(t testing.TB, opts Options) *Cloud {
	if opts.Polls <= 0 {
		opts.Polls = 2
	}
	if opts.MaxInstances == 0 {
		opts.MaxInstances = 50
	}
	if opts.MaxDisks == 0 {
		opts.MaxDisks = 50
	}
	c := &Cloud{opts: opts, nonces: map[string]bool{},
		types: []instanceType{{"ecs.g6.large", 2, 8, "unsupported"}, {"ecs.g6.xlarge", 4, 16, "unsupported"},
			{"ecs.t6-c1m1.large", 2, 2, "unsupported"}, {InstanceTypeNVMe, 2, 8, "required"}},
		zones: []string{ZoneA, ZoneB},
		vswitches: []vswitch{{VSwitchA, ZoneA, netip.MustParsePrefix("10.0.0.0/24")}, {VSwitchB, ZoneB, netip.MustParsePrefix("10.1.0.0/24")},
			{VSwitchTiny, ZoneA, netip.MustParsePrefix("10.9.0.0/29")}},
		sgs:      []string{SecurityGroup, SecurityGroup2},
		keyPairs: []string{KeyPair},
		buckets: map[string]*ossBucket{OSSBucket: {acl: "private", objects: map[string]*OSSObjectInfo{
			OSSObject: {Bucket: OSSBucket, Key: OSSObject, Size: 3 << 30}}}},
		instances: map[string]*Instance{}, disks: map[string]*Disk{}, images: map[string]*Image{},
		snapshots: map[string]*Snapshot{}, tokens: map[string]string{}, lbs: seedLBs(),
		eips: []*Eip{{AllocationID: "eip-bosun-1", IP: EIP, Status: "Available"}, {AllocationID: "eip-bosun-2", IP: EIP2, Status: "Available"}},
	}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.srv.Close)
	return c
}

// URL is the region's endpoint for ECS, VPC, SLB, NLB and OSS alike ("http://127.0.0.1:port").
func (c *Cloud) URL() string { return c.srv.URL }

// ConfigJSON is an Alibaba Cloud CPI config (alicloud.ParseConfig, `bosun cpi serve
// alicloud --config`) for this region, polling fast as a test wants.
func (c *Cloud) ConfigJSON() []byte {
	b, _ := json.Marshal(map[string]any{"region": Region, "access_key_id": AccessKeyID, "access_key_secret": AccessKeySecret,
		"ecs_endpoint": c.URL(), "vpc_endpoint": c.URL(), "slb_endpoint": c.URL(), "nlb_endpoint": c.URL(), "oss_endpoint": c.URL(), "wait_resource_poll_interval": 0.005, "state_timeout": 30,
		"retry_config": map[string]any{"sleep_duration": 0.01, "max_sleep": 0.05}})
	return b
}

// Inject adds a fault.
func (c *Cloud) Inject(f Fault) { c.faults.Inject(f) }

// ClearFaults removes every fault.
func (c *Cloud) ClearFaults() { c.faults.Clear() }

// SetInstanceFate decides how instances created from now on end: "" (they come up),
// "Pending" (stuck there: ECS cannot release them) or "Starting" (they never run).
func (c *Cloud) SetInstanceFate(fate string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fate = fate
}

// SetImageFate decides what imported images become: "" (Available) or, say,
// "CreateFailed".
func (c *Cloud) SetImageFate(status string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.imageFate = status
}

// SetQuota changes the account's instance and disk quotas.
func (c *Cloud) SetQuota(instances, disks int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opts.MaxInstances, c.opts.MaxDisks = instances, disks
}

// OnInstanceStart calls f, outside any lock, each time an instance reaches Running
// after a start or reboot, with its UserData decoded: the hook that boots a local
// agent.
func (c *Cloud) OnInstanceStart(f func(inst Instance, userData []byte)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onStart = f
}

// OnInstanceStop calls f when an instance is stopped, rebooted or released.
func (c *Cloud) OnInstanceStop(f func(inst Instance)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onStop = f
}

// Requests returns the request log.
func (c *Cloud) Requests() []Request { return c.log.All() }

// Calls counts logged requests of action (any status when status is 0).
func (c *Cloud) Calls(action string, status int) int {
	n := 0
	for _, r := range c.Requests() {
		if r.Action == action && (status == 0 || r.Status == status) {
			n++
		}
	}
	return n
}

// AddImage puts an image in the region (for light stemcells) and returns its id.
func (c *Cloud) AddImage(name, status string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := "m-" + newID(20)
	c.images[id] = &Image{ID: id, Name: name, Status: status, Size: 20}
	return id
}

// AddOSSObject makes an object importable.
func (c *Cloud) AddOSSObject(bucket, object string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buckets[bucket] == nil {
		c.buckets[bucket] = &ossBucket{acl: "private", objects: map[string]*OSSObjectInfo{}}
	}
	c.buckets[bucket].objects[object] = &OSSObjectInfo{Bucket: bucket, Key: object}
}

// Instances returns every instance not yet gone.
func (c *Cloud) Instances() []Instance {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Instance
	for _, i := range c.instances {
		out = append(out, i.copy())
	}
	slices.SortFunc(out, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Disks returns every disk, system and ephemeral ones included.
func (c *Cloud) Disks() []Disk {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Disk
	for _, d := range c.disks {
		cp := *d
		cp.Tags = fakecloud.CloneMap(d.Tags)
		out = append(out, cp)
	}
	slices.SortFunc(out, func(a, b Disk) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Images returns every image.
func (c *Cloud) Images() []Image {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Image
	for _, i := range c.images {
		out = append(out, *i)
	}
	return out
}

// Snapshots returns every snapshot.
func (c *Cloud) Snapshots() []Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Snapshot
	for _, s := range c.snapshots {
		cp := *s
		cp.Tags = fakecloud.CloneMap(s.Tags)
		out = append(out, cp)
	}
	return out
}

// EIPs returns the region's EIPs.
func (c *Cloud) EIPs() []Eip {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Eip
	for _, e := range c.eips {
		out = append(out, *e)
	}
	return out
}

func (i *Instance) copy() Instance {
	cp := *i
	cp.Tags = fakecloud.CloneMap(i.Tags)
	cp.UserData = slices.Clone(i.UserData)
	cp.SecurityGroups = slices.Clone(i.SecurityGroups)
	return cp
}

func newID(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// apiError is an error answer.
type apiError struct {
	status        int
	code, message string
	toSign        string // OSS's SignatureDoesNotMatch quotes its string to sign
}

func errf(status int, code, format string, a ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, a...)}
}

// params are one request's parameters.
type params map[string]string

func (p params) get(k string) string { return p[k] }

// list reads a repeated parameter: prefix.1, prefix.2, …
func (p params) list(prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := p[prefix+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v)
	}
}

// tags reads Tag.N.Key / Tag.N.Value pairs.
func (p params) tags() [][2]string {
	var out [][2]string
	for i := 1; ; i++ {
		k, ok := p["Tag."+strconv.Itoa(i)+".Key"]
		if !ok {
			return out
		}
		out = append(out, [2]string{k, p["Tag."+strconv.Itoa(i)+".Value"]})
	}
}

// jsonIDs reads a parameter holding a JSON array of ids ("[\"i-1\"]").
func (p params) jsonIDs(k string) ([]string, *apiError) {
	v := p[k]
	if v == "" {
		return nil, nil
	}
	var ids []string
	if err := json.Unmarshal([]byte(v), &ids); err != nil {
		return nil, errf(400, "Invalid"+strings.TrimSuffix(k, "s")+"s.Malformed", "The specified parameter %q is not valid.", k)
	}
	return ids, nil
}

func (p params) integer(k string, def int) (int, *apiError) {
	v := p[k]
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, errf(400, "InvalidParameter", "The specified parameter %q is not valid.", k)
	}
	return n, nil
}

type handler struct {
	version string
	fn      func(c *Cloud, p params) (map[string]any, *apiError)
}

var actions = map[string]handler{}

func init() {
	for name, fn := range ecsActions {
		actions[name] = handler{ecsVersion, fn}
	}
	for name, fn := range vpcActions {
		actions[name] = handler{vpcVersion, fn}
	}
	for name, fn := range slbActions {
		actions[name] = handler{slbVersion, fn}
	}
	for name, fn := range nlbActions {
		actions[name] = handler{nlbVersion, fn}
	}
}

func (c *Cloud) serve(w http.ResponseWriter, r *http.Request) {
	if isOSS(r) {
		c.serveOSS(w, r)
		return
	}
	rid := strings.ToUpper(newID(8) + "-" + newID(4) + "-" + newID(4) + "-" + newID(4) + "-" + newID(12))
	if err := r.ParseForm(); err != nil {
		writeError(w, rid, errf(400, "InvalidParameter", "malformed request"))
		return
	}
	p := params{}
	for k, v := range r.Form {
		if len(v) > 0 {
			p[k] = v[0]
		}
	}
	action := p["Action"]
	entry := Request{Action: action, Version: p["Version"], RequestID: rid, Params: map[string]string{}}
	for k, v := range p {
		switch k {
		case "Signature", "AccessKeyId", "UserData", "Password", "SignatureNonce", "Timestamp", "SecurityToken":
		default:
			entry.Params[k] = v
		}
	}
	status, code := 0, ""
	defer func() {
		entry.Status, entry.Code = status, code
		c.log.Add(entry)
	}()
	answer := func(body map[string]any, e *apiError) {
		if e != nil {
			status, code = e.status, e.code
			writeError(w, rid, e)
			return
		}
		status = 200
		body["RequestId"] = rid
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		json.NewEncoder(w).Encode(body)
	}

	f := c.takeFault(action)
	if f != nil && !fakecloud.Hold(r, f.Delay) {
		return
	}
	if e := c.authenticate(r.Method, p); e != nil {
		answer(nil, e)
		return
	}
	h, ok := actions[action]
	if !ok {
		answer(nil, errf(404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."))
		return
	}
	if p["Version"] != h.version {
		answer(nil, errf(400, "InvalidVersion", "Specified parameter Version is not valid."))
		return
	}
	if p["Format"] != "JSON" {
		answer(nil, errf(400, "InvalidParameter.Format", "this fake answers JSON only"))
		return
	}
	if rg := p["RegionId"]; rg != Region {
		answer(nil, errf(404, "InvalidRegionId.NotFound", "The specified RegionId %q does not exist.", rg))
		return
	}
	if f != nil && !f.After {
		fail(w, f, answer)
		return
	}
	c.mu.Lock()
	body, e := h.fn(c, p)
	hooks := c.hooks
	c.hooks = nil
	c.mu.Unlock()
	for _, h := range hooks {
		h()
	}
	if f != nil {
		fail(w, f, answer)
		return
	}
	answer(body, e)
}

// fail answers f, for the RPC APIs and OSS alike: it drops the connection, or sends
// the fault's error.
func fail[B any](w http.ResponseWriter, f *Fault, answer func(B, *apiError)) {
	if f.Drop {
		fakecloud.Drop(w)
		return
	}
	code := f.Code
	if code == "" {
		code = map[int]string{503: "ServiceUnavailable", 500: "InternalError"}[f.Status]
	}
	var none B
	answer(none, errf(f.Status, or(code, "InjectedFault"), "%s", or(f.Message, "injected fault: "+http.StatusText(f.Status))))
}

func writeError(w http.ResponseWriter, rid string, e *apiError) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]any{"RequestId": rid, "HostId": "ecs.fake.aliyuncs.com", "Code": e.code, "Message": e.message,
		"Recommend": "https://api.aliyun.com/troubleshoot?q=" + e.code})
}

func (c *Cloud) takeFault(action string) *Fault {
	return c.faults.Take(func(f *Fault) bool { return f.Action == "" || f.Action == action }, func(f *Fault) *int { return &f.Times })
}

// authenticate checks the access key, the HMAC-SHA1 signature over every other
// parameter (as the SDK computes it), and that the nonce is fresh.
func (c *Cloud) authenticate(method string, p params) *apiError {
	if p["AccessKeyId"] == "" || p["Signature"] == "" || p["SignatureNonce"] == "" || p["Timestamp"] == "" {
		return errf(400, "MissingParameter", "The input parameter AccessKeyId, Signature, SignatureNonce or Timestamp is missing.")
	}
	if p["AccessKeyId"] != AccessKeyID {
		return errf(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
	}
	if p["SignatureMethod"] != "HMAC-SHA1" || p["SignatureVersion"] != "1.0" {
		return errf(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
	}
	v := url.Values{}
	for k, val := range p {
		if k != "Signature" {
			v.Set(k, val)
		}
	}
	s := v.Encode()
	s = strings.NewReplacer("+", "%20", "*", "%2A", "%7E", "~").Replace(s)
	toSign := method + "&%2F&" + url.QueryEscape(s)
	mac := hmac.New(sha1.New, []byte(AccessKeySecret+"&"))
	mac.Write([]byte(toSign))
	if !hmac.Equal([]byte(base64.StdEncoding.EncodeToString(mac.Sum(nil))), []byte(p["Signature"])) {
		// Like the real service, quote the string to sign (every parameter).
		return errf(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation. server string to sign is:%s", toSign)
	}
	if t, ok := p["SecurityToken"]; ok && t != SecurityToken {
		return errf(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nonces[p["SignatureNonce"]] {
		return errf(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
	}
	c.nonces[p["SignatureNonce"]] = true
	return nil
}

// page applies PageNumber and PageSize (default 10, at most 100) to n items.
func page(p params, n int) (from, to, number, size int, e *apiError) {
	number, e = p.integer("PageNumber", 1)
	if e != nil {
		return
	}
	size, e = p.integer("PageSize", 10)
	if e != nil {
		return
	}
	if number < 1 || size < 1 || size > 100 {
		return 0, 0, 0, 0, errf(400, "InvalidParameter", "PageNumber or PageSize is not valid.")
	}
	from = min((number-1)*size, n)
	to = min(from+size, n)
	return
}

func tagList(m map[string]string) map[string]any {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	tags := []map[string]string{}
	for _, k := range keys {
		tags = append(tags, map[string]string{"TagKey": k, "TagValue": m[k]})
	}
	return map[string]any{"Tag": tags}
}

func hasTags(have map[string]string, want [][2]string) bool {
	for _, t := range want {
		v, ok := have[t[0]]
		if !ok || (t[1] != "" && v != t[1]) {
			return false
		}
	}
	return true
}
