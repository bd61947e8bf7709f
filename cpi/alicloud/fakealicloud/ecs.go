package fakealicloud

import (
	"encoding/base64"

	"net/netip"
	"slices"
	"strconv"
	"strings"
)

type actionFunc = func(c *Cloud, p params) (map[string]any, *apiError)

var ecsActions = map[string]actionFunc{
	"CreateInstance":          (*Cloud).createInstance,
	"DescribeInstances":       (*Cloud).describeInstances,
	"StartInstance":           (*Cloud).startInstance,
	"StopInstance":            (*Cloud).stopInstance,
	"RebootInstance":          (*Cloud).rebootInstance,
	"DeleteInstance":          (*Cloud).deleteInstance,
	"ModifyInstanceAttribute": (*Cloud).modifyInstanceAttribute,
	"DescribeUserData":        (*Cloud).describeUserData,
	"JoinSecurityGroup":       (*Cloud).joinSecurityGroup,
	"AddTags":                 (*Cloud).addTags,
	"DescribeInstanceTypes":   (*Cloud).describeInstanceTypes,
	"CreateDisk":              (*Cloud).createDisk,
	"DescribeDisks":           (*Cloud).describeDisks,
	"AttachDisk":              (*Cloud).attachDisk,
	"DetachDisk":              (*Cloud).detachDisk,
	"DeleteDisk":              (*Cloud).deleteDisk,
	"ResizeDisk":              (*Cloud).resizeDisk,
	"ModifyDiskSpec":          (*Cloud).modifyDiskSpec,
	"CreateSnapshot":          (*Cloud).createSnapshot,
	"DescribeSnapshots":       (*Cloud).describeSnapshots,
	"DeleteSnapshot":          (*Cloud).deleteSnapshot,
	"ImportImage":             (*Cloud).importImage,
	"DescribeImages":          (*Cloud).describeImages,
	"DeleteImage":             (*Cloud).deleteImage,
}

// --- state machines: a resource moves to next after Polls Describe calls ---

func (c *Cloud) advanceInstance(i *Instance) {
	if i.next == "" && !i.deleting {
		return
	}
	if i.fate != "" && i.Status == i.fate {
		return
	}
	i.polls++
	if i.polls < c.opts.Polls {
		return
	}
	i.polls = 0
	if i.deleting {
		c.release(i)
		return
	}
	i.Status, i.next = i.next, ""
	if i.Status == "Running" {
		inst, ud, f := i.copy(), slices.Clone(i.UserData), c.onStart
		if f != nil {
			c.hooks = append(c.hooks, func() { f(inst, ud) })
		}
	}
}

// release removes the instance: its own disks go, the others are detached, its EIP
// is freed, CLBs drop it from their backends.
func (c *Cloud) release(i *Instance) {
	delete(c.instances, i.ID)
	c.releaseBackends(i.ID)
	for id, d := range c.disks {
		if d.Instance != i.ID {
			continue
		}
		if d.DeleteWithInstance {
			delete(c.disks, id)
		} else {
			d.Instance, d.Device, d.Status, d.next = "", "", "Available", ""
		}
	}
	for _, e := range c.eips {
		if e.Instance == i.ID {
			e.Instance, e.Status = "", "Available"
		}
	}
}

func (c *Cloud) stopped(i *Instance) {
	if f := c.onStop; f != nil {
		inst := i.copy()
		c.hooks = append(c.hooks, func() { f(inst) })
	}
}

func (c *Cloud) advanceDisk(d *Disk) {
	if d.next == "" && d.nextSize == 0 {
		return
	}
	d.polls++
	if d.polls < c.opts.Polls {
		return
	}
	d.polls = 0
	if d.next != "" {
		d.Status, d.next = d.next, ""
	}
	if d.nextSize != 0 {
		d.Size, d.nextSize = d.nextSize, 0
	}
}

// --- instances ---

func (c *Cloud) instanceType(id string) *instanceType {
	for i := range c.types {
		if c.types[i].id == id {
			return &c.types[i]
		}
	}
	return nil
}

func (c *Cloud) vswitch(id string) *vswitch {
	for i := range c.vswitches {
		if c.vswitches[i].id == id {
			return &c.vswitches[i]
		}
	}
	return nil
}

// usedIPs are the addresses instances hold in the VSwitch.
func (c *Cloud) usedIPs(vsw string) map[string]bool {
	used := map[string]bool{}
	for _, i := range c.instances {
		if i.VSwitch == vsw {
			used[i.IP] = true
		}
	}
	return used
}

