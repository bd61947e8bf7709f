package alicloud

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/vpc"

	"github.com/bosun-gitops/bosun/cpi"
)

const (
	// agentTag names the instance's agent; ListVMs reports the instances that carry it.
	agentTag = "bosun_agent_id"
	// tokenTag carries create_vm's ClientToken, so an instance whose create answer
	// was lost can be found and deleted.
	tokenTag = "bosun_create_token"
	// ephemeralName names the data disk create_vm adds for the agent's ephemeral
	// data, so get_disks does not report it as persistent.
	ephemeralName = "bosun-ephemeral"
	// maxUserData is ECS's limit on UserData before base64 encoding.
	maxUserData = 32 << 10
	// maxTags is how many tags ECS keeps on one resource.
	maxTags = 20
)

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// gib rounds MiB up to whole GiB, ECS's unit.
func gib(m int) int { return (m + 1023) / 1024 }

// minDiskGiB is the smallest disk ECS makes of a category.
func minDiskGiB(category string) int {
	if category == "cloud" {
		return 5
	}
	return 20
}

// vmRequest is create_vm's input, checked and resolved against the cloud.
type vmRequest struct {
	spec     cpi.VMSpec
	props    vmProps
	private  string // the manual or dynamic network's name
	net      netProps
	vips     []string // vip network names
	sgs      []string
	imageID  string
	zone     string
	vswitch  vpc.VSwitch
	sysDisk  diskProps
	ephDisk  *diskProps
	lbs      lbPlan
	userData func(cpi.Networks, string) ([]byte, error)
}

// CreateVM implements cpi.CPI: the instance is created stopped, joins its extra
// security groups, gets the agent's settings as UserData, is started and waited for
// until Running, takes its EIPs and joins the load balancers its vm_type names.
// Any failure after the create deletes it.
func (c *CPI) CreateVM(ctx context.Context, spec cpi.VMSpec) (cpi.VMCID, cpi.Networks, error) {
	const method = "create_vm"
	subject := "agent " + spec.AgentID
	fail := func(retry bool, cause error, format string, a ...any) (cpi.VMCID, cpi.Networks, error) {
		return "", nil, c.errf(ctx, method, subject, cpi.VMCreationFailed, retry, cause, format, a...)
	}
	req := vmRequest{spec: spec}
	if err := cpi.DecodeCloudProperties(spec.CloudProperties, &req.props); err != nil {
		return fail(false, err, "bad vm cloud_properties")
	}
	if err := c.checkVM(&req); err != nil {
		return fail(false, err, "")
	}
	if err := c.resolveVM(ctx, &req); err != nil {
		return fail(false, err, "")
	}
	vm, nets, retry, err := c.createInstance(ctx, req)
	if err != nil {
		return fail(retry, err, "")
	}
	return vm, nets, nil
}

