package alicloud_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/alicloud/fakealicloud"
)

// TestLoadBalancerRegistration: create_vm puts the running VM behind each load
// balancer its vm_type names, with the port and weight asked for (100 when none);
// delete_vm takes it out of NLB server groups itself and leaves CLB backends to
// the release, as Alibaba Cloud does.
func TestLoadBalancerRegistration(t *testing.T) {
	lbs := []string{fakealicloud.SLB, fakealicloud.SLB2, fakealicloud.VServerGroup, fakealicloud.NLBServerGroup, fakealicloud.NLBServerGroup2}
	tests := []struct {
		name  string
		props string
		// want is the backends of each load balancer or group, "" standing for the VM.
		want map[string][]fakealicloud.Backend
	}{
		{name: "slbs, default weight", props: `"slbs":["lb-bosun","lb-bosun-2"]`,
			want: map[string][]fakealicloud.Backend{fakealicloud.SLB: {{Type: "ecs", Weight: 100}}, fakealicloud.SLB2: {{Type: "ecs", Weight: 100}}}},
		{name: "slbs, weight as a string", props: `"slbs":["lb-bosun"],"slb_weight":"40"`,
			want: map[string][]fakealicloud.Backend{fakealicloud.SLB: {{Type: "ecs", Weight: 40}}}},
		{name: "slb weight 0 is BOSH's default", props: `"slbs":["lb-bosun"],"slb_weight":0`,
			want: map[string][]fakealicloud.Backend{fakealicloud.SLB: {{Type: "ecs", Weight: 100}}}},
		{name: "vserver group", props: `"slb_server_group":["rsp-bosun"],"slb_server_group_port":8080`,
			want: map[string][]fakealicloud.Backend{fakealicloud.VServerGroup: {{Type: "ecs", Port: 8080, Weight: 100}}}},
		{name: "vserver group with weight", props: `"slb_server_group":["rsp-bosun"],"slb_server_group_port":"443","slb_server_group_weight":7`,
			want: map[string][]fakealicloud.Backend{fakealicloud.VServerGroup: {{Type: "ecs", Port: 443, Weight: 7}}}},
		{name: "nlb server groups", props: `"nlb_server_group_ids":["sgp-bosun","sgp-bosun-2"],"nlb_server_group_port":443,"nlb_server_group_weight":30`,
			want: map[string][]fakealicloud.Backend{fakealicloud.NLBServerGroup: {{Type: "Ecs", Port: 443, Weight: 30}},
				fakealicloud.NLBServerGroup2: {{Type: "Ecs", Port: 443, Weight: 30}}}},
		{name: "all kinds", props: `"slbs":["lb-bosun"],"slb_weight":60,"slb_server_group":["rsp-bosun"],"slb_server_group_port":80,"nlb_server_group_ids":["sgp-bosun"],"nlb_server_group_port":80`,
			want: map[string][]fakealicloud.Backend{fakealicloud.SLB: {{Type: "ecs", Weight: 60}}, fakealicloud.VServerGroup: {{Type: "ecs", Port: 80, Weight: 100}},
				fakealicloud.NLBServerGroup: {{Type: "Ecs", Port: 80, Weight: 100}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, fakealicloud.Options{Polls: 1}, nil)
			vm, _, err := e.cpi.CreateVM(ctx, spec(mustStemcell(t, e), `{"instance_type":"ecs.g6.large",`+tt.props+`}`,
				cpi.Networks{"default": manualNet("10.0.0.40"), "public": {Type: "vip", IP: fakealicloud.EIP}}))
			if err != nil {
				t.Fatal(err)
			}
			for _, lb := range lbs {
				var want []fakealicloud.Backend
				for _, b := range tt.want[lb] {
					b.ServerID = string(vm)
					want = append(want, b)
				}
				if diff := cmp.Diff(want, e.cloud.Backends(lb), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("%s backends (-want +got):\n%s", lb, diff)
				}
			}
			// Registration comes last, with the EIP already bound.
			var order []string
			for _, r := range e.cloud.Requests() {
				switch r.Action {
				case "AssociateEipAddress", "AddBackendServers", "AddVServerGroupBackendServers", "AddServersToServerGroup":
					order = append(order, r.Action)
				}
			}
			if len(order) < 2 || order[0] != "AssociateEipAddress" {
				t.Errorf("calls in order %v, want the EIP first", order)
			}

			if err := e.cpi.DeleteVM(ctx, vm); err != nil {
				t.Fatal(err)
			}
			for _, lb := range lbs {
				if got := e.cloud.Backends(lb); len(got) != 0 {
					t.Errorf("%s keeps %+v after delete_vm", lb, got)
				}
			}
			nlbGroups := len(tt.want[fakealicloud.NLBServerGroup]) + len(tt.want[fakealicloud.NLBServerGroup2])
			if got := e.cloud.Calls("RemoveServersFromServerGroup", 200); got != nlbGroups {
				t.Errorf("RemoveServersFromServerGroup called %d times, want %d", got, nlbGroups)
			}
			if nlbGroups == 0 && e.cloud.Calls("ListServerGroupServers", 0) != 0 {
				t.Errorf("delete_vm asked NLB about a VM that joined no NLB server group")
			}
		})
	}
}