// freeIPs lists the VSwitch's free addresses: Alibaba keeps the first and the last
// three of every block.
func (c *Cloud) freeIPs(v *vswitch) []string {
	used := c.usedIPs(v.id)
	var out []string
	first := v.cidr.Masked().Addr().Next()
	size := 1 << (32 - v.cidr.Bits())
	a := first
	for n := 1; n < size-3; n++ {
		if !used[a.String()] {
			out = append(out, a.String())
		}
		a = a.Next()
	}
	return out
}

func decodeUserData(s string) ([]byte, *apiError) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errf(400, "InvalidUserData.Base64FormatInvalid", "The specified UserData is not valid Base64.")
	}
	if len(b) > 32<<10 {
		return nil, errf(400, "InvalidUserData.SizeExceeded", "The specified UserData exceeds 32 KB.")
	}
	return b, nil
}

func (c *Cloud) createInstance(p params) (map[string]any, *apiError) {
	if id, ok := c.tokens[p.get("ClientToken")]; ok && p.get("ClientToken") != "" {
		return map[string]any{"InstanceId": id}, nil
	}
	img := c.images[p.get("ImageId")]
	switch {
	case img == nil || img.Status != "Available":
		return nil, errf(404, "InvalidImageId.NotFound", "The specified ImageId does not exist.")
	case c.instanceType(p.get("InstanceType")) == nil:
		return nil, errf(404, "InvalidInstanceType.NotFound", "The specified InstanceType %q does not exist.", p.get("InstanceType"))
	case !slices.Contains(c.zones, p.get("ZoneId")):
		return nil, errf(404, "InvalidZoneId.NotFound", "The specified zone %q does not exist.", p.get("ZoneId"))
	}
	v := c.vswitch(p.get("VSwitchId"))
	if v == nil {
		return nil, errf(404, "InvalidVSwitchId.NotFound", "The specified VSwitchId %q does not exist.", p.get("VSwitchId"))
	}
	if v.zone != p.get("ZoneId") {
		return nil, errf(400, "InvalidVSwitchId.NotBelongToZone", "The specified VSwitch is not in zone %s.", p.get("ZoneId"))
	}
	if !slices.Contains(c.sgs, p.get("SecurityGroupId")) {
		return nil, errf(404, "InvalidSecurityGroupId.NotFound", "The specified SecurityGroupId %q does not exist.", p.get("SecurityGroupId"))
	}
	if k := p.get("KeyPairName"); k != "" && !slices.Contains(c.keyPairs, k) {
		return nil, errf(404, "InvalidKeyPairName.NotFound", "The specified KeyPairName %q does not exist.", k)
	}
	if len(c.instances) >= c.opts.MaxInstances {
		return nil, errf(403, "QuotaExceed.PostPaidInstance", "The quota of pay-as-you-go instances is exceeded.")
	}
	ip := p.get("PrivateIpAddress")
	if ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil || !v.cidr.Contains(a) {
			return nil, errf(400, "InvalidPrivateIpAddress.Malformed", "The specified PrivateIpAddress %q is not in the VSwitch's CIDR block.", ip)
		}
		if c.usedIPs(v.id)[ip] {
			return nil, errf(400, "InvalidPrivateIpAddress.Duplicated", "The specified PrivateIpAddress %s is already used.", ip)
		}
	} else {
		free := c.freeIPs(v)
		if len(free) == 0 {
			return nil, errf(403, "InvalidVSwitchId.IpNotEnough", "The specified VSwitch has no free IP address.")
		}
		ip = free[0]
	}
	ud, e := decodeUserData(p.get("UserData"))
	if e != nil {
		return nil, e
	}
	id := "i-" + newID(20)
	inst := &Instance{ID: id, Name: p.get("InstanceName"), Status: "Pending", next: "Stopped", Zone: p.get("ZoneId"),
		Type: p.get("InstanceType"), Image: img.ID, VSwitch: v.id, IP: ip, KeyPair: p.get("KeyPairName"),
		ChargeType: p.get("InstanceChargeType"), SecurityGroups: []string{p.get("SecurityGroupId")}, Tags: map[string]string{},
		UserData: ud, Token: p.get("ClientToken"), fate: c.fate}
	if inst.Name == "" {
		inst.Name = id
	}
	for _, t := range p.tags() {
		inst.Tags[t[0]] = t[1]
	}
	sysSize, _ := p.integer("SystemDisk.Size", max(img.Size, 20))
	if sysSize < img.Size {
		return nil, errf(400, "InvalidSystemDiskSize.LessThanImageSize", "The system disk size is smaller than the image.")
	}
	c.instances[id] = inst
	c.disks["d-"+newID(20)] = &Disk{Name: "system", Status: "In_use", Zone: inst.Zone, Category: or(p.get("SystemDisk.Category"), "cloud_efficiency"),
		Type: "system", Instance: id, Device: "/dev/xvda", Size: sysSize, DeleteWithInstance: true, Tags: map[string]string{}}
	for n := 1; p.get("DataDisk."+strconv.Itoa(n)+".Size") != ""; n++ {
		pre := "DataDisk." + strconv.Itoa(n) + "."
		size, e := p.integer(pre+"Size", 0)
		if e != nil {
			return nil, e
		}
		c.disks["d-"+newID(20)] = &Disk{Name: p.get(pre + "DiskName"), Status: "In_use", Zone: inst.Zone, Category: or(p.get(pre+"Category"), "cloud_efficiency"),
			Type: "data", Instance: id, Device: "/dev/xvd" + string(rune('a'+n)), Size: size,
			DeleteWithInstance: p.get(pre+"DeleteWithInstance") != "false", Tags: map[string]string{}}
	}
	for did, d := range c.disks {
		d.ID = did
	}
	if t := p.get("ClientToken"); t != "" {
		c.tokens[t] = id
	}
	return map[string]any{"InstanceId": id}, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (c *Cloud) instanceJSON(i *Instance) map[string]any {
	t := c.instanceType(i.Type)
	eip := map[string]any{"IpAddress": "", "AllocationId": ""}
	for _, e := range c.eips {
		if e.Instance == i.ID {
			eip = map[string]any{"IpAddress": e.IP, "AllocationId": e.AllocationID}
		}
	}
	return map[string]any{"InstanceId": i.ID, "InstanceName": i.Name, "Status": i.Status, "RegionId": Region, "ZoneId": i.Zone,
		"InstanceType": i.Type, "ImageId": i.Image, "Cpu": t.cpu, "Memory": int(t.memory * 1024), "KeyPairName": i.KeyPair,
		"InstanceChargeType": or(i.ChargeType, "PostPaid"), "InstanceNetworkType": "vpc",
		"VpcAttributes":    map[string]any{"VpcId": VPC, "VSwitchId": i.VSwitch, "PrivateIpAddress": map[string]any{"IpAddress": []string{i.IP}}},
		"SecurityGroupIds": map[string]any{"SecurityGroupId": i.SecurityGroups},
		"EipAddress":       eip, "Tags": tagList(i.Tags)}
}

