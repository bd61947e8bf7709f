package release

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/template"
)

// Engine compiles template sources. Bosun ships a Go text/template engine; a second one
// (ERB) can be added by registering it for a suffix in a Renderer.
type Engine interface {
	// Compile parses src; name is the template's source path, for errors.
	Compile(name string, src []byte) (Template, error)
}

// Template is a compiled template, executed once per instance.
type Template interface {
	Execute(w io.Writer, c *TemplateContext) error
}

// ErrEngineUnsupported is returned for templates no registered engine renders.
var ErrEngineUnsupported = errors.New("template engine not supported")

// TemplateContext is what a template sees, and what its errors name.
type TemplateContext struct {
	Release  string
	Job      string
	Template string // source path under templates/
	// Properties are the job's properties: spec defaults deep-merged with the manifest's.
	Properties map[string]any
	// Spec is BOSH's spec object: name, index, id, az, address, ip, networks, deployment,
	// bootstrap, release.
	Spec  map[string]any
	Links map[string]Link
	// consumes lists the link names the job declares, so that a typo is told apart from
	// an optional link nobody provides.
	consumes  map[string]bool
	specProps map[string]Property
}

// PropertyError is a template reading a property that has no value.
type PropertyError struct {
	Release, Job, Template, Property string
	Undeclared                       bool // the job spec does not declare it at all
}

func (e *PropertyError) Error() string {
	why := "is not set in the manifest and has no default in the job spec"
	if e.Undeclared {
		why = "is not declared in the job spec"
	}
	return fmt.Sprintf("release %q, job %q, template %q: property %q %s", e.Release, e.Job, e.Template, e.Property, why)
}

// Link is a resolved link as templates see it (BOSH's link spec).
type Link struct {
	Name           string         `json:"name"`
	Type           string         `json:"type"`
	Deployment     string         `json:"deployment_name"`
	InstanceGroup  string         `json:"instance_group"`
	DefaultNetwork string         `json:"default_network"`
	Address        string         `json:"address"`
	Properties     map[string]any `json:"properties"`
	Instances      []LinkInstance `json:"instances"`
}

// LinkInstance is one instance of a link's provider.
type LinkInstance struct {
	Name      string `json:"name"`
	ID        string `json:"id"`
	Index     int    `json:"index"`
	AZ        string `json:"az"`
	Address   string `json:"address"`
	Bootstrap bool   `json:"bootstrap"`
}

// P returns a property of the link's provider, or the first default, as BOSH's link(n).p.
func (l Link) P(name string, def ...any) (any, error) {
	if v, ok := lookup(l.Properties, name); ok && v != nil {
		return v, nil
	}
	if len(def) > 0 {
		return def[0], nil
	}
	return nil, fmt.Errorf("link %q: property %q is not provided", l.Name, name)
}

// IfP reports whether the link's provider has all the named properties.
func (l Link) IfP(names ...string) bool {
	for _, n := range names {
		if v, ok := lookup(l.Properties, n); !ok || v == nil {
			return false
		}
	}
	return len(names) > 0
}

// InstanceSpec is one instance as its templates see it through spec.
type InstanceSpec struct {
	Deployment string
	Name       string // instance group
	Index      int
	ID         string
	AZ         string
	Address    string
	IP         string
	Bootstrap  bool
	// Networks is the apply spec's networks: name → {ip, netmask, gateway, default, …}.
	Networks       map[string]any
	DNSDomainName  string
	PersistentDisk int
}

// JobInput is one job of an instance to render.
type JobInput struct {
	Release        string
	ReleaseVersion string
	Job            *Job
	// Properties are the manifest's properties for this job (nested maps).
	Properties map[string]any
	// Links are the job's consumed links, resolved by the caller, by link name.
	Links map[string]Link
}

// RenderedJob is one job's rendered files by destination path under the job directory,
// "monit" included.
type RenderedJob struct {
	Name  string
	Files map[string][]byte
	Hash  string // sha1 over the job's rendered files
}

// RenderedInstance is every job of an instance rendered.
type RenderedInstance struct {
	Jobs []RenderedJob
	// ConfigurationHash changes whenever any rendered file of the instance changes.
	ConfigurationHash string
	TemplateHashes    map[string]string // job name → its Hash
	// Archive is the rendered_templates_archive: a gzipped tar whose top-level
	// directories are job names holding rendered files at their destination paths
	// (web/bin/run, web/config/bpm.yml, web/monit). It is the contract with the agent.
	Archive     []byte
	ArchiveSHA1 string
}