// checkVM validates what needs no cloud: networks, properties, the size of the
// settings.
func (c *CPI) checkVM(req *vmRequest) error {
	spec, p := req.spec, &req.props
	if spec.AgentID == "" {
		return errors.New("no agent id given")
	}
	if p.InstanceType == "" {
		return errors.New("vm cloud_properties lack instance_type")
	}
	for _, name := range slices.Sorted(maps.Keys(spec.Networks)) {
		n := spec.Networks[name]
		var np netProps
		if err := cpi.DecodeCloudProperties(n.CloudProperties, &np); err != nil {
			return fmt.Errorf("network %q: %w", name, err)
		}
		switch n.Type {
		case "manual", "", "dynamic":
			if n.Type != "dynamic" && n.IP == "" {
				return fmt.Errorf("manual network %q has no ip", name)
			}
			if req.private != "" {
				return fmt.Errorf("networks %q and %q: an ECS instance takes one manual or dynamic network", req.private, name)
			}
			if np.VSwitchID == "" {
				return fmt.Errorf("network %q has no vswitch_id in its cloud_properties", name)
			}
			req.private, req.net = name, np
		case "vip":
			if n.IP == "" {
				return fmt.Errorf("vip network %q has no ip (the EIP to associate)", name)
			}
			req.vips = append(req.vips, name)
		default:
			return fmt.Errorf("network %q: unknown type %q (want manual, dynamic or vip)", name, n.Type)
		}
	}
	if req.private == "" {
		return errors.New("the VM needs one manual or dynamic network (with a vswitch_id)")
	}
	// Security groups: the vm_type's, else the network's.
	req.sgs = p.SecurityGroupIDs
	if len(req.sgs) == 0 {
		req.sgs = req.net.SecurityGroupIDs
	}
	if len(req.sgs) == 0 && req.net.SecurityGroupID != "" {
		req.sgs = []string{req.net.SecurityGroupID}
	}
	if len(req.sgs) == 0 {
		return fmt.Errorf("no security group: set security_group_ids in the vm_type or network %q's cloud_properties", req.private)
	}
	switch p.ChargeType {
	case "", "PostPaid":
	case "PrePaid":
		if p.ChargePeriod <= 0 {
			return errors.New("charge_type PrePaid needs a charge_period")
		}
	default:
		return fmt.Errorf("charge_type %q must be PostPaid or PrePaid", p.ChargeType)
	}
	switch strings.ToLower(p.AutoRenew) {
	case "", "true", "false":
	default:
		return fmt.Errorf("auto_renew %q must be True or False", p.AutoRenew)
	}
	switch p.SpotStrategy {
	case "", "NoSpot", "SpotAsPriceGo":
	case "SpotWithPriceLimit":
		if p.SpotPriceLimit <= 0 {
			return errors.New("spot_strategy SpotWithPriceLimit needs a spot_price_limit")
		}
	default:
		return fmt.Errorf("spot_strategy %q must be NoSpot, SpotWithPriceLimit or SpotAsPriceGo", p.SpotStrategy)
	}
	if p.KeyPairName != "" && p.Password != "" {
		return errors.New("set key_pair_name or password, not both")
	}
	lbs, err := checkLBs(p)
	if err != nil {
		return err
	}
	req.lbs = lbs
	if own := len(cpiTags(req.lbs)); len(p.Tags) > maxTags-own {
		return fmt.Errorf("%d tags: ECS keeps %d per instance and the CPI uses %d", len(p.Tags), maxTags, own)
	}
	for k := range p.Tags {
		if err := checkTagKey(k); err != nil {
			return err
		}
	}
	if p.SystemDisk != nil {
		req.sysDisk = *p.SystemDisk
	}
	if req.sysDisk.Encrypted != nil || req.sysDisk.KMSKeyID != "" || req.sysDisk.DeleteWithInstance != nil {
		return errors.New("system_disk takes size, category, performance_level and tags: ECS's CreateInstance cannot encrypt it, and it always goes with the instance")
	}
	for k := range req.sysDisk.Tags {
		if err := checkTagKey(k); err != nil {
			return fmt.Errorf("system_disk: %w", err)
		}
	}
	req.sysDisk.Category = cmp.Or(req.sysDisk.Category, "cloud_efficiency")
	if req.sysDisk.Category != "cloud_efficiency" && req.sysDisk.Category != "cloud_ssd" && req.sysDisk.Category != "cloud_essd" && req.sysDisk.Category != "cloud_auto" {
		return fmt.Errorf("system_disk category %q: the system disk is cloud_efficiency, cloud_ssd, cloud_essd or cloud_auto", req.sysDisk.Category)
	}
	if e := p.EphemeralDisk; e != nil && e.Size > 0 {
		d := *e
		d.Category = cmp.Or(d.Category, "cloud_efficiency")
		for k := range d.Tags {
			if err := checkTagKey(k); err != nil {
				return fmt.Errorf("ephemeral_disk: %w", err)
			}
		}
		req.ephDisk = &d
	}
	req.userData = func(nets cpi.Networks, name string) ([]byte, error) {
		s := spec.BootstrapSettings()
		s.Networks = nets
		s.VM.Name = name
		// The stemcell's agent maps /dev/xvdX to /dev/vdX for cloud disks.
		s.Disks.System = "/dev/vda"
		if req.ephDisk != nil {
			s.Disks.Ephemeral = json.RawMessage(`"/dev/vdb"`)
		}
		b, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("encode agent settings: %w", err)
		}
		if len(b) > maxUserData {
			return nil, fmt.Errorf("agent settings are %d bytes; ECS UserData holds at most %d", len(b), maxUserData)
		}
		return b, nil
	}
	// Check the size now, with the longest address a dynamic network can get, so
	// that no instance is made only to fail on its user data.
	nets := maps.Clone(spec.Networks)
	if n := nets[req.private]; n.IP == "" {
		n.IP = "255.255.255.255"
		nets[req.private] = n
	}
	_, err = req.userData(nets, "i-"+strings.Repeat("x", 22))
	return err
}

