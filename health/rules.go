package health

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"

	"gopkg.in/yaml.v3"
)

// Rules are one deployment's resurrection rules: the `resurrection:` section of its entry
// in bosun.yml. The zero value is BOSH's default: resurrect every instance group, but not
// instances with persistent disks.
//
//	deployments:
//	  web:
//	    resurrection:
//	      enabled: true
//	      include: {instance_groups: [web, worker]}
//	      exclude: {instance_groups: [db]}
//	      persistent_disks: false
type Rules struct {
	// Enabled switches resurrection for the deployment; unset means on.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// Include, when it names groups, limits resurrection to them.
	Include GroupSelector `yaml:"include,omitempty" json:"include,omitzero"`
	// Exclude names groups never resurrected; it wins over Include.
	Exclude GroupSelector `yaml:"exclude,omitempty" json:"exclude,omitzero"`
	// PersistentDisks allows resurrecting instances that have a persistent disk (the new
	// VM gets the same disk, with its data). Off by default, as BOSH's
	// scan_and_fix.auto_fix_stateful_nodes.
	PersistentDisks bool `yaml:"persistent_disks,omitempty" json:"persistent_disks,omitempty"`
}

// GroupSelector names instance groups, as BOSH's resurrection config does.
type GroupSelector struct {
	InstanceGroups []string `yaml:"instance_groups,omitempty" json:"instance_groups,omitempty"`
}

// On reports whether resurrection is enabled at all.
func (r Rules) On() bool { return r.Enabled == nil || *r.Enabled }

// Allows reports whether an instance of group, with or without a persistent disk, may be
// resurrected, and when not, why.
func (r Rules) Allows(group string, hasDisk bool) (bool, string) {
	switch {
	case !r.On():
		return false, "resurrection is off for the deployment"
	case slices.Contains(r.Exclude.InstanceGroups, group):
		return false, "instance group " + group + " is excluded from resurrection"
	case len(r.Include.InstanceGroups) > 0 && !slices.Contains(r.Include.InstanceGroups, group):
		return false, "instance group " + group + " is not included in resurrection"
	case hasDisk && !r.PersistentDisks:
		return false, "it has a persistent disk and the deployment does not allow resurrecting those (resurrection.persistent_disks)"
	}
	return true, ""
}

// ParseRules decodes a `resurrection:` section given as YAML (the section's value, not
// the key). Unknown keys are errors naming their line, so a typo never silently turns
// resurrection back on. name is used in messages (e.g. "bosun.yml: deployments.web.resurrection").
func ParseRules(name string, data []byte) (Rules, error) {
	var r Rules
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		if errors.Is(err, io.EOF) {
			return Rules{}, nil
		}
		return Rules{}, fmt.Errorf("%s: %w", name, err)
	}
	return r, r.Validate(name)
}

// RulesFromMap converts a `resurrection:` section already decoded into a generic map
// (as a bosun.yml reader that does not know these rules keeps it) into Rules, with the
// same checks as ParseRules. A nil map is the default rules.
func RulesFromMap(name string, raw map[string]any) (Rules, error) {
	if raw == nil {
		return Rules{}, nil
	}
	data, err := yaml.Marshal(raw)
	if err != nil {
		return Rules{}, fmt.Errorf("%s: %w", name, err)
	}
	return ParseRules(name, data)
}

// Validate checks rules for contradictions and empty names.
func (r Rules) Validate(name string) error {
	for _, sel := range []struct {
		key    string
		groups []string
	}{{"include", r.Include.InstanceGroups}, {"exclude", r.Exclude.InstanceGroups}} {
		for i, g := range sel.groups {
			if g == "" {
				return fmt.Errorf("%s: %s.instance_groups[%d] is empty", name, sel.key, i)
			}
		}
	}
	for _, g := range r.Include.InstanceGroups {
		if slices.Contains(r.Exclude.InstanceGroups, g) {
			return fmt.Errorf("%s: instance group %q is both included and excluded", name, g)
		}
	}
	return nil
}
