package policy

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Changes is what moved between two snapshots: `input.changes`. It names things and
// counts them but carries no property values, so it never holds a secret.
type Changes struct {
	Deployments           map[string]DeploymentChange // only deployments whose manifest differs
	Created, Deleted      []string                    // deployment names, sorted
	CloudConfigChanged    bool
	RuntimeConfigsChanged []string // names added, removed or changed, sorted
}

// DeploymentChange is one deployment's part of Changes.
type DeploymentChange struct {
	Created, Deleted bool
	// Instance groups by name: added, removed, and those whose `instances` changed.
	Added, Removed []string
	Scaled         []Scale
	// Jobs added to or removed from an instance group, including the jobs of instance
	// groups added or removed as a whole.
	JobsAdded, JobsRemoved []JobRef
	// Property paths that differ, for jobs present on both sides; InstanceGroup and Job
	// are empty for the deprecated global properties, Job for instance-group properties.
	PropertiesChanged []PropertyChange
	Stemcells         []VersionMove // by alias, present on both sides with another version
	Releases          []VersionMove // by name
	UpdateChanged     []UpdateChange
}

// Scale is an instance group whose instance count changed.
type Scale struct {
	InstanceGroup string
	From, To      int
}

// JobRef names a job in an instance group.
type JobRef struct{ InstanceGroup, Job, Release string }

// PropertyChange is one property path (dot-separated) that was added, removed or changed.
type PropertyChange struct{ InstanceGroup, Job, Path string }

// VersionMove is a stemcell or release version change. Direction is "up" or "down" by a
// semver-like comparison (numeric parts numerically, a pre-release below its release),
// or "unknown" when either side is "latest" or empty.
type VersionMove struct{ Name, OS, From, To, Direction string }

// UpdateChange is one key of an update block that changed; InstanceGroup is empty for the
// deployment's global block. From or To is nil when the key was absent.
type UpdateChange struct {
	InstanceGroup, Key string
	From, To           any
}

// Diff computes the changes from previous to proposed.
func Diff(previous, proposed Snapshot) Changes { return diff(previous, proposed, allParts) }

// parts are the costly parts of Changes, computed only when a policy reads them.
type parts struct {
	deployments bool // Deployments at all (else only Created and Deleted)
	properties  bool // DeploymentChange.PropertiesChanged
	updates     bool // DeploymentChange.UpdateChanged
	jobs        bool // DeploymentChange.JobsAdded and JobsRemoved
}

var allParts = parts{true, true, true, true}

// partsFor is what a need of input.changes asks of diff.
func partsFor(n *need) parts {
	dn := n.at("deployments")
	if dn == nil {
		return parts{}
	}
	reads := func(key string) bool {
		if dn.all || dn.any != nil && dn.any.at(key) != nil {
			return true
		}
		for _, c := range dn.kids {
			if c.at(key) != nil {
				return true
			}
		}
		return false
	}
	return parts{
		deployments: true,
		properties:  reads("properties_changed"),
		updates:     reads("update_changed"),
		jobs:        reads("jobs_added") || reads("jobs_removed"),
	}
}

// diff computes the parts p of the changes; the others stay empty.
func diff(previous, proposed Snapshot, p parts) Changes {
	c := Changes{
		Deployments:        map[string]DeploymentChange{},
		CloudConfigChanged: !reflect.DeepEqual(emptyNil(previous.CloudConfig), emptyNil(proposed.CloudConfig)),
	}
	for _, name := range unionKeys(previous.Deployments, proposed.Deployments) {
		was, wok := previous.Deployments[name]
		is, iok := proposed.Deployments[name]
		if !p.deployments {
			if !wok {
				c.Created = append(c.Created, name)
			}
			if !iok {
				c.Deleted = append(c.Deleted, name)
			}
			continue
		}
		if wok && iok && reflect.DeepEqual(was, is) {
			continue
		}
		d := diffDeployment(mapOf(was), mapOf(is), p)
		d.Created, d.Deleted = !wok, !iok
		if d.Created {
			c.Created = append(c.Created, name)
		}
		if d.Deleted {
			c.Deleted = append(c.Deleted, name)
		}
		c.Deployments[name] = d
	}
	for _, name := range unionKeys(previous.RuntimeConfigs, proposed.RuntimeConfigs) {
		if !reflect.DeepEqual(previous.RuntimeConfigs[name], proposed.RuntimeConfigs[name]) {
			c.RuntimeConfigsChanged = append(c.RuntimeConfigsChanged, name)
		}
	}
	return c
}