// Renderer renders job templates as the BOSH director does. Compiled templates are kept
// per job, so rendering many instances of one job parses each template once.
type Renderer struct {
	// Engines maps a source suffix (".erb") to the engine for it; Default renders the rest.
	Engines map[string]Engine
	Default Engine

	mu    sync.Mutex
	cache map[*Job]*compiledJob
}

// NewRenderer returns a renderer with the Go text/template engine as default and ERB
// sources refused with a clear error until an ERB engine is registered.
func NewRenderer() *Renderer {
	return &Renderer{Engines: map[string]Engine{".erb": unsupportedEngine{"ERB"}}, Default: GoEngine{}}
}

type compiledJob struct {
	templates map[string]Template // by source path
	monit     Template
	err       error
}

func (r *Renderer) engineFor(src string) Engine {
	suffixes := make([]string, 0, len(r.Engines))
	for s := range r.Engines {
		suffixes = append(suffixes, s)
	}
	sort.Strings(suffixes)
	for _, s := range suffixes {
		if strings.HasSuffix(src, s) {
			return r.Engines[s]
		}
	}
	return r.Default
}

func (r *Renderer) compile(release string, j *Job) (*compiledJob, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.cache[j]; ok {
		return c, c.err
	}
	if r.cache == nil {
		r.cache = map[*Job]*compiledJob{}
	}
	c := &compiledJob{templates: map[string]Template{}}
	r.cache[j] = c
	for src := range j.Spec.Templates {
		data, ok := j.Templates[src]
		if !ok {
			c.err = fmt.Errorf("release %q, job %q: template %q is missing from the job", release, j.Spec.Name, src)
			return c, c.err
		}
		t, err := r.engineFor(src).Compile(src, data)
		if err != nil {
			c.err = fmt.Errorf("release %q, job %q, template %q: %w", release, j.Spec.Name, src, err)
			return c, c.err
		}
		c.templates[src] = t
	}
	if j.Monit != nil {
		t, err := r.Default.Compile("monit", j.Monit)
		if err != nil {
			c.err = fmt.Errorf("release %q, job %q, template %q: %w", release, j.Spec.Name, "monit", err)
			return c, c.err
		}
		c.monit = t
	}
	return c, nil
}

// Render renders every job of one instance. Jobs are rendered in the order given; two
// jobs with the same name, or two templates with one destination, are an error.
func (r *Renderer) Render(inst InstanceSpec, jobs []JobInput) (*RenderedInstance, error) {
	out := &RenderedInstance{TemplateHashes: map[string]string{}}
	var archive []file
	seen := map[string]bool{}
	for _, in := range jobs {
		if in.Job == nil {
			return nil, fmt.Errorf("render instance %s/%s: job of release %q is missing", inst.Name, inst.ID, in.Release)
		}
		name := in.Job.Spec.Name
		if seen[name] {
			return nil, fmt.Errorf("render instance %s/%s: job %q appears twice", inst.Name, inst.ID, name)
		}
		seen[name] = true
		rj, err := r.renderJob(inst, in)
		if err != nil {
			return nil, err
		}
		out.Jobs = append(out.Jobs, *rj)
		out.TemplateHashes[name] = rj.Hash
		dests := make([]string, 0, len(rj.Files))
		for d := range rj.Files {
			dests = append(dests, d)
		}
		sort.Strings(dests)
		for _, d := range dests {
			archive = append(archive, file{Path: name + "/" + d, Data: rj.Files[d], Exec: strings.HasPrefix(d, "bin/")})
		}
	}
	names := make([]string, 0, len(out.TemplateHashes))
	for n := range out.TemplateHashes {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s %s\n", n, out.TemplateHashes[n])
	}
	out.ConfigurationHash = sha1Hex([]byte(b.String()))
	sort.Slice(archive, func(i, j int) bool { return archive[i].Path < archive[j].Path })
	var err error
	if out.Archive, err = tgz(archive); err != nil {
		return nil, fmt.Errorf("render instance %s/%s: archive: %w", inst.Name, inst.ID, err)
	}
	out.ArchiveSHA1 = sha1Hex(out.Archive)
	return out, nil
}