// cpiTags are the keys of the CPI's own tags on an instance.
func cpiTags(l lbPlan) []string {
	if len(l.nlbGroups) > 0 {
		return []string{agentTag, tokenTag, nlbTag}
	}
	return []string{agentTag, tokenTag}
}

// checkTagKey refuses what ECS refuses in a tag key.
func checkTagKey(k string) error {
	l := strings.ToLower(k)
	switch {
	case k == "" || len(k) > 128:
		return fmt.Errorf("tag key %q must be 1 to 128 characters", k)
	case strings.HasPrefix(l, "aliyun") || strings.HasPrefix(l, "acs:") || strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://"):
		return fmt.Errorf("tag key %q: ECS reserves keys starting with aliyun, acs:, http:// or https://", k)
	}
	return nil
}

func clipTag(v string) string {
	if len(v) > 128 {
		return v[:128]
	}
	return v
}

// resolveVM looks up what the VM refers to: image, VSwitch (and so zone), the zone of
// its persistent disks.
func (c *CPI) resolveVM(ctx context.Context, req *vmRequest) error {
	req.imageID = imageID(req.spec.Stemcell)
	img, err := c.describeImage(ctx, req.imageID)
	if err != nil {
		return fmt.Errorf("stemcell %s: %w", req.spec.Stemcell, err)
	}
	if img == nil {
		return fmt.Errorf("stemcell %s: image %s not found in region %s", req.spec.Stemcell, req.imageID, c.cfg.Region)
	}
	if img.Status != "Available" {
		return fmt.Errorf("stemcell %s: image %s is %s, not Available", req.spec.Stemcell, req.imageID, img.Status)
	}
	if req.sysDisk.Size == 0 && img.Size > 0 {
		req.sysDisk.Size = mib(img.Size * 1024)
	}

	vr := vpc.CreateDescribeVSwitchesRequest()
	vr.VSwitchId = req.net.VSwitchID
	vresp := vpc.CreateDescribeVSwitchesResponse()
	if err := c.do(ctx, call{ep: c.vpc, idempotent: true}, vr, vresp); err != nil {
		return fmt.Errorf("network %q: %w", req.private, err)
	}
	if len(vresp.VSwitches.VSwitch) == 0 {
		return fmt.Errorf("network %q: vswitch %s not found in region %s", req.private, req.net.VSwitchID, c.cfg.Region)
	}
	req.vswitch = vresp.VSwitches.VSwitch[0]
	if n := req.spec.Networks[req.private]; n.Type == "dynamic" || n.IP == "" {
		if req.vswitch.AvailableIpAddressCount == 0 {
			return fmt.Errorf("network %q: vswitch %s has no free address", req.private, req.vswitch.VSwitchId)
		}
	}
	req.zone = cmp.Or(req.props.AvailabilityZone, c.cfg.AvailabilityZone, req.vswitch.ZoneId)
	if req.zone != req.vswitch.ZoneId {
		return fmt.Errorf("network %q: vswitch %s is in zone %s, but the VM is asked for zone %s", req.private, req.vswitch.VSwitchId, req.vswitch.ZoneId, req.zone)
	}
	for _, d := range req.spec.DiskCIDs {
		disk, err := c.describeDisk(ctx, d)
		if err != nil {
			return fmt.Errorf("persistent disk %s: %w", d, err)
		}
		if disk != nil && disk.ZoneId != req.zone {
			// ECS attaches disks only within their zone.
			return fmt.Errorf("persistent disk %s is in zone %s, but the VM is asked for zone %s", d, disk.ZoneId, req.zone)
		}
	}
	return nil
}

