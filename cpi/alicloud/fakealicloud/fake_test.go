package fakealicloud_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/nlb"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/slb"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/vpc"

	"github.com/bosun-gitops/bosun/cpi/alicloud/fakealicloud"
)

func client(t *testing.T, c *fakealicloud.Cloud, secret string) *ecs.Client {
	t.Helper()
	conf := sdk.NewConfig()
	conf.Scheme = "HTTP"
	cl, err := ecs.NewClientWithOptions(fakealicloud.Region, conf, &credentials.AccessKeyCredential{AccessKeyId: fakealicloud.AccessKeyID, AccessKeySecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	cl.Domain = strings.TrimPrefix(c.URL(), "http://")
	return cl
}

func code(err error) string {
	var se *sdkerrors.ServerError
	if errors.As(err, &se) {
		return se.ErrorCode()
	}
	return ""
}

func TestSignatureFaultsStatesAndLog(t *testing.T) {
	c := fakealicloud.New(t, fakealicloud.Options{Polls: 3})
	if _, err := client(t, c, "wrong").DescribeInstances(ecs.CreateDescribeInstancesRequest()); code(err) != "SignatureDoesNotMatch" {
		t.Errorf("a wrong secret: %v", err)
	}
	cl := client(t, c, fakealicloud.AccessKeySecret)

	// A request without a signature, straight over HTTP.
	resp, err := http.Get(c.URL() + "/?Action=DescribeInstances&Version=2014-05-26&Format=JSON&RegionId=" + fakealicloud.Region)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "MissingParameter") || !strings.Contains(string(body), `"RequestId"`) {
		t.Errorf("unsigned: %d %s", resp.StatusCode, body)
	}

	c.Inject(fakealicloud.Fault{Action: "CreateDisk", Times: 1, Status: 400, Code: "Throttling.User"})
	r := ecs.CreateCreateDiskRequest()
	r.ZoneId, r.DiskCategory, r.Size, r.ClientToken = fakealicloud.ZoneA, "cloud_ssd", requests.NewInteger(20), "tok-1"
	if _, err := cl.CreateDisk(r); code(err) != "Throttling.User" {
		t.Fatalf("fault: %v", err)
	}
	d1, err := cl.CreateDisk(r)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := cl.CreateDisk(r)
	if err != nil || d2.DiskId != d1.DiskId {
		t.Errorf("same ClientToken: %s then %s (%v), want the same disk", d1.DiskId, d2.DiskId, err)
	}
	var states []string
	for range 4 {
		dr := ecs.CreateDescribeDisksRequest()
		dr.DiskIds = `["` + d1.DiskId + `"]`
		out, err := cl.DescribeDisks(dr)
		if err != nil || len(out.Disks.Disk) != 1 {
			t.Fatalf("describe: %v %+v", err, out)
		}
		states = append(states, out.Disks.Disk[0].Status)
	}
	if strings.Join(states, ",") != "Creating,Creating,Available,Available" {
		t.Errorf("states = %v", states)
	}
	del := ecs.CreateDeleteDiskRequest()
	del.DiskId = "d-nope"
	if _, err := cl.DeleteDisk(del); code(err) != "InvalidDiskId.NotFound" {
		t.Errorf("delete of a missing disk: %v", err)
	}
	log := c.Requests()
	if len(log) != 10 || log[0].Code != "SignatureDoesNotMatch" || log[2].Code != "Throttling.User" || log[3].Status != 200 || log[3].RequestID == "" {
		t.Errorf("log = %+v", log)
	}
	for _, l := range log {
		for k, v := range l.Params {
			if k == "Signature" || k == "AccessKeyId" || strings.Contains(v, fakealicloud.AccessKeySecret) {
				t.Errorf("log holds %s: %+v", k, l)
			}
		}
	}
}

func TestAddVSwitch(t *testing.T) {
	c := fakealicloud.New(t, fakealicloud.Options{})
	for _, tc := range []struct{ zone, cidr, want string }{
		{fakealicloud.ZoneA, "127.1.2.0", "fake vswitch in cn-beijing-a"},
		{"cn-nowhere-z", "127.1.2.0/24", "no zone cn-nowhere-z"},
	} {
		if _, err := c.AddVSwitch(tc.zone, tc.cidr); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddVSwitch(%s, %s) = %v, want an error with %q", tc.zone, tc.cidr, err, tc.want)
		}
	}
	id, err := c.AddVSwitch(fakealicloud.ZoneB, "127.1.2.0/24")
	if err != nil {
		t.Fatal(err)
	}
	conf := sdk.NewConfig()
	conf.Scheme = "HTTP"
	vc, err := vpc.NewClientWithOptions(fakealicloud.Region, conf, &credentials.AccessKeyCredential{AccessKeyId: fakealicloud.AccessKeyID, AccessKeySecret: fakealicloud.AccessKeySecret})
	if err != nil {
		t.Fatal(err)
	}
	vc.Domain = strings.TrimPrefix(c.URL(), "http://")
	req := vpc.CreateDescribeVSwitchesRequest()
	req.Scheme = "HTTP"
	req.VSwitchId = id
	resp, err := vc.DescribeVSwitches(req)
	if err != nil {
		t.Fatal(err)
	}
	if v := resp.VSwitches.VSwitch; len(v) != 1 || v[0].CidrBlock != "127.1.2.0/24" || v[0].ZoneId != fakealicloud.ZoneB {
		t.Errorf("DescribeVSwitches %s = %+v", id, v)
	}
}