func (r *Renderer) renderJob(inst InstanceSpec, in JobInput) (*RenderedJob, error) {
	j := in.Job
	c, err := r.compile(in.Release, j)
	if err != nil {
		return nil, err
	}
	spec := map[string]any{
		"deployment":      inst.Deployment,
		"name":            inst.Name,
		"index":           inst.Index,
		"id":              inst.ID,
		"az":              inst.AZ,
		"address":         inst.Address,
		"ip":              inst.IP,
		"bootstrap":       inst.Bootstrap,
		"networks":        inst.Networks,
		"dns_domain_name": inst.DNSDomainName,
		"persistent_disk": inst.PersistentDisk,
		"job":             map[string]any{"name": j.Spec.Name},
		"release":         map[string]any{"name": in.Release, "version": in.ReleaseVersion},
	}
	consumes := map[string]bool{}
	for _, l := range j.Spec.Consumes {
		consumes[l.Name] = true
	}
	tc := &TemplateContext{Release: in.Release, Job: j.Spec.Name, Properties: MergeProperties(j.Spec.Properties, in.Properties), Spec: spec, Links: in.Links, consumes: consumes, specProps: j.Spec.Properties}
	rj := &RenderedJob{Name: j.Spec.Name, Files: map[string][]byte{}}
	srcs := make([]string, 0, len(c.templates))
	for s := range c.templates {
		srcs = append(srcs, s)
	}
	sort.Strings(srcs)
	var buf bytes.Buffer
	execute := func(src, dest string, t Template) error {
		if _, dup := rj.Files[dest]; dup {
			return fmt.Errorf("release %q, job %q: two templates render to %q", in.Release, j.Spec.Name, dest)
		}
		buf.Reset()
		tc.Template = src
		if err := t.Execute(&buf, tc); err != nil {
			var pe *PropertyError
			if errors.As(err, &pe) {
				return pe
			}
			return fmt.Errorf("release %q, job %q, template %q: %w", in.Release, j.Spec.Name, src, err)
		}
		rj.Files[dest] = bytes.Clone(buf.Bytes())
		return nil
	}
	for _, src := range srcs {
		if err := execute(src, j.Spec.Templates[src], c.templates[src]); err != nil {
			return nil, err
		}
	}
	if c.monit != nil {
		if err := execute("monit", "monit", c.monit); err != nil {
			return nil, err
		}
	}
	dests := make([]string, 0, len(rj.Files))
	for d := range rj.Files {
		dests = append(dests, d)
	}
	sort.Strings(dests)
	h := sha1Hex(nil)
	var b bytes.Buffer
	for _, d := range dests {
		fmt.Fprintf(&b, "%s\x00%d\x00", d, len(rj.Files[d]))
		b.Write(rj.Files[d])
	}
	if len(dests) > 0 {
		h = sha1Hex(b.Bytes())
	}
	rj.Hash = h
	return rj, nil
}

// MergeProperties returns the properties a job's templates see: for each property the
// spec declares, the manifest's value, else the spec default; where both are maps they
// are deep-merged, the manifest winning. Undeclared manifest properties are dropped, as
// BOSH drops them. A declared property with no default that the manifest does not set is
// left out: it is an error only if a template reads it.
func MergeProperties(spec map[string]Property, given map[string]any) map[string]any {
	out := map[string]any{}
	names := make([]string, 0, len(spec))
	for n := range spec {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		def := spec[n].Default
		v, ok := lookup(given, n)
		switch {
		case ok && v != nil:
			if dm, isMap := asMap(def); isMap {
				if vm, isMap := asMap(v); isMap {
					v = deepMerge(dm, vm)
				}
			}
		case def != nil:
			v = def
		default:
			continue
		}
		set(out, n, v)
	}
	return out
}

func asMap(v any) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	return m, ok
}

