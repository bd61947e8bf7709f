package policy

import "github.com/open-policy-agent/opa/v1/ast"

// referenceInput is the input as Evaluate built it before pruning: plain Go maps first,
// then one conversion. It stays here as an independent oracle for buildInput.
func referenceInput(in Input) ast.Value {
	r := newRedactor(in.Secrets)
	doc := in.referenceValue(Diff(in.Previous, in.Proposed))
	return ast.NewObject(
		[2]*ast.Term{ast.StringTerm("commit"), ast.NewTerm(r.value(doc["commit"], false))},
		[2]*ast.Term{ast.StringTerm("changes"), ast.NewTerm(r.value(doc["changes"], false))},
		[2]*ast.Term{ast.StringTerm("previous"), ast.NewTerm(r.value(doc["previous"], true))},
		[2]*ast.Term{ast.StringTerm("proposed"), ast.NewTerm(r.value(doc["proposed"], true))},
	)
}

// value builds input as an OPA value in one pass, redacting as it goes, so a large
// fleet's manifests are neither copied nor round-tripped through JSON.
func (in Input) referenceValue(changes Changes) map[string]any {
	trailers := in.Commit.Trailers
	if trailers == nil {
		trailers = ParseTrailers(in.Commit.Message)
	}
	tr := make(map[string]any, len(trailers))
	for k, vs := range trailers {
		l := make([]any, len(vs))
		for i, v := range vs {
			l[i] = v
		}
		tr[k] = l
	}
	status := in.Commit.Signature.Status
	if status == "" {
		status = "unsigned"
	}
	c := in.Commit
	return map[string]any{
		"commit": map[string]any{
			"sha":       c.SHA,
			"author":    person(c.Author),
			"committer": person(c.Committer),
			"message":   c.Message,
			"trailers":  tr,
			"signature": map[string]any{"status": status, "signer": c.Signature.Signer, "type": c.Signature.Type},
		},
		"previous": in.Previous.referencePlain(),
		"proposed": in.Proposed.referencePlain(),
		"changes":  changes.referencePlain(),
	}
}

func (s Snapshot) referencePlain() map[string]any {
	orEmpty := func(m map[string]any) map[string]any {
		if m == nil {
			return map[string]any{}
		}
		return m
	}
	return map[string]any{
		"deployments":     orEmpty(s.Deployments),
		"cloud_config":    orEmpty(s.CloudConfig),
		"runtime_configs": orEmpty(s.RuntimeConfigs),
		"releases":        orEmpty(s.Releases),
		"stemcells":       orEmpty(s.Stemcells),
	}
}

// plain is Changes as `input.changes` shows it.
func (c Changes) referencePlain() map[string]any {
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