func diffDeployment(was, is map[string]any, p parts) DeploymentChange {
	var d DeploymentChange
	matchByName(was["instance_groups"], is["instance_groups"], "name", func(ig string, w, i map[string]any) {
		switch {
		case w == nil:
			d.Added = append(d.Added, ig)
		case i == nil:
			d.Removed = append(d.Removed, ig)
		default:
			from, to := intOf(w["instances"]), intOf(i["instances"])
			if from != to {
				d.Scaled = append(d.Scaled, Scale{InstanceGroup: ig, From: from, To: to})
			}
			if p.properties {
				d.PropertiesChanged = appendPaths(d.PropertiesChanged, ig, "", "", w["properties"], i["properties"])
			}
			if p.updates {
				d.UpdateChanged = appendUpdate(d.UpdateChanged, ig, w["update"], i["update"])
			}
		}
		if !p.jobs && !p.properties {
			return
		}
		matchByName(w["jobs"], i["jobs"], "name", func(job string, wj, ij map[string]any) {
			switch {
			case !p.jobs && (wj == nil || ij == nil):
			case wj == nil:
				d.JobsAdded = append(d.JobsAdded, JobRef{ig, job, str(ij["release"])})
			case ij == nil:
				d.JobsRemoved = append(d.JobsRemoved, JobRef{ig, job, str(wj["release"])})
			case p.properties:
				d.PropertiesChanged = appendPaths(d.PropertiesChanged, ig, job, "", wj["properties"], ij["properties"])
			}
		})
	})
	if was != nil && is != nil && p.properties {
		d.PropertiesChanged = appendPaths(d.PropertiesChanged, "", "", "", was["properties"], is["properties"])
	}
	if was != nil && is != nil && p.updates {
		d.UpdateChanged = appendUpdate(d.UpdateChanged, "", was["update"], is["update"])
	}
	d.Stemcells = moves(was["stemcells"], is["stemcells"], "alias")
	d.Releases = moves(was["releases"], is["releases"], "name")
	return d
}

// appendPaths appends the dot paths at which a and b differ; maps are walked, anything
// else (lists included) compares as a whole.
func appendPaths(out []PropertyChange, ig, job, prefix string, a, b any) []PropertyChange {
	am, aIsMap := asMap(a)
	bm, bIsMap := asMap(b)
	if (aIsMap || a == nil) && (bIsMap || b == nil) && (aIsMap || bIsMap) {
		for _, k := range unionKeys(am, bm) {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out = appendPaths(out, ig, job, p, am[k], bm[k])
		}
		return out
	}
	if !reflect.DeepEqual(a, b) {
		out = append(out, PropertyChange{InstanceGroup: ig, Job: job, Path: prefix})
	}
	return out
}

func appendUpdate(out []UpdateChange, ig string, a, b any) []UpdateChange {
	am, bm := mapOf(a), mapOf(b)
	for _, k := range unionKeys(am, bm) {
		if !reflect.DeepEqual(am[k], bm[k]) {
			out = append(out, UpdateChange{InstanceGroup: ig, Key: k, From: am[k], To: bm[k]})
		}
	}
	return out
}

func moves(was, is any, key string) []VersionMove {
	var out []VersionMove
	matchByName(was, is, key, func(name string, old, now map[string]any) {
		if old == nil || now == nil {
			return
		}
		from, to := str(old["version"]), str(now["version"])
		if from == to {
			return
		}
		out = append(out, VersionMove{Name: name, OS: str(now["os"]), From: from, To: to, Direction: direction(from, to)})
	})
	return out
}

func direction(from, to string) string {
	if from == "" || to == "" || from == "latest" || to == "latest" {
		return "unknown"
	}
	switch c := CompareVersions(from, to); {
	case c < 0:
		return "up"
	case c > 0:
		return "down"
	default:
		return "unknown" // equal by value, differently written ("1.0" and "1.00")
	}
}

