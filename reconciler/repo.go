package reconciler

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/bosun-gitops/bosun/manifest"
)

// RepoConfig is bosun.yml: what lives where in the manifest repository and how Bosun
// treats each deployment. Every key is optional.
type RepoConfig struct {
	// StatusBranch is where outcomes are committed (default bosun/status).
	StatusBranch string `yaml:"status_branch"`
	// DeploymentOrder lists deployments converged first, in order; the rest follow by name.
	DeploymentOrder []string `yaml:"deployment_order"`
	// ProtectedDeployments are never deleted by removing their directory.
	ProtectedDeployments []string `yaml:"protected_deployments"`
	// Resurrection is the fleet-wide default the health monitor reads.
	Resurrection *Resurrection `yaml:"resurrection"`
	// Deployments holds per-deployment settings by name.
	Deployments map[string]DeploymentConfig `yaml:"deployments"`
}

// DeploymentConfig is one deployment's settings in bosun.yml.
type DeploymentConfig struct {
	// Drift is repair (the default: missing VMs are recreated) or report (only reported).
	Drift string `yaml:"drift"`
	// Protected: removing the directory does not delete the deployment.
	Protected bool `yaml:"protected"`
	// Suspended: new revisions are judged and recorded, but nothing is converged.
	Suspended    bool          `yaml:"suspended"`
	Resurrection *Resurrection `yaml:"resurrection"`
}

// Drift modes.
const (
	DriftRepair = "repair"
	DriftReport = "report"
)

// Resurrection is a resurrection: section, read by the health monitor. Raw keeps every
// key given, so the monitor may read settings this type does not name.
type Resurrection struct {
	Enabled *bool          `yaml:"enabled"`
	Raw     map[string]any `yaml:"-"`
}

// UnmarshalYAML keeps the whole section as Raw besides the typed fields.
func (r *Resurrection) UnmarshalYAML(n *yaml.Node) error {
	var raw map[string]any
	if err := n.Decode(&raw); err != nil {
		return err
	}
	type plain Resurrection
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*r = Resurrection(p)
	r.Raw = raw
	return nil
}

// EffectiveResurrection is the resurrection settings of deployment name: its own section,
// else the fleet-wide one, else enabled (BOSH's default).
func (c RepoConfig) EffectiveResurrection(name string) Resurrection {
	if d, ok := c.Deployments[name]; ok && d.Resurrection != nil {
		return *d.Resurrection
	}
	if c.Resurrection != nil {
		return *c.Resurrection
	}
	on := true
	return Resurrection{Enabled: &on}
}

// Protected reports whether deleting deployment name's directory must not delete it.
func (c RepoConfig) Protected(name string) bool {
	return slices.Contains(c.ProtectedDeployments, name) || c.Deployments[name].Protected
}

// DriftMode is repair or report for deployment name.
func (c RepoConfig) DriftMode(name string) string {
	if c.Deployments[name].Drift == DriftReport {
		return DriftReport
	}
	return DriftRepair
}

// Suspended reports whether deployment name is left alone.
func (c RepoConfig) Suspended(name string) bool { return c.Deployments[name].Suspended }

// Order sorts names as deployment_order says: listed ones first in that order, the others
// by name.
func (c RepoConfig) Order(names []string) []string {
	out := slices.Clone(names)
	rank := func(n string) int {
		if i := slices.Index(c.DeploymentOrder, n); i >= 0 {
			return i
		}
		return len(c.DeploymentOrder)
	}
	slices.SortStableFunc(out, func(a, b string) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
	return out
}

// ParseRepoConfig reads bosun.yml; file names it in errors, which carry the line.
func ParseRepoConfig(file string, data []byte) (RepoConfig, error) {
	var c RepoConfig
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	// manifest.Parse reports syntax errors as file:line:col, as every other file's are.
	if _, err := manifest.Parse(file, data); err != nil {
		return c, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, yamlError(file, err)
	}
	var errs []string
	for name, d := range c.Deployments {
		switch d.Drift {
		case "", DriftRepair, DriftReport:
		default:
			errs = append(errs, fmt.Sprintf("%s: deployments/%s/drift is %q; want repair or report", file, name, d.Drift))
		}
	}
	if strings.ContainsAny(c.StatusBranch, " \t~^:?*[\\") {
		errs = append(errs, fmt.Sprintf("%s: status_branch %q is not a valid branch name", file, c.StatusBranch))
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return c, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return c, nil
}