// createInstance makes the instance and brings it up. retry reports that nothing is
// left behind, so the director may try again.
func (c *CPI) createInstance(ctx context.Context, req vmRequest) (cpi.VMCID, cpi.Networks, bool, error) {
	spec, p := req.spec, req.props
	token := newID()
	r := ecs.CreateCreateInstanceRequest()
	r.ClientToken = token
	r.ZoneId = req.zone
	r.ImageId = req.imageID
	r.InstanceType = p.InstanceType
	r.VSwitchId = req.net.VSwitchID
	r.SecurityGroupId = req.sgs[0]
	r.InstanceName = cmp.Or(p.InstanceName, "bosun-"+token[:16])
	r.IoOptimized = "optimized"
	r.InternetChargeType = req.net.InternetChargeType
	if n := spec.Networks[req.private]; n.Type != "dynamic" && n.IP != "" {
		r.PrivateIpAddress = n.IP
	}
	r.SystemDiskCategory = req.sysDisk.Category
	r.SystemDiskPerformanceLevel = req.sysDisk.PerformanceLevel
	if req.sysDisk.Size > 0 {
		r.SystemDiskSize = requests.NewInteger(max(gib(int(req.sysDisk.Size)), minDiskGiB(req.sysDisk.Category)))
	}
	if e := req.ephDisk; e != nil {
		dd := ecs.CreateInstanceDataDisk{DiskName: ephemeralName, Category: e.Category, PerformanceLevel: e.PerformanceLevel,
			Size:               strconv.Itoa(max(gib(int(e.Size)), minDiskGiB(e.Category))),
			DeleteWithInstance: strconv.FormatBool(e.DeleteWithInstance == nil || *e.DeleteWithInstance)}
		if c.encrypted(e.Encrypted) {
			dd.Encrypted, dd.KMSKeyId = "true", cmp.Or(e.KMSKeyID, c.cfg.KMSKeyID)
		}
		r.DataDisk = &[]ecs.CreateInstanceDataDisk{dd}
	}
	r.KeyPairName, r.Password = p.KeyPairName, p.Password
	r.InstanceChargeType = cmp.Or(p.ChargeType, "PostPaid")
	if p.ChargeType == "PrePaid" {
		r.Period = requests.NewInteger(p.ChargePeriod)
		r.PeriodUnit = p.ChargePeriodUnit
		if strings.EqualFold(p.AutoRenew, "true") {
			r.AutoRenew = requests.NewBoolean(true)
			r.AutoRenewPeriod = requests.NewInteger(p.AutoRenewPeriod)
		}
	}
	r.SpotStrategy = p.SpotStrategy
	if p.SpotPriceLimit > 0 {
		r.SpotPriceLimit = requests.NewFloat(p.SpotPriceLimit)
	}
	r.RamRoleName = p.RAMRoleName
	tags := []ecs.CreateInstanceTag{{Key: agentTag, Value: clipTag(spec.AgentID)}, {Key: tokenTag, Value: token}}
	if len(req.lbs.nlbGroups) > 0 {
		// Tagged from the start, so that whatever deletes the instance (a failed
		// create_vm included) takes it out of the NLB server groups first.
		tags = append(tags, ecs.CreateInstanceTag{Key: nlbTag, Value: "true"})
	}
	for _, k := range slices.Sorted(maps.Keys(p.Tags)) {
		tags = append(tags, ecs.CreateInstanceTag{Key: k, Value: clipTag(p.Tags[k])})
	}
	r.Tag = &tags

	resp := ecs.CreateCreateInstanceResponse()
	// The ClientToken makes a repeat return the same instance, so a 5xx or a lost
	// answer may be retried.
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, resp); err != nil {
		var e *apiError
		if errors.As(err, &e) && e.Status >= 400 && e.Status < 500 {
			// ECS refused: nothing was made. Only a lack of capacity may go away.
			return "", nil, codeIs(err, "OperationDenied.NoStock", "Zone.NotOnSale", "InvalidInstanceType.NotSupported",
				"ResourceNotAvailable", "Throttling", "Throttling.", "ServiceUnavailable"), err
		}
		// No answer, or a 5xx: the instance may exist. Find it by its token and
		// delete it, but still say a retry is unsafe: it may yet appear.
		c.deleteByToken(ctx, token)
		return "", nil, false, err
	}
	id := resp.InstanceId
	vm := cpi.VMCID(id)
	cleanup := func() bool {
		if err := c.deleteInstance(context.WithoutCancel(ctx), id); err != nil {
			c.log.Error("could not delete the instance of a failed create_vm", "vm_cid", id, "err", err)
			return false
		}
		return true
	}
	failed := func(err error) (cpi.VMCID, cpi.Networks, bool, error) {
		if ctx.Err() != nil {
			cleanup()
			return "", nil, false, err
		}
		return "", nil, cleanup(), err
	}

	inst, err := c.waitInstance(ctx, id, "Stopped")
	if err != nil {
		return failed(err)
	}
	if err := c.tagInstanceDisks(ctx, req, id); err != nil {
		return failed(err)
	}
	nets := maps.Clone(spec.Networks)
	if ips := inst.VpcAttributes.PrivateIpAddress.IpAddress; len(ips) > 0 {
		n := nets[req.private]
		if n.Type == "dynamic" {
			n.IP = ips[0]
			n.UseDHCP = true
		}
		nets[req.private] = n
	}
	if n := nets[req.private]; n.IP == "" {
		return failed(fmt.Errorf("instance %s has no private address", id))
	}
	for _, sg := range req.sgs[1:] {
		if slices.Contains(inst.SecurityGroupIds.SecurityGroupId, sg) {
			continue
		}
		jr := ecs.CreateJoinSecurityGroupRequest()
		jr.InstanceId, jr.SecurityGroupId = id, sg
		if err := c.do(ctx, call{ep: c.ecs}, jr, ecs.CreateJoinSecurityGroupResponse()); err != nil {
			return failed(fmt.Errorf("security group %s: %w", sg, err))
		}
	}
	ud, err := req.userData(nets, id)
	if err != nil {
		return failed(err)
	}
	mr := ecs.CreateModifyInstanceAttributeRequest()
	mr.InstanceId = id
	mr.UserData = base64.StdEncoding.EncodeToString(ud)
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, mr, ecs.CreateModifyInstanceAttributeResponse()); err != nil {
		return failed(fmt.Errorf("write agent settings: %w", err))
	}
	sr := ecs.CreateStartInstanceRequest()
	sr.InstanceId = id
	if err := c.do(ctx, call{ep: c.ecs}, sr, ecs.CreateStartInstanceResponse()); err != nil {
		return failed(err)
	}
	if _, err := c.waitInstance(ctx, id, "Running"); err != nil {
		return failed(err)
	}
	for _, name := range req.vips {
		if err := c.associateEIP(ctx, nets[name].IP, id); err != nil {
			return failed(fmt.Errorf("vip network %q: %w", name, err))
		}
	}
	if err := c.registerLBs(ctx, req.lbs, id); err != nil {
		return failed(err)
	}
	c.log.Info("created VM", "vm_cid", id, "agent_id", spec.AgentID, "instance", cpi.InstanceFrom(ctx), "zone", req.zone)
	return vm, nets, false, nil
}

