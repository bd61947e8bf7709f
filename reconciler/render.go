package reconciler

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/bosun-gitops/bosun/manifest"
	"github.com/bosun-gitops/bosun/policy"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/release"
)

// Repository layout, as ARCHITECTURE.md gives it.
const (
	RepoConfigFile    = "bosun.yml"
	CloudConfigFile   = "cloud-config.yml"
	CPIConfigFile     = "cpi-config.yml"
	RuntimeConfigsDir = "runtime-configs"
	ReleasesDir       = "releases"
	StemcellsDir      = "stemcells"
	DeploymentsDir    = "deployments"
	PoliciesDir       = "policies"
)

// RenderError is bad input in a revision: every problem found, each naming its file and,
// where known, line. A revision that fails to render changes nothing.
type RenderError struct {
	Problems []string
}

func (e *RenderError) Error() string { return strings.Join(e.Problems, "\n") }

func (e *RenderError) add(err error) {
	if err == nil {
		return
	}
	var me manifest.Errors
	if errors.As(err, &me) {
		for _, p := range me {
			e.Problems = append(e.Problems, p.Error())
		}
		return
	}
	e.Problems = append(e.Problems, err.Error())
}

func (e *RenderError) err() error {
	if len(e.Problems) == 0 {
		return nil
	}
	return e
}

// Rendered is one revision of the repository, rendered: configs, releases, stemcells and
// every deployment with its desired state for the planner.
type Rendered struct {
	Revision       string
	Config         RepoConfig
	CloudConfig    *manifest.CloudConfig
	RuntimeConfig  *manifest.RuntimeConfig
	CPIConfig      *manifest.CPIConfig
	Releases       map[string]*Release // by name
	Stemcells      []Stemcell
	Deployments    map[string]*Deployment
	Snapshot       policy.Snapshot
	Secrets        []string
	runtimeConfigs map[string]*manifest.Node
}

// Names lists the deployments in bosun.yml's order.
func (r *Rendered) Names() []string {
	names := make([]string, 0, len(r.Deployments))
	for n := range r.Deployments {
		names = append(names, n)
	}
	return r.Config.Order(names)
}

// Deployment is one rendered deployment.
type Deployment struct {
	Name string
	// File is deployments/<name>/manifest.yml.
	File string
	// Source is manifest.yml as committed (no ops, no variables): what the director records.
	Source       []byte
	Manifest     *manifest.Deployment
	Interpolated *manifest.Node
	Desired      plan.Desired
	// Digest covers everything rendered for the deployment: equal digests mean nothing
	// to converge.
	Digest string
	// Releases and Stemcells are what the manifest's entries resolved to, by name and alias.
	Releases  map[string]*Release
	Stemcells map[string]Stemcell
	Secrets   []string
}

// Renderer renders revisions. Its zero value renders with in-memory variables.
type Renderer struct {
	Releases *Releases
	Vars     Variables
	retried  bool
}

func sameNode(a, b *manifest.Node) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, err1 := manifest.Marshal(a)
	y, err2 := manifest.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

func readOptional(fsys fs.FS, name string) ([]byte, bool, error) {
	b, err := fs.ReadFile(fsys, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", name, err)
	}
	return b, true, nil
}