func (c *Cloud) describeInstances(p params) (map[string]any, *apiError) {
	ids, e := p.jsonIDs("InstanceIds")
	if e != nil {
		return nil, e
	}
	want := p.tags()
	var match []*Instance
	for _, i := range c.instances {
		if (ids == nil || slices.Contains(ids, i.ID)) && hasTags(i.Tags, want) &&
			(p.get("InstanceName") == "" || p.get("InstanceName") == i.Name) && (p.get("ZoneId") == "" || p.get("ZoneId") == i.Zone) {
			match = append(match, i)
		}
	}
	slices.SortFunc(match, func(a, b *Instance) int { return strings.Compare(a.ID, b.ID) })
	from, to, number, size, e := page(p, len(match))
	if e != nil {
		return nil, e
	}
	out := []map[string]any{}
	for _, i := range match[from:to] {
		c.advanceInstance(i)
		if c.instances[i.ID] != nil {
			out = append(out, c.instanceJSON(i))
		}
	}
	return map[string]any{"TotalCount": len(match), "PageNumber": number, "PageSize": size, "Instances": map[string]any{"Instance": out}}, nil
}

func (c *Cloud) getInstance(p params) (*Instance, *apiError) {
	i := c.instances[p.get("InstanceId")]
	if i == nil || i.deleting {
		return nil, errf(404, "InvalidInstanceId.NotFound", "The specified InstanceId %q does not exist.", p.get("InstanceId"))
	}
	return i, nil
}

func incorrect(i *Instance) *apiError {
	return errf(403, "IncorrectInstanceStatus", "The current status of the resource does not support this operation (instance %s is %s).", i.ID, i.Status)
}

func (c *Cloud) startInstance(p params) (map[string]any, *apiError) {
	i, e := c.getInstance(p)
	if e != nil {
		return nil, e
	}
	if i.Status != "Stopped" || i.next != "" {
		return nil, incorrect(i)
	}
	i.Status, i.next, i.polls = "Starting", "Running", 0
	return map[string]any{}, nil
}

func (c *Cloud) stopInstance(p params) (map[string]any, *apiError) {
	i, e := c.getInstance(p)
	if e != nil {
		return nil, e
	}
	if i.Status != "Running" || i.next != "" {
		return nil, incorrect(i)
	}
	i.Status, i.next, i.polls = "Stopping", "Stopped", 0
	c.stopped(i)
	return map[string]any{}, nil
}

func (c *Cloud) rebootInstance(p params) (map[string]any, *apiError) {
	i, e := c.getInstance(p)
	if e != nil {
		return nil, e
	}
	if i.Status != "Running" || i.next != "" {
		return nil, incorrect(i)
	}
	i.Status, i.next, i.polls = "Starting", "Running", 0
	c.stopped(i)
	return map[string]any{}, nil
}