// tagInstanceDisks puts the system_disk's and ephemeral_disk's tags on the disks
// ECS made with the instance (CreateInstance cannot tag them).
func (c *CPI) tagInstanceDisks(ctx context.Context, req vmRequest, id string) error {
	var eph map[string]string
	if req.ephDisk != nil {
		eph = req.ephDisk.Tags
	}
	if len(req.sysDisk.Tags) == 0 && len(eph) == 0 {
		return nil
	}
	r := ecs.CreateDescribeDisksRequest()
	r.InstanceId = id
	r.PageSize = requests.NewInteger(100)
	resp := ecs.CreateDescribeDisksResponse()
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, resp); err != nil {
		return fmt.Errorf("tag the instance's disks: %w", err)
	}
	for _, d := range resp.Disks.Disk {
		tags := eph
		if d.Type == "system" {
			tags = req.sysDisk.Tags
		} else if d.DiskName != ephemeralName {
			continue
		}
		if err := c.addTags(ctx, "disk", d.DiskId, tags, d.Tags.Tag); err != nil {
			return fmt.Errorf("tag disk %s: %w", d.DiskId, err)
		}
	}
	return nil
}

func (c *CPI) encrypted(prop *bool) bool {
	if prop != nil {
		return *prop
	}
	return c.cfg.Encrypted
}

// waitInstance waits until the instance has status, and returns it as last seen.
func (c *CPI) waitInstance(ctx context.Context, id, status string) (*ecs.Instance, error) {
	var last *ecs.Instance
	err := c.waitFor(ctx, "instance "+id, func(ctx context.Context) (bool, string, error) {
		inst, err := c.describeInstance(ctx, id)
		if err != nil {
			return false, "", err
		}
		if inst == nil {
			return false, "", fmt.Errorf("instance %s vanished while waiting for it to be %s", id, status)
		}
		last = inst
		return inst.Status == status, inst.Status, nil
	})
	return last, err
}

// describeInstance returns the instance, or nil when ECS has none by that id.
func (c *CPI) describeInstance(ctx context.Context, id string) (*ecs.Instance, error) {
	r := ecs.CreateDescribeInstancesRequest()
	ids, _ := json.Marshal([]string{id})
	r.InstanceIds = string(ids)
	resp := ecs.CreateDescribeInstancesResponse()
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, resp); err != nil {
		if codeIs(err, "InvalidInstanceId.NotFound", "InvalidInstanceId.MalFormed", "InvalidInstanceIds.Malformed") {
			return nil, nil
		}
		return nil, err
	}
	for i := range resp.Instances.Instance {
		if resp.Instances.Instance[i].InstanceId == id {
			return &resp.Instances.Instance[i], nil
		}
	}
	return nil, nil
}