// yamlFiles lists dir's *.yml and *.yaml files, sorted.
func yamlFiles(fsys fs.FS, dir string) ([]string, error) {
	ents, err := fs.ReadDir(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yml") || strings.HasSuffix(e.Name(), ".yaml")) {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

func baseName(p string) string {
	b := path.Base(p)
	return strings.TrimSuffix(strings.TrimSuffix(b, ".yml"), ".yaml")
}

// Render renders revision sha whose tree is fsys. Bad input returns a *RenderError.
func (rr *Renderer) Render(ctx context.Context, sha string, fsys fs.FS) (*Rendered, error) {
	if rr.Releases == nil {
		rr.Releases = &Releases{}
	}
	if rr.Vars == nil {
		rr.Vars = &MemoryVariables{}
	}
	out := &Rendered{Revision: sha, Releases: map[string]*Release{}, Deployments: map[string]*Deployment{}, runtimeConfigs: map[string]*manifest.Node{}}
	rerr := &RenderError{}

	if b, ok, err := readOptional(fsys, RepoConfigFile); err != nil {
		rerr.add(err)
	} else if ok {
		c, err := ParseRepoConfig(RepoConfigFile, b)
		rerr.add(err)
		out.Config = c
	}

	// cpi-config, cloud-config, runtime-configs.
	if b, ok, err := readOptional(fsys, CPIConfigFile); err != nil {
		rerr.add(err)
	} else if ok {
		doc, err := manifest.Parse(CPIConfigFile, b)
		if err == nil {
			out.CPIConfig, err = manifest.LoadCPIConfig(doc)
		}
		rerr.add(err)
	}
	cloudDoc := &manifest.Node{Kind: manifest.MapNode}
	if b, ok, err := readOptional(fsys, CloudConfigFile); err != nil {
		rerr.add(err)
	} else if ok {
		doc, err := manifest.Parse(CloudConfigFile, b)
		if err == nil {
			cloudDoc = doc
			out.CloudConfig, err = manifest.LoadCloudConfig(doc)
			if err == nil {
				err = manifest.ValidateCloudConfig(out.CloudConfig, out.CPIConfig).Err()
			}
		}
		rerr.add(err)
	}
	rcFiles, err := yamlFiles(fsys, RuntimeConfigsDir)
	rerr.add(err)
	var rcs []*manifest.RuntimeConfig
	for _, f := range rcFiles {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			rerr.add(err)
			continue
		}
		doc, err := manifest.RenderFile(manifest.File{Name: f, Data: b}, nil, manifest.RenderOptions{})
		if err != nil {
			rerr.add(err)
			continue
		}
		rc, err := manifest.LoadRuntimeConfig(doc)
		if err != nil {
			rerr.add(err)
			continue
		}
		out.runtimeConfigs[baseName(f)] = doc
		rcs = append(rcs, rc)
	}
	if len(rcs) > 0 {
		out.RuntimeConfig, err = manifest.MergeRuntimeConfigs(rcs...)
		rerr.add(err)
	}

	// Releases and stemcells.
	snapReleases := map[string]any{}
	ents, err := fs.ReadDir(fsys, ReleasesDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		rerr.add(fmt.Errorf("%s: %w", ReleasesDir, err))
	}
	for _, e := range ents {
		p := path.Join(ReleasesDir, e.Name())
		switch {
		case e.IsDir():
			r, err := rr.Releases.Build(ctx, fsys, p)
			if err != nil {
				rerr.add(err)
				continue
			}
			rel := &Release{Name: r.Manifest.Name, Version: r.Manifest.Version, File: p + "/", Release: r}
			if prev, dup := out.Releases[rel.Name]; dup {
				rerr.add(fmt.Errorf("%s: release %q is also given by %s", p, rel.Name, prev.File))
				continue
			}
			out.Releases[rel.Name] = rel
			snapReleases[rel.Name] = map[string]any{"name": rel.Name, "version": rel.Version, "source": p + "/"}
		case strings.HasSuffix(e.Name(), ".yml") || strings.HasSuffix(e.Name(), ".yaml"):
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				rerr.add(err)
				continue
			}
			var ref releaseRef
			if err := decodeStrict(p, b, &ref); err != nil {
				rerr.add(err)
				continue
			}
			if ref.Name == "" {
				ref.Name = baseName(p)
			}
			if ref.URL == "" {
				rerr.add(fmt.Errorf("%s: release %q has no url", p, ref.Name))
				continue
			}
			r, err := rr.Releases.Fetch(ctx, ref.URL, ref.SHA1)
			if err != nil {
				rerr.add(fmt.Errorf("%s: release %q: %w", p, ref.Name, err))
				continue
			}
			if r.Manifest.Name != ref.Name || ref.Version != "" && r.Manifest.Version != ref.Version {
				rerr.add(fmt.Errorf("%s: the tarball holds release %s/%s, not %s/%s", p, r.Manifest.Name, r.Manifest.Version, ref.Name, ref.Version))
				continue
			}
			rel := &Release{Name: ref.Name, Version: r.Manifest.Version, File: p, URL: ref.URL, SHA1: ref.SHA1, Release: r}
			if prev, dup := out.Releases[rel.Name]; dup {
				rerr.add(fmt.Errorf("%s: release %q is also given by %s", p, rel.Name, prev.File))
				continue
			}
			out.Releases[rel.Name] = rel
			snapReleases[rel.Name] = map[string]any{"name": rel.Name, "version": rel.Version, "sha1": ref.SHA1}
		}
	}
	scFiles, err := yamlFiles(fsys, StemcellsDir)
	rerr.add(err)
	snapStemcells := map[string]any{}
	for _, f := range scFiles {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			rerr.add(err)
			continue
		}
		var sc Stemcell
		if err := decodeStrict(f, b, &sc); err != nil {
			rerr.add(err)
			continue
		}
		sc.File = f
		if sc.OS == "" || sc.Version == "" {
			rerr.add(fmt.Errorf("%s: a stemcell reference needs operating_system and version", f))
			continue
		}
		if sc.URL != "" {
			p, err := rr.Releases.Image(ctx, sc.URL, sc.SHA1)
			if err != nil {
				rerr.add(fmt.Errorf("%s: stemcell: %w", f, err))
				continue
			}
			sc.ImagePath = p
		}
		out.Stemcells = append(out.Stemcells, sc)
		snapStemcells[baseName(f)] = map[string]any{"name": sc.Name, "operating_system": sc.OS, "version": sc.Version}
	}

	// Deployments.
	dirs, err := fs.ReadDir(fsys, DeploymentsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		rerr.add(fmt.Errorf("%s: %w", DeploymentsDir, err))
	}
	if len(dirs) > 0 && out.CloudConfig == nil && !slices.ContainsFunc(rerr.Problems, func(s string) bool { return strings.HasPrefix(s, CloudConfigFile) }) {
		rerr.add(fmt.Errorf("%s: missing: deployments need a cloud-config", CloudConfigFile))
	}
	if err := rerr.err(); err != nil {
		// Deployments cannot be judged against configs that did not render.
		return nil, err
	}
	for _, e := range dirs {
		if !e.IsDir() {
			continue
		}
		d, err := rr.renderDeployment(ctx, fsys, out, e.Name())
		if err != nil {
			rerr.add(err)
			continue
		}
		out.Deployments[d.Name] = d
		out.Secrets = append(out.Secrets, d.Secrets...)
	}
	if err := rerr.err(); err != nil {
		return nil, err
	}
	out.Snapshot = policy.Snapshot{
		Deployments:    map[string]any{},
		CloudConfig:    mapOf(cloudDoc.Plain()),
		RuntimeConfigs: map[string]any{},
		Releases:       snapReleases,
		Stemcells:      snapStemcells,
	}
	for n, d := range out.Deployments {
		out.Snapshot.Deployments[n] = d.Interpolated.Plain()
	}
	for n, doc := range out.runtimeConfigs {
		out.Snapshot.RuntimeConfigs[n] = doc.Plain()
	}
	sort.Strings(out.Secrets)
	out.Secrets = slices.Compact(out.Secrets)
	return out, nil
}