// TestLoadBalancerBackends: SLB and NLB refuse an unknown load balancer or group
// and a backend added twice, with their codes; NLB answers a repeated ClientToken
// with the first answer; a released instance leaves CLBs but not NLB groups.
func TestLoadBalancerBackends(t *testing.T) {
	c := fakealicloud.New(t, fakealicloud.Options{Polls: 1})
	cl := client(t, c, fakealicloud.AccessKeySecret)
	cr := ecs.CreateCreateInstanceRequest()
	cr.ImageId, cr.InstanceType, cr.ZoneId = c.AddImage("img", "Available"), "ecs.g6.large", fakealicloud.ZoneA
	cr.VSwitchId, cr.SecurityGroupId = fakealicloud.VSwitchA, fakealicloud.SecurityGroup
	inst, err := cl.CreateInstance(cr)
	if err != nil {
		t.Fatal(err)
	}
	id := inst.InstanceId
	domain := strings.TrimPrefix(c.URL(), "http://")
	conf := sdk.NewConfig()
	conf.Scheme = "HTTP"
	cred := &credentials.AccessKeyCredential{AccessKeyId: fakealicloud.AccessKeyID, AccessKeySecret: fakealicloud.AccessKeySecret}
	sc, err := slb.NewClientWithOptions(fakealicloud.Region, conf, cred)
	if err != nil {
		t.Fatal(err)
	}
	sc.Domain = domain
	nc, err := nlb.NewClientWithOptions(fakealicloud.Region, conf, cred)
	if err != nil {
		t.Fatal(err)
	}
	nc.Domain = domain

	add := func(lb string) error {
		r := slb.CreateAddBackendServersRequest()
		r.LoadBalancerId, r.BackendServers = lb, `[{"ServerId":"`+id+`","Weight":"100","Type":"ecs"}]`
		_, err := sc.AddBackendServers(r)
		return err
	}
	if err := add("lb-nope"); code(err) != "InvalidLoadBalancerId.NotFound" {
		t.Errorf("unknown CLB: %v", err)
	}
	if err := add(fakealicloud.SLB); err != nil {
		t.Fatal(err)
	}
	if err := add(fakealicloud.SLB); code(err) != "BackendServer.AlreadyExist" {
		t.Errorf("backend added twice: %v", err)
	}
	vr := slb.CreateAddVServerGroupBackendServersRequest()
	vr.VServerGroupId, vr.BackendServers = fakealicloud.VServerGroup, `[{"ServerId":"`+id+`","Weight":"100","Type":"ecs"}]`
	if _, err := sc.AddVServerGroupBackendServers(vr); code(err) != "MissingParameter" {
		t.Errorf("VServer backend without a port: %v", err)
	}

	nadd := func(group, token string) error {
		r := nlb.CreateAddServersToServerGroupRequest()
		r.ServerGroupId, r.ClientToken = group, token
		r.Servers = &[]nlb.AddServersToServerGroupServers{{ServerId: id, ServerType: "Ecs", Port: "80"}}
		_, err := nc.AddServersToServerGroup(r)
		return err
	}
	if err := nadd("sgp-nope", ""); code(err) != "ResourceNotFound.serverGroup" {
		t.Errorf("unknown NLB group: %v", err)
	}
	if err := nadd(fakealicloud.NLBServerGroup, "t-1"); err != nil {
		t.Fatal(err)
	}
	if err := nadd(fakealicloud.NLBServerGroup, "t-1"); err != nil {
		t.Errorf("same ClientToken again: %v", err)
	}
	if err := nadd(fakealicloud.NLBServerGroup, "t-2"); code(err) != "ResourceAlreadyAssociated.backendServer" {
		t.Errorf("NLB backend added twice: %v", err)
	}
	if got := c.Backends(fakealicloud.NLBServerGroup); len(got) != 1 || got[0].Weight != 100 {
		t.Errorf("NLB backends = %+v", got)
	}
	lr := nlb.CreateListServerGroupServersRequest()
	lr.ServerIds = &[]string{id}
	list, err := nc.ListServerGroupServers(lr)
	if err != nil || len(list.Servers) != 1 || list.Servers[0].ServerGroupId != fakealicloud.NLBServerGroup || list.Servers[0].Port != 80 {
		t.Errorf("ListServerGroupServers = %+v, %v", list, err)
	}

	for range 3 { // Pending → Stopped
		if _, err := cl.DescribeInstances(ecs.CreateDescribeInstancesRequest()); err != nil {
			t.Fatal(err)
		}
	}
	dr := ecs.CreateDeleteInstanceRequest()
	dr.InstanceId, dr.Force = id, requests.NewBoolean(true)
	if _, err := cl.DeleteInstance(dr); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		di := ecs.CreateDescribeInstancesRequest()
		if _, err := cl.DescribeInstances(di); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.Instances()) != 0 || len(c.Backends(fakealicloud.SLB)) != 0 || len(c.Backends(fakealicloud.NLBServerGroup)) != 1 {
		t.Errorf("after release: instances %+v, CLB %+v, NLB %+v", c.Instances(), c.Backends(fakealicloud.SLB), c.Backends(fakealicloud.NLBServerGroup))
	}
}