// CompareVersions compares BOSH release and stemcell versions ("1.2.3", "621.125",
// "0+dev.4", "2.0.0-rc.1"): parts split on '.', '-', '+' and '_' compare numerically when
// both are numbers, as text otherwise; where one runs out, a remaining pre-release part
// (one starting with a letter) makes it the newer one, anything else the older.
func CompareVersions(a, b string) int {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '_' })
	}
	as, bs := split(a), split(b)
	for i := 0; i < len(as) || i < len(bs); i++ {
		switch {
		case i >= len(as):
			return tail(bs[i])
		case i >= len(bs):
			return -tail(as[i])
		}
		if c := comparePart(as[i], bs[i]); c != 0 {
			return c
		}
	}
	return 0
}

// tail orders a version against a longer one that continues with part: "1.0" < "1.0.1",
// but "1.0" > "1.0-rc1".
func tail(part string) int {
	if part[0] >= '0' && part[0] <= '9' {
		return -1
	}
	return 1
}

func comparePart(a, b string) int {
	if isDigits(a) && isDigits(b) {
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			if len(a) < len(b) {
				return -1
			}
			return 1
		}
	}
	return strings.Compare(a, b)
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// named is a list entry with its name.
type named struct {
	name string
	m    map[string]any
}

// byName sorts a list of maps by the string under key; entries without it are skipped
// (manifest validation reports them, not the policy gate), and of two with one name the
// later wins. Sorted slices, not maps: a manifest has thousands of these short lists.
func byName(v any, key string) []named {
	l, _ := v.([]any)
	out := make([]named, 0, len(l))
	for _, e := range l {
		m := mapOf(e)
		if n := str(m[key]); n != "" {
			out = append(out, named{n, m})
		}
	}
	slices.SortStableFunc(out, func(a, b named) int { return strings.Compare(a.name, b.name) })
	w := 0
	for _, e := range out {
		if w > 0 && out[w-1].name == e.name {
			out[w-1] = e
			continue
		}
		out[w] = e
		w++
	}
	return out[:w]
}

// matchByName calls f for every name in the lists was and is, in order, with the entry
// of each side (nil where the name is absent).
func matchByName(was, is any, key string, f func(name string, w, i map[string]any)) {
	a, b := byName(was, key), byName(is, key)
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || len(a) > 0 && a[0].name < b[0].name:
			f(a[0].name, a[0].m, nil)
			a = a[1:]
		case len(a) == 0 || b[0].name < a[0].name:
			f(b[0].name, nil, b[0].m)
			b = b[1:]
		default:
			f(a[0].name, a[0].m, b[0].m)
			a, b = a[1:], b[1:]
		}
	}
}

func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		return stringKeys(m), true
	}
	return nil, false
}

// stringKeys gives a YAML map whose keys are not all strings string keys, as input (and
// JSON) needs. Of keys that read alike (1 and "1") the string one wins, else the first in
// type order: the result must not depend on Go's map order, or two builds of one input
// could differ.
func stringKeys(m map[any]any) map[string]any {
	out := make(map[string]any, len(m))
	from := make(map[string]any, len(m)) // the key each entry came from
	for k, v := range m {
		ks := fmt.Sprint(k)
		if old, ok := from[ks]; ok && !keyBefore(k, old) {
			continue
		}
		out[ks], from[ks] = v, k
	}
	return out
}

func keyBefore(a, b any) bool {
	_, as := a.(string)
	_, bs := b.(string)
	if as != bs {
		return as
	}
	return fmt.Sprintf("%T %#v", a, a) < fmt.Sprintf("%T %#v", b, b)
}

func mapOf(v any) map[string]any {
	m, _ := asMap(v)
	return m
}

func emptyNil(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	return m
}

func str(v any) string {
	switch s := v.(type) {
	case nil:
		return ""
	case string:
		return s
	}
	return fmt.Sprint(v)
}

func intOf(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case uint64:
		return int(n)
	case float64:
		return int(n)
	}
	return 0
}