func mapOf(v any) map[string]any {
	if m, ok := v.(map[string]any); ok {
		return m
	}
	return map[string]any{}
}

// renderDeployment renders deployments/<dir>: manifest, ops files in name order, vars.yml
// as static variables, declared variables from (and generated into) the vault.
func (rr *Renderer) renderDeployment(ctx context.Context, fsys fs.FS, rv *Rendered, dir string) (*Deployment, error) {
	base := path.Join(DeploymentsDir, dir)
	file := path.Join(base, "manifest.yml")
	data, ok, err := readOptional(fsys, file)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s: missing: every directory under deployments/ holds a manifest.yml", file)
	}
	opsFiles, err := yamlFiles(fsys, path.Join(base, "ops"))
	if err != nil {
		return nil, err
	}
	var ops []manifest.File
	for _, f := range opsFiles {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		ops = append(ops, manifest.File{Name: f, Data: b})
	}
	static := manifest.StaticVars{}
	var secrets []string
	varsFile := path.Join(base, "vars.yml")
	if b, ok, err := readOptional(fsys, varsFile); err != nil {
		return nil, err
	} else if ok {
		doc, err := manifest.Parse(varsFile, b)
		if err != nil {
			return nil, err
		}
		if doc.Kind != manifest.MapNode && !(doc.Kind == manifest.ScalarNode && doc.Value == nil) {
			return nil, fmt.Errorf("%s: want a map of variable names to values", varsFile)
		}
		for _, p := range doc.Pairs {
			k := fmt.Sprint(p.Key.Value)
			static[k] = p.Value
			if policy.SecretKey(k) {
				secrets = appendStrings(secrets, p.Value)
			}
		}
	}
	stored, err := rr.Vars.Load(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", base, err)
	}
	known := map[string]bool{}
	for _, p := range stored.Pairs {
		known[fmt.Sprint(p.Key.Value)] = true
	}
	store := manifest.NewStore(stored)
	doc, err := manifest.RenderFile(manifest.File{Name: file, Data: data}, ops, manifest.RenderOptions{
		Static: static, Store: store, InterpolateOptions: manifest.InterpolateOptions{ExpectAllKeys: true},
	})
	if err != nil {
		if !strings.Contains(err.Error(), base+"/") {
			err = fmt.Errorf("%s: %w (declare them under variables:, or set them in %s)", file, err, varsFile)
		}
		return nil, err
	}
	generated := map[string]*manifest.Node{}
	for _, p := range store.Values().Pairs {
		k := fmt.Sprint(p.Key.Value)
		secrets = appendStrings(secrets, p.Value)
		if !known[k] {
			generated[k] = p.Value
		}
	}
	if err := rr.Vars.Save(ctx, dir, generated); err != nil {
		return nil, fmt.Errorf("%s: %w", base, err)
	}
	if len(generated) > 0 && !rr.retried {
		// Another director may have stored the same variable first, and its value won:
		// render again with what is stored rather than run with a value nobody kept.
		again, err := rr.Vars.Load(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", base, err)
		}
		for name, v := range generated {
			if !sameNode(again.Get(name), v) {
				retry := *rr
				retry.retried = true
				return retry.renderDeployment(ctx, fsys, rv, dir)
			}
		}
	}
	dep, err := manifest.LoadDeployment(doc)
	if err != nil {
		return nil, err
	}
	if dep.Name != dir {
		return nil, fmt.Errorf("%s: name is %q but the directory is %q; they must match", file, dep.Name, dir)
	}
	if err := manifest.Validate(dep, rv.CloudConfig, rv.RuntimeConfig); err != nil {
		return nil, err
	}
	d := &Deployment{Name: dir, File: file, Source: data, Manifest: dep, Interpolated: doc, Secrets: secrets,
		Releases: map[string]*Release{}, Stemcells: map[string]Stemcell{}}
	if err := resolve(d, rv); err != nil {
		return nil, err
	}
	if err := desired(d, rv); err != nil {
		return nil, err
	}
	return d, nil
}