// instancesTagged lists every instance with the tag (any value when value is ""),
// page by page.
func (c *CPI) instancesTagged(ctx context.Context, key, value string) ([]ecs.Instance, error) {
	var out []ecs.Instance
	for page := 1; ; page++ {
		r := ecs.CreateDescribeInstancesRequest()
		r.Tag = &[]ecs.DescribeInstancesTag{{Key: key, Value: value}}
		r.PageNumber = requests.NewInteger(page)
		r.PageSize = requests.NewInteger(100)
		resp := ecs.CreateDescribeInstancesResponse()
		if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, resp); err != nil {
			return nil, err
		}
		out = append(out, resp.Instances.Instance...)
		if len(resp.Instances.Instance) == 0 || len(out) >= resp.TotalCount || page > 1000 {
			return out, nil
		}
	}
}

// deleteByToken deletes the instances a create with token made (after a create
// whose answer was lost).
func (c *CPI) deleteByToken(ctx context.Context, token string) {
	ctx = context.WithoutCancel(ctx)
	found, err := c.instancesTagged(ctx, tokenTag, token)
	if err != nil {
		c.log.Error("could not look for an instance whose create failed", "token", token, "err", err)
		return
	}
	for _, inst := range found {
		if err := c.deleteInstance(ctx, inst.InstanceId); err != nil {
			c.log.Error("could not delete an instance whose create failed", "vm_cid", inst.InstanceId, "err", err)
		}
	}
}

// deleteInstance releases the instance (with its system and ephemeral disks; ECS
// detaches the others) and waits until ECS no longer has it. An instance already
// gone is not an error. One create_vm put in NLB server groups leaves them first.
func (c *CPI) deleteInstance(ctx context.Context, id string) error {
	inst, err := c.describeInstance(ctx, id)
	if err != nil || inst == nil {
		return err
	}
	if a := inst.EipAddress.AllocationId; a != "" {
		ur := vpc.CreateUnassociateEipAddressRequest()
		ur.AllocationId, ur.InstanceId, ur.InstanceType = a, id, "EcsInstance"
		if err := c.do(ctx, call{ep: c.vpc}, ur, vpc.CreateUnassociateEipAddressResponse()); err != nil && !codeIs(err, "InvalidAllocationId.NotFound", "IncorrectEipStatus") {
			return fmt.Errorf("release EIP %s: %w", inst.EipAddress.IpAddress, err)
		}
	}
	for _, t := range inst.Tags.Tag {
		if t.TagKey == nlbTag {
			if err := c.deregisterNLB(ctx, id); err != nil {
				return err
			}
		}
	}
	dr := ecs.CreateDeleteInstanceRequest()
	dr.InstanceId = id
	dr.Force = requests.NewBoolean(true)
	err = c.waitFor(ctx, "deletion of instance "+id, func(ctx context.Context) (bool, string, error) {
		// A Pending instance cannot be released yet: ask again until it can.
		err := c.do(ctx, call{ep: c.ecs, idempotent: true}, dr, ecs.CreateDeleteInstanceResponse())
		switch {
		case err == nil, codeIs(err, "InvalidInstanceId.NotFound"):
			return true, "", nil
		case codeIs(err, "IncorrectInstanceStatus", "IncorrectInstanceStatus."):
			return false, "in a state that cannot be released", nil
		}
		return false, "", err
	})
	if err != nil {
		return err
	}
	return c.waitFor(ctx, "deletion of instance "+id, func(ctx context.Context) (bool, string, error) {
		inst, err := c.describeInstance(ctx, id)
		if err != nil {
			return false, "", err
		}
		if inst == nil {
			return true, "", nil
		}
		return false, inst.Status, nil
	})
}

// associateEIP binds the EIP with address ip to the instance and waits until it is
// in use.
func (c *CPI) associateEIP(ctx context.Context, ip, instance string) error {
	eip, err := c.describeEIP(ctx, ip)
	if err != nil {
		return err
	}
	if eip == nil {
		return fmt.Errorf("EIP %s is not allocated in region %s", ip, c.cfg.Region)
	}
	if eip.InstanceId != instance {
		if eip.InstanceId != "" {
			return fmt.Errorf("EIP %s is associated with %s %s", ip, eip.InstanceType, eip.InstanceId)
		}
		r := vpc.CreateAssociateEipAddressRequest()
		r.AllocationId, r.InstanceId, r.InstanceType = eip.AllocationId, instance, "EcsInstance"
		if err := c.do(ctx, call{ep: c.vpc}, r, vpc.CreateAssociateEipAddressResponse()); err != nil {
			return err
		}
	}
	return c.waitFor(ctx, "EIP "+ip, func(ctx context.Context) (bool, string, error) {
		eip, err := c.describeEIP(ctx, ip)
		if err != nil || eip == nil {
			return false, "", cmp.Or(err, fmt.Errorf("EIP %s vanished", ip))
		}
		return eip.Status == "InUse" && eip.InstanceId == instance, eip.Status, nil
	})
}