func (c *Cloud) deleteInstance(p params) (map[string]any, *apiError) {
	i, e := c.getInstance(p)
	if e != nil {
		return nil, e
	}
	force := p.get("Force") == "true"
	switch {
	case i.Status == "Pending":
		return nil, incorrect(i)
	case i.Status != "Stopped" && !force:
		return nil, incorrect(i)
	}
	c.stopped(i)
	i.Status, i.next, i.deleting, i.polls = "Stopping", "", true, 0
	return map[string]any{}, nil
}

func (c *Cloud) modifyInstanceAttribute(p params) (map[string]any, *apiError) {
	i, e := c.getInstance(p)
	if e != nil {
		return nil, e
	}
	if p.get("UserData") != "" {
		if i.Status != "Stopped" {
			return nil, incorrect(i)
		}
		ud, e := decodeUserData(p.get("UserData"))
		if e != nil {
			return nil, e
		}
		i.UserData = ud
	}
	if n := p.get("InstanceName"); n != "" {
		if len(n) < 2 || len(n) > 128 || strings.ContainsAny(n, "/ ") {
			return nil, errf(400, "InvalidInstanceName.Malformed", "The specified InstanceName %q is not valid.", n)
		}
		i.Name = n
	}
	return map[string]any{}, nil
}

func (c *Cloud) describeUserData(p params) (map[string]any, *apiError) {
	i, e := c.getInstance(p)
	if e != nil {
		return nil, e
	}
	return map[string]any{"InstanceId": i.ID, "RegionId": Region, "UserData": base64.StdEncoding.EncodeToString(i.UserData)}, nil
}

func (c *Cloud) joinSecurityGroup(p params) (map[string]any, *apiError) {
	i, e := c.getInstance(p)
	if e != nil {
		return nil, e
	}
	sg := p.get("SecurityGroupId")
	if !slices.Contains(c.sgs, sg) {
		return nil, errf(404, "InvalidSecurityGroupId.NotFound", "The specified SecurityGroupId %q does not exist.", sg)
	}
	if slices.Contains(i.SecurityGroups, sg) {
		return nil, errf(403, "InvalidInstanceId.AlreadyExists", "The instance is already in the security group.")
	}
	i.SecurityGroups = append(i.SecurityGroups, sg)
	return map[string]any{}, nil
}

func (c *Cloud) addTags(p params) (map[string]any, *apiError) {
	var tags map[string]string
	id := p.get("ResourceId")
	switch p.get("ResourceType") {
	case "instance":
		if i := c.instances[id]; i != nil {
			tags = i.Tags
		}
	case "disk":
		if d := c.disks[id]; d != nil {
			tags = d.Tags
		}
	case "snapshot":
		if s := c.snapshots[id]; s != nil {
			tags = s.Tags
		}
	default:
		return nil, errf(400, "InvalidResourceType.NotSupported", "The specified ResourceType %q is not supported.", p.get("ResourceType"))
	}
	if tags == nil {
		return nil, errf(404, "InvalidResourceId.NotFound", "The specified ResourceId %q does not exist.", id)
	}
	add := p.tags()
	if len(add) == 0 || len(add) > 10 {
		return nil, errf(400, "InvalidTagCount", "AddTags takes 1 to 10 tags.")
	}
	n := len(tags)
	for _, t := range add {
		if _, ok := tags[t[0]]; !ok {
			n++
		}
	}
	if n > 20 {
		return nil, errf(400, "InvalidTagCount", "A resource has at most 20 tags.")
	}
	for _, t := range add {
		if strings.HasPrefix(strings.ToLower(t[0]), "aliyun") || strings.HasPrefix(t[0], "acs:") {
			return nil, errf(400, "InvalidTagKey.Malformed", "The tag key %q is reserved.", t[0])
		}
		tags[t[0]] = t[1]
	}
	return map[string]any{}, nil
}

func (c *Cloud) describeInstanceTypes(p params) (map[string]any, *apiError) {
	want := p.list("InstanceTypes")
	out := []map[string]any{}
	for _, t := range c.types {
		if len(want) == 0 || slices.Contains(want, t.id) {
			out = append(out, map[string]any{"InstanceTypeId": t.id, "CpuCoreCount": t.cpu, "MemorySize": t.memory, "NvmeSupport": t.nvme,
				"InstanceTypeFamily": t.id[:strings.LastIndex(t.id, ".")]})
		}
	}
	return map[string]any{"InstanceTypes": map[string]any{"InstanceType": out}}, nil
}

// --- disks ---

var minSize = map[string]int{"cloud": 5, "cloud_efficiency": 20, "cloud_ssd": 20, "cloud_essd": 20, "cloud_auto": 1}

