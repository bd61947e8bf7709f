package alicloud_test

import (
	"testing"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/alicloud/fakealicloud"
	"github.com/bosun-gitops/bosun/internal/agenttest"
)

// TestInstanceBootsLocalAgent is the hook a whole deploy against the fake cloud uses:
// each instance the CPI starts runs a real bosun-agent from the settings the CPI put
// in its UserData, and the director reaches that agent over NATS; a release stops it.
func TestInstanceBootsLocalAgent(t *testing.T) {
	agenttest.BootsLocalAgent(t, "alicloud", func(boot func(string, []byte), stop func(string)) (cpi.CPI, cpi.VMSpec) {
		e := newEnv(t, fakealicloud.Options{}, nil)
		e.cloud.OnInstanceStart(func(i fakealicloud.Instance, userData []byte) { boot(i.ID, userData) })
		e.cloud.OnInstanceStop(func(i fakealicloud.Instance) { stop(i.ID) })
		return e.cpi, spec(mustStemcell(t, e), `{"instance_type":"ecs.g6.large"}`, cpi.Networks{"default": manualNet("10.0.0.50")})
	})
}