func TestLoadBalancerPropertiesInvalid(t *testing.T) {
	tests := []struct{ props, want string }{
		{`"slbs":"lb-bosun"`, `cloud property "slbs" must be []string`},
		{`"slbs":["lb-bosun",""]`, `slbs: "" is not a load balancer`},
		{`"slbs":["lb-bosun","lb-bosun"]`, `slbs names lb-bosun twice`},
		{`"slbs":["lb-bosun"],"slb_weight":101`, `slb_weight "101" must be a whole number from 0 to 100`},
		{`"slbs":["lb-bosun"],"slb_weight":"heavy"`, `slb_weight "heavy" must be a whole number`},
		{`"slbs":["lb-bosun"],"slb_weight":true`, `cloud property "slb_weight" must be int, got bool`},
		{`"slb_weight":50`, `slb_weight is set but slbs names no load balancer`},
		{`"slb_server_group":["rsp-bosun"]`, `slb_server_group needs slb_server_group_port`},
		{`"slb_server_group":["rsp-bosun"],"slb_server_group_port":0`, `slb_server_group_port "0" must be a whole number from 1 to 65535`},
		{`"slb_server_group":["rsp-bosun"],"slb_server_group_port":80,"slb_server_group_weight":-1`, `slb_server_group_weight "-1"`},
		{`"slb_server_group_port":80`, `slb_server_group_port is set but slb_server_group names no load balancer`},
		{`"nlb_server_group_ids":["sgp-bosun"]`, `nlb_server_group_ids needs nlb_server_group_port`},
		{`"nlb_server_group_ids":["sgp-bosun"],"nlb_server_group_port":70000`, `nlb_server_group_port "70000" must be a whole number from 1 to 65535`},
		{`"nlb_server_group_ids":["sgp-bosun"],"nlb_server_group_port":80,"nlb_server_group_weight":1.5`, `nlb_server_group_weight "1.5"`},
		{`"nlb_server_groups":["sgp-bosun"]`, `unknown cloud property "nlb_server_groups"`},
		{`"nlb_server_group_ids":["sgp-bosun"],"nlb_server_group_port":80,"tags":{` + manyTags(18) + `}`, `18 tags: ECS keeps 20 per instance and the CPI uses 3`},
	}
	e := newEnv(t, fakealicloud.Options{Polls: 1}, nil)
	sc := mustStemcell(t, e)
	for _, tt := range tests {
		_, _, err := e.cpi.CreateVM(context.Background(), spec(sc, `{"instance_type":"ecs.g6.large",`+tt.props+`}`, cpi.Networks{"d": dynamicNet(fakealicloud.VSwitchA)}))
		t.Run(tt.props, func(t *testing.T) { wantCPIError(t, err, cpi.VMCreationFailed, false, tt.want) })
	}
	if n := e.cloud.Calls("CreateInstance", 0); n != 0 {
		t.Errorf("bad load balancer properties still made %d CreateInstance calls", n)
	}
}

func manyTags(n int) string {
	s := ""
	for i := range n {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf(`"k%d":"v"`, i)
	}
	return s
}