func (c *Cloud) createDisk(p params) (map[string]any, *apiError) {
	if id, ok := c.tokens[p.get("ClientToken")]; ok && p.get("ClientToken") != "" {
		return map[string]any{"DiskId": id}, nil
	}
	zone := p.get("ZoneId")
	if i := p.get("InstanceId"); i != "" {
		return nil, errf(400, "InvalidParameter", "this fake creates detached disks only")
	}
	if !slices.Contains(c.zones, zone) {
		return nil, errf(404, "InvalidZoneId.NotFound", "The specified zone %q does not exist.", zone)
	}
	cat := or(p.get("DiskCategory"), "cloud")
	lo, ok := minSize[cat]
	if !ok {
		return nil, errf(400, "InvalidDiskCategory.ValueNotSupported", "The specified DiskCategory %q is not supported.", cat)
	}
	size, e := p.integer("Size", 0)
	if e != nil {
		return nil, e
	}
	if size < lo || size > 32768 {
		return nil, errf(400, "InvalidSize.ValueNotSupported", "The size %d GiB is out of range for %s (%d to 32768).", size, cat, lo)
	}
	n := 0
	for _, d := range c.disks {
		if d.Type == "data" && !d.DeleteWithInstance {
			n++
		}
	}
	if n >= c.opts.MaxDisks {
		return nil, errf(403, "QuotaExceed.Disk", "The quota of disks is exceeded.")
	}
	id := "d-" + newID(20)
	d := &Disk{ID: id, Name: p.get("DiskName"), Status: "Creating", next: "Available", Zone: zone, Category: cat, Type: "data",
		Size: size, Encrypted: p.get("Encrypted") == "true", PerformanceLevel: p.get("PerformanceLevel"), Tags: map[string]string{}}
	for _, t := range p.tags() {
		d.Tags[t[0]] = t[1]
	}
	c.disks[id] = d
	if t := p.get("ClientToken"); t != "" {
		c.tokens[t] = id
	}
	return map[string]any{"DiskId": id}, nil
}

func diskJSON(d *Disk) map[string]any {
	return map[string]any{"DiskId": d.ID, "DiskName": d.Name, "Status": d.Status, "RegionId": Region, "ZoneId": d.Zone, "Category": d.Category,
		"Type": d.Type, "Size": d.Size, "InstanceId": d.Instance, "Device": d.Device, "DeleteWithInstance": d.DeleteWithInstance,
		"Portable": d.Type == "data", "Encrypted": d.Encrypted, "PerformanceLevel": d.PerformanceLevel, "Tags": tagList(d.Tags)}
}

func (c *Cloud) describeDisks(p params) (map[string]any, *apiError) {
	ids, e := p.jsonIDs("DiskIds")
	if e != nil {
		return nil, e
	}
	typ := or(p.get("DiskType"), "all")
	var match []*Disk
	for _, d := range c.disks {
		if (ids == nil || slices.Contains(ids, d.ID)) && (p.get("InstanceId") == "" || p.get("InstanceId") == d.Instance) &&
			(typ == "all" || typ == d.Type) && hasTags(d.Tags, p.tags()) {
			match = append(match, d)
		}
	}
	slices.SortFunc(match, func(a, b *Disk) int { return strings.Compare(a.ID, b.ID) })
	from, to, number, size, e := page(p, len(match))
	if e != nil {
		return nil, e
	}
	out := []map[string]any{}
	for _, d := range match[from:to] {
		c.advanceDisk(d)
		out = append(out, diskJSON(d))
	}
	return map[string]any{"TotalCount": len(match), "PageNumber": number, "PageSize": size, "Disks": map[string]any{"Disk": out}}, nil
}

func (c *Cloud) getDisk(p params) (*Disk, *apiError) {
	d := c.disks[p.get("DiskId")]
	if d == nil {
		return nil, errf(404, "InvalidDiskId.NotFound", "The specified disk %q does not exist.", p.get("DiskId"))
	}
	return d, nil
}

func incorrectDisk(d *Disk) *apiError {
	return errf(403, "IncorrectDiskStatus", "The current disk status does not support this operation (disk %s is %s).", d.ID, d.Status)
}