func (c *CPI) describeEIP(ctx context.Context, ip string) (*vpc.EipAddress, error) {
	r := vpc.CreateDescribeEipAddressesRequest()
	r.EipAddress = ip
	resp := vpc.CreateDescribeEipAddressesResponse()
	if err := c.do(ctx, call{ep: c.vpc, idempotent: true}, r, resp); err != nil {
		return nil, err
	}
	for i, e := range resp.EipAddresses.EipAddress {
		if e.IpAddress == ip {
			return &resp.EipAddresses.EipAddress[i], nil
		}
	}
	return nil, nil
}

// DeleteVM implements cpi.CPI. Persistent disks survive, detached by ECS.
func (c *CPI) DeleteVM(ctx context.Context, vm cpi.VMCID) error {
	const method = "delete_vm"
	if err := c.deleteInstance(ctx, string(vm)); err != nil {
		return c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "")
	}
	c.log.Info("deleted VM", "vm_cid", vm, "instance", cpi.InstanceFrom(ctx))
	return nil
}

// getInstance returns the instance, or a VMNotFound error for method.
func (c *CPI) getInstance(ctx context.Context, method string, vm cpi.VMCID) (*ecs.Instance, error) {
	inst, err := c.describeInstance(ctx, string(vm))
	if err != nil {
		return nil, c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "")
	}
	if inst == nil {
		return nil, c.errf(ctx, method, string(vm), cpi.VMNotFound, false, nil, "VM %s not found", vm)
	}
	return inst, nil
}

// HasVM implements cpi.CPI.
func (c *CPI) HasVM(ctx context.Context, vm cpi.VMCID) (bool, error) {
	inst, err := c.describeInstance(ctx, string(vm))
	if err != nil {
		return false, c.errf(ctx, "has_vm", string(vm), cpi.CloudError, false, err, "")
	}
	return inst != nil, nil
}

// RebootVM implements cpi.Rebooter, waiting until the instance runs again.
func (c *CPI) RebootVM(ctx context.Context, vm cpi.VMCID) error {
	const method = "reboot_vm"
	if _, err := c.getInstance(ctx, method, vm); err != nil {
		return err
	}
	r := ecs.CreateRebootInstanceRequest()
	r.InstanceId = string(vm)
	if err := c.do(ctx, call{ep: c.ecs}, r, ecs.CreateRebootInstanceResponse()); err != nil {
		return c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "")
	}
	if _, err := c.waitInstance(ctx, string(vm), "Running"); err != nil {
		return c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "")
	}
	return nil
}

// SetVMMetadata implements cpi.VMMetadataSetter: the keys become tags, and the
// instance takes the instance's name.
func (c *CPI) SetVMMetadata(ctx context.Context, vm cpi.VMCID, md cpi.Metadata) error {
	const method = "set_vm_metadata"
	inst, err := c.getInstance(ctx, method, vm)
	if err != nil {
		return err
	}
	if err := c.addTags(ctx, "instance", string(vm), md, inst.Tags.Tag); err != nil {
		return c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "")
	}
	if name := instanceName(md["name"]); name != "" {
		r := ecs.CreateModifyInstanceAttributeRequest()
		r.InstanceId, r.InstanceName = string(vm), name
		if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, ecs.CreateModifyInstanceAttributeResponse()); err != nil {
			return c.errf(ctx, method, string(vm), cpi.CloudError, false, err, "rename instance")
		}
	}
	return nil
}

