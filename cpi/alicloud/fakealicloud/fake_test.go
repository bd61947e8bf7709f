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
