package policy

import (
	"fmt"
	"reflect"
	"strings"
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
func Diff(previous, proposed Snapshot) Changes {
	c := Changes{
		Deployments:        map[string]DeploymentChange{},
		CloudConfigChanged: !reflect.DeepEqual(emptyNil(previous.CloudConfig), emptyNil(proposed.CloudConfig)),
	}
	for _, name := range unionKeys(previous.Deployments, proposed.Deployments) {
		was, wok := previous.Deployments[name]
		is, iok := proposed.Deployments[name]
		if wok && iok && reflect.DeepEqual(was, is) {
			continue
		}
		d := diffDeployment(mapOf(was), mapOf(is))
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

func diffDeployment(was, is map[string]any) DeploymentChange {
	var d DeploymentChange
	wigs, iigs := byName(was["instance_groups"], "name"), byName(is["instance_groups"], "name")
	for _, ig := range unionKeys(wigs, iigs) {
		w, wok := wigs[ig]
		i, iok := iigs[ig]
		switch {
		case !wok:
			d.Added = append(d.Added, ig)
		case !iok:
			d.Removed = append(d.Removed, ig)
		default:
			from, to := intOf(w["instances"]), intOf(i["instances"])
			if from != to {
				d.Scaled = append(d.Scaled, Scale{InstanceGroup: ig, From: from, To: to})
			}
			d.PropertiesChanged = appendPaths(d.PropertiesChanged, ig, "", "", w["properties"], i["properties"])
			d.UpdateChanged = appendUpdate(d.UpdateChanged, ig, w["update"], i["update"])
		}
		wjobs, ijobs := byName(w["jobs"], "name"), byName(i["jobs"], "name")
		for _, job := range unionKeys(wjobs, ijobs) {
			wj, wjok := wjobs[job]
			ij, ijok := ijobs[job]
			switch {
			case !wjok:
				d.JobsAdded = append(d.JobsAdded, JobRef{ig, job, str(ij["release"])})
			case !ijok:
				d.JobsRemoved = append(d.JobsRemoved, JobRef{ig, job, str(wj["release"])})
			default:
				d.PropertiesChanged = appendPaths(d.PropertiesChanged, ig, job, "", wj["properties"], ij["properties"])
			}
		}
	}
	if was != nil && is != nil {
		d.PropertiesChanged = appendPaths(d.PropertiesChanged, "", "", "", was["properties"], is["properties"])
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
	w, i := byName(was, key), byName(is, key)
	var out []VersionMove
	for _, name := range sortedKeys(i) {
		old, ok := w[name]
		if !ok {
			continue
		}
		from, to := str(old["version"]), str(i[name]["version"])
		if from == to {
			continue
		}
		out = append(out, VersionMove{Name: name, OS: str(i[name]["os"]), From: from, To: to, Direction: direction(from, to)})
	}
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

// byName indexes a list of maps by the string under key; entries without it are skipped
// (manifest validation reports them, not the policy gate).
func byName(v any, key string) map[string]map[string]any {
	l, _ := v.([]any)
	out := make(map[string]map[string]any, len(l))
	for _, e := range l {
		m := mapOf(e)
		if n := str(m[key]); n != "" {
			out[n] = m
		}
	}
	return out
}

func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, e := range m {
			out[fmt.Sprint(k)] = e
		}
		return out, true
	}
	return nil, false
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
	keys := make(map[string]struct{}, len(a)+len(b))
	for k := range a {
		keys[k] = struct{}{}
	}
	for k := range b {
		keys[k] = struct{}{}
	}
	return sortedKeys(keys)
}

// plain is Changes as `input.changes` shows it.
func (c Changes) plain() map[string]any {
	deps := make(map[string]any, len(c.Deployments))
	for name, d := range c.Deployments {
		scaled := make([]any, len(d.Scaled))
		for i, s := range d.Scaled {
			scaled[i] = map[string]any{"name": s.InstanceGroup, "from": s.From, "to": s.To}
		}
		jobs := func(l []JobRef) []any {
			out := make([]any, len(l))
			for i, j := range l {
				out[i] = map[string]any{"instance_group": j.InstanceGroup, "name": j.Job, "release": j.Release}
			}
			return out
		}
		props := make([]any, len(d.PropertiesChanged))
		for i, p := range d.PropertiesChanged {
			props[i] = map[string]any{"instance_group": p.InstanceGroup, "job": p.Job, "path": p.Path}
		}
		mv := func(l []VersionMove, key string) []any {
			out := make([]any, len(l))
			for i, m := range l {
				out[i] = map[string]any{key: m.Name, "os": m.OS, "from": m.From, "to": m.To, "direction": m.Direction}
			}
			return out
		}
		upd := make([]any, len(d.UpdateChanged))
		for i, u := range d.UpdateChanged {
			upd[i] = map[string]any{"instance_group": u.InstanceGroup, "key": u.Key, "from": u.From, "to": u.To}
		}
		deps[name] = map[string]any{
			"created": d.Created,
			"deleted": d.Deleted,
			"instance_groups": map[string]any{
				"added":   strings2any(d.Added),
				"removed": strings2any(d.Removed),
				"scaled":  scaled,
			},
			"jobs_added":         jobs(d.JobsAdded),
			"jobs_removed":       jobs(d.JobsRemoved),
			"properties_changed": props,
			"stemcells":          mv(d.Stemcells, "alias"),
			"releases":           mv(d.Releases, "name"),
			"update_changed":     upd,
		}
	}
	return map[string]any{
		"deployments":             deps,
		"created":                 strings2any(c.Created),
		"deleted":                 strings2any(c.Deleted),
		"cloud_config_changed":    c.CloudConfigChanged,
		"runtime_configs_changed": strings2any(c.RuntimeConfigsChanged),
	}
}

func strings2any(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}