// instanceName makes a BOSH instance name ("web/0f3a…") one ECS accepts: 2 to 128
// characters of letters, digits, ".", "_", ":" and "-", starting with a letter.
func instanceName(s string) string {
	b := []byte(s)
	for i, ch := range b {
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '.', ch == '_', ch == ':', ch == '-':
		default:
			b[i] = '_'
		}
	}
	s = string(b)
	if s == "" {
		return ""
	}
	if c := s[0]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		s = "vm-" + s
	}
	if len(s) < 2 {
		s += "_"
	}
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// addTags puts md on the resource as tags, keeping the CPI's own keys and what
// ECS refuses out. ECS keeps 20 tags per resource: keys the resource has are
// updated, new ones added while there is room, the rest dropped with a warning.
func (c *CPI) addTags(ctx context.Context, kind, id string, md cpi.Metadata, have []ecs.Tag) error {
	existing := map[string]bool{}
	for _, t := range have {
		existing[t.TagKey] = true
	}
	room := maxTags - len(existing)
	var tags []ecs.AddTagsTag
	var dropped []string
	for _, k := range slices.Sorted(maps.Keys(md)) {
		switch {
		case k == agentTag || k == tokenTag || k == nlbTag || checkTagKey(k) != nil:
			continue
		case !existing[k] && room <= 0:
			dropped = append(dropped, k)
			continue
		case !existing[k]:
			room--
		}
		tags = append(tags, ecs.AddTagsTag{Key: k, Value: clipTag(md[k])})
	}
	if len(dropped) > 0 {
		c.log.Warn("ECS keeps 20 tags per resource; metadata keys dropped", "resource", id, "dropped", strings.Join(dropped, ","))
	}
	// AddTags takes at most 10 at a time.
	for len(tags) > 0 {
		n := min(len(tags), 10)
		r := ecs.CreateAddTagsRequest()
		r.ResourceType, r.ResourceId = kind, id
		batch := tags[:n]
		r.Tag = &batch
		if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, ecs.CreateAddTagsResponse()); err != nil {
			return err
		}
		tags = tags[n:]
	}
	return nil
}

// ListVMs implements cpi.VMLister: the instances tagged with an agent id.
func (c *CPI) ListVMs(ctx context.Context) ([]cpi.VMInfo, error) {
	found, err := c.instancesTagged(ctx, agentTag, "")
	if err != nil {
		return nil, c.errf(ctx, "list_vms", "", cpi.CloudError, false, err, "")
	}
	out := []cpi.VMInfo{}
	for _, inst := range found {
		info := cpi.VMInfo{CID: cpi.VMCID(inst.InstanceId), Metadata: cpi.Metadata{}}
		for _, t := range inst.Tags.Tag {
			switch t.TagKey {
			case agentTag:
				info.AgentID = t.TagValue
			case tokenTag, nlbTag:
			default:
				info.Metadata[t.TagKey] = t.TagValue
			}
		}
		if info.AgentID != "" {
			out = append(out, info)
		}
	}
	return out, nil
}

// CalculateVMCloudProperties implements cpi.VMPropertiesCalculator: the smallest
// instance type with the CPUs and memory asked for, and an ephemeral disk of the
// size asked for.
func (c *CPI) CalculateVMCloudProperties(ctx context.Context, r cpi.VMResources) (json.RawMessage, error) {
	const method = "calculate_vm_cloud_properties"
	subject := fmt.Sprintf("cpu %d, ram %d MiB, ephemeral disk %d MiB", r.CPU, r.RAM, r.EphemeralDiskSize)
	req := ecs.CreateDescribeInstanceTypesRequest()
	resp := ecs.CreateDescribeInstanceTypesResponse()
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, req, resp); err != nil {
		return nil, c.errf(ctx, method, subject, cpi.CloudError, false, err, "")
	}
	fits := slices.DeleteFunc(resp.InstanceTypes.InstanceType, func(t ecs.InstanceType) bool {
		return t.CpuCoreCount < r.CPU || t.MemorySize*1024 < float64(r.RAM)
	})
	if len(fits) == 0 {
		return nil, c.errf(ctx, method, subject, cpi.CloudError, false, nil, "no instance type has %d CPUs and %d MiB of memory", r.CPU, r.RAM)
	}
	best := slices.MinFunc(fits, func(a, b ecs.InstanceType) int {
		return cmp.Or(cmp.Compare(a.CpuCoreCount, b.CpuCoreCount), cmp.Compare(a.MemorySize, b.MemorySize), strings.Compare(a.InstanceTypeId, b.InstanceTypeId))
	})
	props := vmProps{InstanceType: best.InstanceTypeId}
	if r.EphemeralDiskSize > 0 {
		props.EphemeralDisk = &diskProps{Size: mib(r.EphemeralDiskSize), Category: "cloud_efficiency"}
	}
	return json.Marshal(props)
}