func (c *Cloud) attachDisk(p params) (map[string]any, *apiError) {
	d, e := c.getDisk(p)
	if e != nil {
		return nil, e
	}
	i, e := c.getInstance(p)
	if e != nil {
		return nil, e
	}
	if d.Status != "Available" || d.next != "" {
		return nil, incorrectDisk(d)
	}
	if (i.Status != "Running" && i.Status != "Stopped") || i.next != "" {
		return nil, incorrect(i)
	}
	if d.Zone != i.Zone {
		return nil, errf(403, "InvalidDiskId.ZoneMismatch", "The disk and the instance are in different zones.")
	}
	used := map[string]bool{}
	for _, o := range c.disks {
		if o.Instance == i.ID {
			used[o.Device] = true
		}
	}
	letter := 'b'
	for used["/dev/xvd"+string(letter)] && letter < 'z' {
		letter++
	}
	d.Instance, d.Device, d.Status, d.next, d.polls = i.ID, "/dev/xvd"+string(letter), "Attaching", "In_use", 0
	d.DeleteWithInstance = p.get("DeleteWithInstance") == "true"
	return map[string]any{}, nil
}

func (c *Cloud) detachDisk(p params) (map[string]any, *apiError) {
	d, e := c.getDisk(p)
	if e != nil {
		return nil, e
	}
	if d.Instance != p.get("InstanceId") || d.Status != "In_use" || d.next != "" {
		return nil, incorrectDisk(d)
	}
	if d.Type == "system" {
		return nil, errf(403, "InvalidDiskType.NotSupported", "A system disk cannot be detached.")
	}
	d.Status, d.next, d.polls = "Detaching", "Available", 0
	d.Instance, d.Device = "", ""
	return map[string]any{}, nil
}

func (c *Cloud) deleteDisk(p params) (map[string]any, *apiError) {
	d, e := c.getDisk(p)
	if e != nil {
		return nil, e
	}
	if d.Status != "Available" || d.next != "" {
		return nil, incorrectDisk(d)
	}
	delete(c.disks, d.ID)
	return map[string]any{}, nil
}

func (c *Cloud) resizeDisk(p params) (map[string]any, *apiError) {
	d, e := c.getDisk(p)
	if e != nil {
		return nil, e
	}
	size, e := p.integer("NewSize", 0)
	if e != nil {
		return nil, e
	}
	if size <= d.Size || size > 32768 {
		return nil, errf(400, "InvalidDiskSize.TooSmall", "The new size must be larger than the current %d GiB.", d.Size)
	}
	if p.get("Type") != "online" && d.Status != "Available" {
		return nil, incorrectDisk(d)
	}
	d.nextSize, d.polls = size, 0
	return map[string]any{}, nil
}

// conversions are the category changes ModifyDiskSpec makes in place.
var conversions = map[[2]string]bool{
	{"cloud_efficiency", "cloud_ssd"}: true, {"cloud_efficiency", "cloud_essd"}: true, {"cloud_ssd", "cloud_essd"}: true,
	{"cloud", "cloud_efficiency"}: true, {"cloud", "cloud_ssd"}: true, {"cloud_essd", "cloud_essd"}: true,
}

func (c *Cloud) modifyDiskSpec(p params) (map[string]any, *apiError) {
	d, e := c.getDisk(p)
	if e != nil {
		return nil, e
	}
	to := or(p.get("DiskCategory"), d.Category)
	if to != d.Category && !conversions[[2]string{d.Category, to}] {
		return nil, errf(403, "InvalidDiskCategory.Conversion", "A %s disk cannot be converted to %s.", d.Category, to)
	}
	if d.Status != "Available" && d.Status != "In_use" {
		return nil, incorrectDisk(d)
	}
	if pl := p.get("PerformanceLevel"); pl != "" {
		if to != "cloud_essd" {
			return nil, errf(400, "InvalidPerformanceLevel.Malformed", "Only cloud_essd disks have performance levels.")
		}
		d.PerformanceLevel = pl
	}
	d.Category = to
	return map[string]any{"TaskId": "t-" + newID(12)}, nil
}

// --- snapshots ---

func (c *Cloud) createSnapshot(p params) (map[string]any, *apiError) {
	if id, ok := c.tokens[p.get("ClientToken")]; ok && p.get("ClientToken") != "" {
		return map[string]any{"SnapshotId": id}, nil
	}
	d, e := c.getDisk(p)
	if e != nil {
		return nil, e
	}
	id := "s-" + newID(20)
	s := &Snapshot{ID: id, Name: p.get("SnapshotName"), Disk: d.ID, Status: "progressing", Tags: map[string]string{}}
	for _, t := range p.tags() {
		s.Tags[t[0]] = t[1]
	}
	c.snapshots[id] = s
	if t := p.get("ClientToken"); t != "" {
		c.tokens[t] = id
	}
	return map[string]any{"SnapshotId": id}, nil
}