// TestLoadBalancerRegistrationFails: a refusal deletes the VM (taking it out of
// the groups it had joined) and names the load balancer; create_vm may be retried.
func TestLoadBalancerRegistrationFails(t *testing.T) {
	tests := []struct {
		name, props string
		setup       func(e env)
		contains    []string
	}{
		{name: "unknown slb", props: `"slbs":["lb-bosun","lb-nope"]`,
			contains: []string{"register with SLB lb-nope", "slb AddBackendServers answered 404 InvalidLoadBalancerId.NotFound (request "}},
		{name: "unknown vserver group", props: `"slb_server_group":["rsp-nope"],"slb_server_group_port":80`,
			contains: []string{"register with SLB server group rsp-nope (port 80)", "InvalidVServerGroupId.NotFound"}},
		{name: "unknown nlb server group after one joined", props: `"nlb_server_group_ids":["sgp-bosun","sgp-nope"],"nlb_server_group_port":80`,
			contains: []string{"register with NLB server group sgp-nope (port 80)", "nlb AddServersToServerGroup answered 404 ResourceNotFound.serverGroup"}},
		{name: "slb throttled until the retries run out", props: `"slbs":["lb-bosun"]`,
			setup: func(e env) {
				e.cloud.Inject(fakealicloud.Fault{Action: "AddBackendServers", Status: 400, Code: "Throttling.User"})
			},
			contains: []string{"register with SLB lb-bosun", "Throttling.User"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fakealicloud.Options{Polls: 1}, nil)
			sc := mustStemcell(t, e)
			if tt.setup != nil {
				tt.setup(e)
			}
			_, _, err := e.cpi.CreateVM(context.Background(), spec(sc, `{"instance_type":"ecs.g6.large",`+tt.props+`}`,
				cpi.Networks{"default": manualNet("10.0.0.41"), "public": {Type: "vip", IP: fakealicloud.EIP}}))
			wantCPIError(t, err, cpi.VMCreationFailed, true, tt.contains...)
			if got := e.cloud.Instances(); len(got) != 0 {
				t.Errorf("instances left: %+v", got)
			}
			for _, lb := range []string{fakealicloud.SLB, fakealicloud.VServerGroup, fakealicloud.NLBServerGroup} {
				if got := e.cloud.Backends(lb); len(got) != 0 {
					t.Errorf("%s keeps %+v", lb, got)
				}
			}
			if eips := e.cloud.EIPs(); eips[0].Instance != "" {
				t.Errorf("EIP still bound: %+v", eips[0])
			}
		})
	}
}

// TestLoadBalancerCallsRetried: throttling and NLB's Conflict.Lock (VMs joining one
// group at once) are retried like any other call's.
func TestLoadBalancerCallsRetried(t *testing.T) {
	e := newEnv(t, fakealicloud.Options{Polls: 1}, nil)
	e.cloud.Inject(fakealicloud.Fault{Action: "AddBackendServers", Times: 2, Status: 400, Code: "Throttling.User"})
	e.cloud.Inject(fakealicloud.Fault{Action: "AddVServerGroupBackendServers", Times: 1, Status: 400, Code: "SystemBusy"})
	e.cloud.Inject(fakealicloud.Fault{Action: "AddServersToServerGroup", Times: 1, Status: 400, Code: "Conflict.Lock"})
	// A lost answer after NLB acted: the resend carries the same ClientToken.
	e.cloud.Inject(fakealicloud.Fault{Action: "AddServersToServerGroup", Times: 1, After: true, Status: 500})
	vm, _, err := e.cpi.CreateVM(context.Background(), spec(mustStemcell(t, e),
		`{"instance_type":"ecs.g6.large","slbs":["lb-bosun"],"slb_server_group":["rsp-bosun"],"slb_server_group_port":80,"nlb_server_group_ids":["sgp-bosun"],"nlb_server_group_port":80}`,
		cpi.Networks{"d": dynamicNet(fakealicloud.VSwitchA)}))
	if err != nil {
		t.Fatal(err)
	}
	for action, want := range map[string]int{"AddBackendServers": 3, "AddVServerGroupBackendServers": 2, "AddServersToServerGroup": 3} {
		if got := e.cloud.Calls(action, 0); got != want {
			t.Errorf("%s tries = %d, want %d", action, got, want)
		}
	}
	for _, lb := range []string{fakealicloud.SLB, fakealicloud.VServerGroup, fakealicloud.NLBServerGroup} {
		if got := e.cloud.Backends(lb); len(got) != 1 || got[0].ServerID != string(vm) {
			t.Errorf("%s backends = %+v, want just %s", lb, got, vm)
		}
	}
	// Throttled while leaving the NLB group: retried, then the instance goes.
	e.cloud.Inject(fakealicloud.Fault{Action: "RemoveServersFromServerGroup", Times: 1, Status: 400, Code: "Throttling.User"})
	if err := e.cpi.DeleteVM(context.Background(), vm); err != nil {
		t.Fatal(err)
	}
	if got := e.cloud.Backends(fakealicloud.NLBServerGroup); len(got) != 0 || len(e.cloud.Instances()) != 0 {
		t.Errorf("after delete_vm: NLB backends %+v, instances %+v", got, e.cloud.Instances())
	}
}
