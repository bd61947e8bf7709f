package converge

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/state"
)

// Observed turns the store's instances and what converge recorded for them
// (Store.AppliedByInstance) into the planner's observed instances: applied fingerprints,
// and addresses by network name from the last apply spec.
func Observed(instances []state.Instance, applied map[string]state.Applied) ([]plan.Instance, error) {
	out := make([]plan.Instance, 0, len(instances))
	for _, i := range instances {
		pi := plan.Instance{ID: i.ID, Group: i.Group, Index: i.Index, AZ: i.AZ, Bootstrap: i.Bootstrap, VMCID: i.VMCID, State: i.State}
		if a, ok := applied[i.ID]; ok {
			if len(a.Fingerprint) > 0 {
				if err := json.Unmarshal(a.Fingerprint, &pi.Applied); err != nil {
					return nil, fmt.Errorf("instance %s/%d (%s): applied fingerprint: %w", i.Group, i.Index, i.ID, err)
				}
			}
			if len(a.Record) > 0 {
				var rec record
				if err := json.Unmarshal(a.Record, &rec); err != nil {
					return nil, fmt.Errorf("instance %s/%d (%s): apply record: %w", i.Group, i.Index, i.ID, err)
				}
				for name, n := range rec.Spec.Networks {
					// Only addresses the instance still holds count; a dynamic
					// address is the cloud's, not the planner's.
					if n.IP != "" && n.Type != "dynamic" && slices.Contains(i.IPs, n.IP) {
						if pi.IPs == nil {
							pi.IPs = map[string]string{}
						}
						pi.IPs[name] = n.IP
					}
				}
			}
		}
		out = append(out, pi)
	}
	return out, nil
}

// AppliedConfigurationHash is the configuration hash of the apply spec converge last gave
// the instance (empty when it has none), for the drift check to compare with the agent's.
func AppliedConfigurationHash(a state.Applied) string {
	if len(a.Record) == 0 {
		return ""
	}
	var rec record
	if json.Unmarshal(a.Record, &rec) != nil {
		return ""
	}
	return rec.Spec.ConfigurationHash
}