func deepMerge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if bm, ok := asMap(out[k]); ok {
			if om, ok := asMap(v); ok {
				out[k] = deepMerge(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// lookup finds a dotted name in nested maps. A literal key holding dots ("a.b") is found
// too, as BOSH allows both spellings in manifests.
func lookup(m map[string]any, dotted string) (any, bool) {
	if v, ok := m[dotted]; ok {
		return v, true
	}
	head, rest, found := strings.Cut(dotted, ".")
	for found {
		if sub, ok := asMap(m[head]); ok {
			if v, ok := lookup(sub, rest); ok {
				return v, true
			}
		}
		var next string
		next, rest, found = strings.Cut(rest, ".")
		head += "." + next
	}
	return nil, false
}

func set(m map[string]any, dotted string, v any) {
	parts := strings.Split(dotted, ".")
	for _, p := range parts[:len(parts)-1] {
		sub, ok := asMap(m[p])
		if !ok {
			sub = map[string]any{}
			m[p] = sub
		}
		m = sub
	}
	m[parts[len(parts)-1]] = v
}

// GoEngine renders Go text/template sources with BOSH's helpers:
//
//	{{ p "a.b" }}                 a property; missing with no default → error
//	{{ p "a.b" "fallback" }}      a property or the given default
//	{{ if if_p "a" "b" }}…{{ end }} whether all the named properties are set
//	{{ with link "db" }}{{ .P "port" }}{{ range .Instances }}{{ .Address }}{{ end }}{{ end }}
//	{{ if if_link "db" }}…{{ end }} whether a consumed link was resolved
//	{{ spec.address }} is written {{ (spec).address }} or {{ .address }}: the dot is spec
//	{{ json (p "a") }}            a value as JSON (which is also valid YAML)
type GoEngine struct{}

// placeholders give the parser the helper names; each execution binds real ones.
var placeholders = template.FuncMap{
	"p":       func(string, ...any) (any, error) { return nil, nil },
	"if_p":    func(...string) bool { return false },
	"link":    func(string) (Link, error) { return Link{}, nil },
	"if_link": func(string) bool { return false },
	"spec":    func() map[string]any { return nil },
	"json":    toJSON,
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// Compile parses src; missingkey=error makes {{ .nosuchkey }} an error rather than
// "<no value>" written into a config file.
func (GoEngine) Compile(name string, src []byte) (Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(placeholders).Parse(string(src))
	if err != nil {
		return nil, err
	}
	return goTemplate{t}, nil
}

type goTemplate struct{ t *template.Template }

func (g goTemplate) Execute(w io.Writer, c *TemplateContext) error {
	t, err := g.t.Clone()
	if err != nil {
		return err
	}
	t.Funcs(template.FuncMap{
		"p": func(name string, def ...any) (any, error) {
			if v, ok := lookup(c.Properties, name); ok {
				return v, nil
			}
			if len(def) > 0 {
				return def[0], nil
			}
			return nil, &PropertyError{Release: c.Release, Job: c.Job, Template: c.Template, Property: name, Undeclared: !c.declares(name)}
		},
		"if_p": func(names ...string) bool {
			for _, n := range names {
				if _, ok := lookup(c.Properties, n); !ok {
					return false
				}
			}
			return len(names) > 0
		},
		"link": func(name string) (Link, error) {
			if l, ok := c.Links[name]; ok {
				return l, nil
			}
			if !c.consumes[name] {
				return Link{}, fmt.Errorf("job %q does not consume a link named %q", c.Job, name)
			}
			return Link{}, fmt.Errorf("link %q of job %q is not resolved (no provider)", name, c.Job)
		},
		"if_link": func(name string) bool { _, ok := c.Links[name]; return ok },
		"spec":    func() map[string]any { return c.Spec },
	})
	return t.Execute(w, c.Spec)
}

// declares reports whether name is one of the job's properties or lies under one.
func (c *TemplateContext) declares(name string) bool {
	for n := name; n != ""; {
		if _, ok := c.specProps[n]; ok {
			return true
		}
		i := strings.LastIndex(n, ".")
		if i < 0 {
			break
		}
		n = n[:i]
	}
	return false
}

type unsupportedEngine struct{ name string }

func (u unsupportedEngine) Compile(name string, _ []byte) (Template, error) {
	return nil, fmt.Errorf("%w: %s templates are not supported yet; write %s as a Go text/template without the .erb suffix", ErrEngineUnsupported, u.name, name)
}

// ProvidedLinkProperties returns the properties a job shares through its provided link
// named link: the values, from the job's merged properties, of the dotted names the spec's
// provides entry lists. A listed property with no value is left out, as BOSH does.
func (j *Job) ProvidedLinkProperties(link string, given map[string]any) (map[string]any, error) {
	for _, l := range j.Spec.Provides {
		if l.Name != link {
			continue
		}
		merged := MergeProperties(j.Spec.Properties, given)
		out := map[string]any{}
		for _, n := range l.Properties {
			if _, ok := j.Spec.Properties[n]; !ok {
				return nil, fmt.Errorf("job %q provides link %q with property %q, which its spec does not declare", j.Spec.Name, link, n)
			}
			if v, ok := lookup(merged, n); ok {
				set(out, n, v)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("job %q provides no link named %q", j.Spec.Name, link)
}