func unionKeys[A, B any](a map[string]A, b map[string]B) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// term is Changes as `input.changes` shows it, built straight as an OPA value: the parts
// n needs at its top (which deployments changed in what way is one part). Names carry no
// secret; update values, which come from manifests, are redacted.
func (c Changes) term(r *redactor, n *need) *ast.Term {
	kvs := make([][2]*ast.Term, 0, 5)
	add := func(key string, t func() *ast.Term) {
		if n.at(key) != nil {
			kvs = append(kvs, [2]*ast.Term{r.str(key), t()})
		}
	}
	add("deployments", func() *ast.Term {
		dn := n.at("deployments")
		deps := make([][2]*ast.Term, 0, len(c.Deployments))
		for name, d := range c.Deployments {
			if m := dn.at(name); m != nil {
				deps = append(deps, [2]*ast.Term{r.str(name), d.term(r, m)})
			}
		}
		return ast.NewTerm(ast.NewObject(deps...))
	})
	add("created", func() *ast.Term { return r.strs(c.Created) })
	add("deleted", func() *ast.Term { return r.strs(c.Deleted) })
	add("cloud_config_changed", func() *ast.Term { return ast.InternedTerm(c.CloudConfigChanged) })
	add("runtime_configs_changed", func() *ast.Term { return r.strs(c.RuntimeConfigsChanged) })
	return ast.NewTerm(ast.NewObject(kvs...))
}

// term is one deployment's changes: the keys n needs, each whole.
func (d DeploymentChange) term(r *redactor, n *need) *ast.Term {
	item := func(k string, v *ast.Term) [2]*ast.Term { return [2]*ast.Term{r.str(k), v} }
	var kvs [][2]*ast.Term
	add := func(k string, v func() *ast.Term) {
		if n.at(k) != nil {
			kvs = append(kvs, item(k, v()))
		}
	}
	list := func(n int, f func(int) *ast.Term) *ast.Term {
		ts := make([]*ast.Term, n)
		for i := range ts {
			ts[i] = f(i)
		}
		return ast.ArrayTerm(ts...)
	}
	jobs := func(l []JobRef) *ast.Term {
		return list(len(l), func(i int) *ast.Term {
			return ast.ObjectTerm(item("instance_group", r.str(l[i].InstanceGroup)), item("name", r.str(l[i].Job)), item("release", r.str(l[i].Release)))
		})
	}
	moves := func(l []VersionMove, key string) *ast.Term {
		return list(len(l), func(i int) *ast.Term {
			m := l[i]
			return ast.ObjectTerm(item(key, r.str(m.Name)), item("os", r.str(m.OS)), item("from", r.str(m.From)), item("to", r.str(m.To)), item("direction", r.str(m.Direction)))
		})
	}
	add("created", func() *ast.Term { return ast.InternedTerm(d.Created) })
	add("deleted", func() *ast.Term { return ast.InternedTerm(d.Deleted) })
	add("instance_groups", func() *ast.Term {
		return ast.ObjectTerm(
			item("added", r.strs(d.Added)),
			item("removed", r.strs(d.Removed)),
			item("scaled", list(len(d.Scaled), func(i int) *ast.Term {
				s := d.Scaled[i]
				return ast.ObjectTerm(item("name", r.str(s.InstanceGroup)), item("from", ast.InternedTerm(s.From)), item("to", ast.InternedTerm(s.To)))
			})),
		)
	})
	add("jobs_added", func() *ast.Term { return jobs(d.JobsAdded) })
	add("jobs_removed", func() *ast.Term { return jobs(d.JobsRemoved) })
	add("properties_changed", func() *ast.Term {
		return list(len(d.PropertiesChanged), func(i int) *ast.Term {
			p := d.PropertiesChanged[i]
			return ast.ObjectTerm(item("instance_group", r.str(p.InstanceGroup)), item("job", r.str(p.Job)), item("path", r.str(p.Path)))
		})
	})
	add("stemcells", func() *ast.Term { return moves(d.Stemcells, "alias") })
	add("releases", func() *ast.Term { return moves(d.Releases, "name") })
	add("update_changed", func() *ast.Term {
		return list(len(d.UpdateChanged), func(i int) *ast.Term {
			u := d.UpdateChanged[i]
			return ast.ObjectTerm(item("instance_group", r.str(u.InstanceGroup)), item("key", r.str(u.Key)), item("from", r.term(u.From, true)), item("to", r.term(u.To, true)))
		})
	})
	return ast.ObjectTerm(kvs...)
}

// strs is a list of names; names are never redacted.
func (r *redactor) strs(l []string) *ast.Term {
	ts := make([]*ast.Term, len(l))
	for i, s := range l {
		ts[i] = r.str(s)
	}
	return ast.ArrayTerm(ts...)
}
