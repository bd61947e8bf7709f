package openstack_test

import (
	"testing"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/openstack/fakeopenstack"
	"github.com/bosun-gitops/bosun/internal/agenttest"
)

// TestServerBootsLocalAgent is the hook a whole deploy against the fake cloud uses:
// each server the CPI creates starts a real bosun-agent from the settings the CPI put
// in its user_data, and the director reaches that agent over NATS.
func TestServerBootsLocalAgent(t *testing.T) {
	agenttest.BootsLocalAgent(t, "openstack", func(boot func(string, []byte), stop func(string)) (cpi.CPI, cpi.VMSpec) {
		e := newEnv(t, fakeopenstack.Options{}, nil)
		e.cloud.OnServerCreate(func(s fakeopenstack.Server, userData []byte) { boot(s.ID, userData) })
		e.cloud.OnServerDelete(func(s fakeopenstack.Server) { stop(s.ID) })
		return e.cpi, spec(mustStemcell(t, e), `{"instance_type":"m1.small"}`, cpi.Networks{"default": manualNet("10.0.0.50")})
	})
}
