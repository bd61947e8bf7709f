package external_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/alicloud/fakealicloud"
	"github.com/bosun-gitops/bosun/cpi/cpitest"
	"github.com/bosun-gitops/bosun/cpi/external"
)

// TestConformanceOverServeAlicloud: the Alibaba Cloud CPI, run as a BOSH CPI
// executable (`bosun cpi serve alicloud`, one process per call) against the fake
// region, passes the same suite as in process.
func TestConformanceOverServeAlicloud(t *testing.T) {
	cpitest.RunConformance(t, func(t *testing.T) cpitest.Setup {
		cloud := fakealicloud.New(t, fakealicloud.Options{Polls: 1})
		var cfg map[string]any
		json.Unmarshal(cloud.ConfigJSON(), &cfg)
		cfg["availability_zone"] = fakealicloud.ZoneA
		b, _ := json.Marshal(cfg)
		path := filepath.Join(t.TempDir(), "cpi.json")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := external.New(external.Config{Name: "alicloud-over-json", Path: filepath.Join(binDir, "bosun"),
			Args: []string{"cpi", "serve", "alicloud", "--config", path}, DirectorUUID: "director-test", Timeout: time.Minute}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return cpitest.Setup{CPI: c, StemcellProps: json.RawMessage(`{"name":"s","version":"1","oss_bucket":"` + fakealicloud.OSSBucket + `","oss_object":"` + fakealicloud.OSSObject + `"}`),
			VMProps: json.RawMessage(`{"instance_type":"ecs.g6.large"}`),
			Networks: cpi.Networks{"default": {Type: "manual", IP: "10.0.0.40", Netmask: "255.255.255.0",
				CloudProperties: json.RawMessage(`{"vswitch_id":"` + fakealicloud.VSwitchA + `","security_group_ids":["` + fakealicloud.SecurityGroup + `"]}`)}},
			Settings: cpi.AgentSettings{Mbus: "nats://agent:secret@10.0.0.2:4222", Blobstore: cpi.Blobstore{Provider: "local"}}, Timeout: 2 * time.Minute}
	})
}