func (c *Cloud) describeSnapshots(p params) (map[string]any, *apiError) {
	ids, e := p.jsonIDs("SnapshotIds")
	if e != nil {
		return nil, e
	}
	out := []map[string]any{}
	for _, s := range c.snapshots {
		if ids != nil && !slices.Contains(ids, s.ID) {
			continue
		}
		if s.Status == "progressing" {
			if s.polls++; s.polls >= c.opts.Polls {
				s.Status = "accomplished"
			}
		}
		progress := "50%"
		if s.Status == "accomplished" {
			progress = "100%"
		}
		out = append(out, map[string]any{"SnapshotId": s.ID, "SnapshotName": s.Name, "Status": s.Status, "Progress": progress,
			"SourceDiskId": s.Disk, "Tags": tagList(s.Tags)})
	}
	return map[string]any{"TotalCount": len(out), "PageNumber": 1, "PageSize": 10, "Snapshots": map[string]any{"Snapshot": out}}, nil
}

func (c *Cloud) deleteSnapshot(p params) (map[string]any, *apiError) {
	id := p.get("SnapshotId")
	if c.snapshots[id] == nil {
		return nil, errf(404, "InvalidSnapshotId.NotFound", "The specified snapshot %q does not exist.", id)
	}
	for _, img := range c.images {
		if img.Snapshot == id {
			return nil, errf(403, "SnapshotCreatedImage", "The snapshot was used to create an image and cannot be deleted.")
		}
	}
	delete(c.snapshots, id)
	return map[string]any{}, nil
}

// --- images ---

func (c *Cloud) importImage(p params) (map[string]any, *apiError) {
	if id, ok := c.tokens[p.get("ClientToken")]; ok && p.get("ClientToken") != "" {
		return map[string]any{"ImageId": id, "RegionId": Region, "TaskId": "t-" + id}, nil
	}
	pre := "DiskDeviceMapping.1."
	obj := p.get(pre+"OSSBucket") + "/" + p.get(pre+"OSSObject")
	if !c.hasObject(p.get(pre+"OSSBucket"), p.get(pre+"OSSObject")) {
		return nil, errf(404, "InvalidOSSObject.NotFound", "The specified OSS object %q does not exist.", obj)
	}
	switch p.get(pre + "Format") {
	case "RAW", "QCOW2", "VHD":
	default:
		return nil, errf(400, "InvalidImageFormat.NotSupported", "The image format %q is not supported.", p.get(pre+"Format"))
	}
	size, e := p.integer(pre+"DiskImageSize", 40)
	if e != nil {
		return nil, e
	}
	if size < 5 || size > 500 {
		return nil, errf(400, "InvalidDiskImageSize.ValueNotSupported", "DiskImageSize must be 5 to 500 GiB.")
	}
	if p.get("ImageName") == "" {
		return nil, errf(400, "MissingParameter", "ImageName is required.")
	}
	for _, img := range c.images {
		if img.Name == p.get("ImageName") {
			return nil, errf(403, "InvalidImageName.Duplicated", "The image name %q is already used.", img.Name)
		}
	}
	id := "m-" + newID(20)
	snap := "s-" + newID(20)
	c.snapshots[snap] = &Snapshot{ID: snap, Name: "image " + id, Status: "accomplished", Tags: map[string]string{}}
	c.images[id] = &Image{ID: id, Name: p.get("ImageName"), Status: "Creating", Snapshot: snap, Format: p.get(pre + "Format"),
		OSSObject: obj, Size: size, fate: c.imageFate}
	if t := p.get("ClientToken"); t != "" {
		c.tokens[t] = id
	}
	return map[string]any{"ImageId": id, "RegionId": Region, "TaskId": "t-" + id}, nil
}

func (c *Cloud) describeImages(p params) (map[string]any, *apiError) {
	statuses := strings.Split(or(p.get("Status"), "Available"), ",")
	out := []map[string]any{}
	for _, img := range c.images {
		if p.get("ImageId") != "" && p.get("ImageId") != img.ID {
			continue
		}
		if img.Status == "Creating" {
			if img.polls++; img.polls >= c.opts.Polls {
				img.Status = or(img.fate, "Available")
				// ECS reads the object while it imports: one deleted too soon fails it.
				if b, o, ok := strings.Cut(img.OSSObject, "/"); ok && !c.hasObject(b, o) {
					img.Status = "CreateFailed"
				}
			}
		}
		if !slices.Contains(statuses, img.Status) {
			continue
		}
		progress := "50%"
		if img.Status == "Available" {
			progress = "100%"
		}
		var mappings []map[string]any
		if img.Snapshot != "" {
			mappings = append(mappings, map[string]any{"SnapshotId": img.Snapshot, "Size": strconv.Itoa(img.Size), "Device": "/dev/xvda",
				"Type": "system", "Format": img.Format, "ImportOSSObject": img.OSSObject})
		}
		out = append(out, map[string]any{"ImageId": img.ID, "ImageName": img.Name, "Status": img.Status, "Progress": progress,
			"Size": img.Size, "Architecture": "x86_64", "OSType": "linux", "ImageOwnerAlias": "self",
			"DiskDeviceMappings": map[string]any{"DiskDeviceMapping": mappings}})
	}
	return map[string]any{"TotalCount": len(out), "PageNumber": 1, "PageSize": 10, "RegionId": Region, "Images": map[string]any{"Image": out}}, nil
}