// appendStrings collects every string leaf of a variable's value: what must never be shown.
func appendStrings(out []string, n *manifest.Node) []string {
	if n == nil {
		return out
	}
	switch n.Kind {
	case manifest.ScalarNode:
		if s, ok := n.Value.(string); ok && s != "" {
			out = append(out, s)
		}
	case manifest.MapNode:
		for _, p := range n.Pairs {
			out = appendStrings(out, p.Value)
		}
	default:
		for _, it := range n.Items {
			out = appendStrings(out, it)
		}
	}
	return out
}

// resolve finds the releases and stemcells the manifest names among the repository's.
func resolve(d *Deployment, rv *Rendered) error {
	errs := &RenderError{}
	rels := slices.Clone(d.Manifest.Releases)
	if rv.RuntimeConfig != nil {
		for _, r := range rv.RuntimeConfig.Releases {
			if !slices.ContainsFunc(rels, func(x manifest.Release) bool { return x.Name == r.Name }) {
				rels = append(rels, r)
			}
		}
	}
	for _, mr := range rels {
		r, ok := rv.Releases[mr.Name]
		if !ok {
			errs.add(fmt.Errorf("%s: release %q: the repository has no releases/%s.yml nor releases/%s/", mr.Pos, mr.Name, mr.Name, mr.Name))
			continue
		}
		if mr.Version != "" && mr.Version != "latest" && mr.Version != r.Version {
			errs.add(fmt.Errorf("%s: release %s version %q: %s gives version %q", mr.Pos, mr.Name, mr.Version, r.File, r.Version))
			continue
		}
		d.Releases[mr.Name] = r
	}
	for _, ms := range d.Manifest.Stemcells {
		var best *Stemcell
		for i := range rv.Stemcells {
			sc := &rv.Stemcells[i]
			if ms.OS != "" && sc.OS != ms.OS || ms.Name != "" && sc.Name != ms.Name {
				continue
			}
			if ms.Version != "" && ms.Version != "latest" && ms.Version != sc.Version {
				continue
			}
			if best == nil || policy.CompareVersions(sc.Version, best.Version) > 0 {
				best = sc
			}
		}
		if best == nil {
			errs.add(fmt.Errorf("%s: stemcell %s %s/%s: no matching reference under stemcells/", ms.Pos, ms.Alias, firstNonEmpty(ms.OS, ms.Name), ms.Version))
			continue
		}
		d.Stemcells[ms.Alias] = *best
	}
	// Every job must exist in its release: caught here, with the line, rather than at converge.
	for _, ig := range d.Manifest.InstanceGroups {
		for _, j := range jobsOf(d.Manifest, ig, rv) {
			r, ok := d.Releases[j.Release]
			if !ok {
				if _, known := rv.Releases[j.Release]; !known {
					errs.add(fmt.Errorf("%s: job %s: release %q is not in the manifest's releases", j.Pos, j.Name, j.Release))
				}
				continue
			}
			if r.Release.Job(j.Name) == nil {
				errs.add(fmt.Errorf("%s: job %q is not in release %s/%s", j.Pos, j.Name, r.Name, r.Version))
			}
		}
	}
	return errs.err()
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// jobsOf is an instance group's jobs plus the addons (deployment's, then runtime-config's)
// that apply to it.
func jobsOf(dep *manifest.Deployment, ig manifest.InstanceGroup, rv *Rendered) []manifest.Job {
	jobs := slices.Clone(ig.Jobs)
	add := func(addons []manifest.Addon) {
		for _, a := range addons {
			if a.Applies(dep.Name, ig, stemcellOS(dep, ig), nil) {
				for _, j := range a.Jobs {
					if !slices.ContainsFunc(jobs, func(x manifest.Job) bool { return x.Name == j.Name }) {
						if j.Properties == nil {
							j.Properties = a.Properties
						}
						jobs = append(jobs, j)
					}
				}
			}
		}
	}
	add(dep.Addons)
	if rv.RuntimeConfig != nil {
		add(rv.RuntimeConfig.Addons)
	}
	return jobs
}

func stemcellOS(dep *manifest.Deployment, ig manifest.InstanceGroup) string {
	for _, s := range dep.Stemcells {
		if s.Alias == ig.Stemcell {
			return s.OS
		}
	}
	return ""
}

// jobProperties are the properties a job sees: its own, else its instance group's, else
// the deployment's global ones, as BOSH does.
func jobProperties(dep *manifest.Deployment, ig manifest.InstanceGroup, j manifest.Job) map[string]any {
	switch {
	case j.Properties != nil:
		return j.Properties
	case ig.Properties != nil:
		return ig.Properties
	}
	return dep.Properties
}

// releaseJob returns the release job for j.
func releaseJob(d *Deployment, j manifest.Job) (*Release, *release.Job) {
	r := d.Releases[j.Release]
	if r == nil {
		return nil, nil
	}
	return r, r.Release.Job(j.Name)
}