func (c *Cloud) deleteImage(p params) (map[string]any, *apiError) {
	id := p.get("ImageId")
	img := c.images[id]
	if img == nil {
		return nil, errf(404, "InvalidImageId.NotFound", "The specified ImageId %q does not exist.", id)
	}
	for _, i := range c.instances {
		if i.Image == id && p.get("Force") != "true" {
			return nil, errf(403, "ImageIsUsedByInstance", "The image is used by instance %s.", i.ID)
		}
	}
	delete(c.images, id)
	return map[string]any{}, nil
}

// --- VPC ---

var vpcActions = map[string]actionFunc{
	"DescribeVSwitches":     (*Cloud).describeVSwitches,
	"DescribeEipAddresses":  (*Cloud).describeEipAddresses,
	"AssociateEipAddress":   (*Cloud).associateEipAddress,
	"UnassociateEipAddress": (*Cloud).unassociateEipAddress,
}

func (c *Cloud) describeVSwitches(p params) (map[string]any, *apiError) {
	out := []map[string]any{}
	for i := range c.vswitches {
		v := &c.vswitches[i]
		if p.get("VSwitchId") != "" && p.get("VSwitchId") != v.id {
			continue
		}
		out = append(out, map[string]any{"VSwitchId": v.id, "VpcId": VPC, "ZoneId": v.zone, "CidrBlock": v.cidr.String(), "Status": "Available",
			"VSwitchName": strings.TrimPrefix(v.id, "vsw-"), "AvailableIpAddressCount": len(c.freeIPs(v))})
	}
	return map[string]any{"TotalCount": len(out), "PageNumber": 1, "PageSize": 10, "VSwitches": map[string]any{"VSwitch": out}}, nil
}

func (c *Cloud) describeEipAddresses(p params) (map[string]any, *apiError) {
	out := []map[string]any{}
	for _, e := range c.eips {
		if (p.get("EipAddress") != "" && p.get("EipAddress") != e.IP) || (p.get("AllocationId") != "" && p.get("AllocationId") != e.AllocationID) {
			continue
		}
		if e.Status == "Associating" {
			if e.polls++; e.polls >= c.opts.Polls {
				e.Status = "InUse"
			}
		}
		typ := ""
		if e.Instance != "" {
			typ = "EcsInstance"
		}
		out = append(out, map[string]any{"AllocationId": e.AllocationID, "IpAddress": e.IP, "Status": e.Status, "InstanceId": e.Instance,
			"InstanceType": typ, "RegionId": Region})
	}
	return map[string]any{"TotalCount": len(out), "PageNumber": 1, "PageSize": 10, "EipAddresses": map[string]any{"EipAddress": out}}, nil
}

func (c *Cloud) eip(id string) (*Eip, *apiError) {
	for _, e := range c.eips {
		if e.AllocationID == id {
			return e, nil
		}
	}
	return nil, errf(404, "InvalidAllocationId.NotFound", "The specified AllocationId %q does not exist.", id)
}

func (c *Cloud) associateEipAddress(p params) (map[string]any, *apiError) {
	e, err := c.eip(p.get("AllocationId"))
	if err != nil {
		return nil, err
	}
	if p.get("InstanceType") != "" && p.get("InstanceType") != "EcsInstance" {
		return nil, errf(400, "InvalidParameter", "InstanceType %q is not supported by this fake.", p.get("InstanceType"))
	}
	i, err := c.getInstance(p)
	if err != nil {
		return nil, err
	}
	if e.Status != "Available" {
		return nil, errf(403, "IncorrectEipStatus", "The EIP is %s.", e.Status)
	}
	if i.Status != "Running" && i.Status != "Stopped" {
		return nil, incorrect(i)
	}
	for _, o := range c.eips {
		if o.Instance == i.ID {
			return nil, errf(403, "InvalidAssociation.Duplicated", "The instance already has an EIP.")
		}
	}
	e.Instance, e.Status, e.polls = i.ID, "Associating", 0
	return map[string]any{}, nil
}

func (c *Cloud) unassociateEipAddress(p params) (map[string]any, *apiError) {
	e, err := c.eip(p.get("AllocationId"))
	if err != nil {
		return nil, err
	}
	if e.Instance == "" || (p.get("InstanceId") != "" && p.get("InstanceId") != e.Instance) {
		return nil, errf(403, "IncorrectEipStatus", "The EIP is not associated with %s.", p.get("InstanceId"))
	}
	e.Instance, e.Status = "", "Available"
	return map[string]any{}, nil
}
