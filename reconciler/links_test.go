package reconciler

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/reconciler/converge"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/release"
	"github.com/bosun-gitops/bosun/state"
)

// linkFiles is a repository of two deployments over a small release, links: db runs the
// db job, which provides its conn link shared as "pg"; app runs the app job, which
// consumes a db link from deployment db and writes its addresses and port to app.conf.
func linkFiles(t *testing.T) map[string]string {
	files := templateFiles(t)
	delete(files, "deployments/demo/manifest.yml")
	delete(files, "deployments/other/manifest.yml")
	files["bosun.yml"] = "deployment_order: [db, app]\n"
	files["releases/links/config/final.yml"] = "name: links\n"
	files["releases/links/jobs/db/spec"] = `---
name: db
templates:
  db.conf.tmpl: config/db.conf
properties:
  port:
    default: 5432
provides:
- name: conn
  type: db
  properties: [port]
`
	files["releases/links/jobs/db/templates/db.conf.tmpl"] = "port={{ p \"port\" }}\n"
	files["releases/links/jobs/db/monit"] = "# no processes\n"
	files["releases/links/jobs/app/spec"] = `---
name: app
templates:
  app.conf.tmpl: config/app.conf
consumes:
- name: db
  type: db
- name: cache
  type: redis
  optional: true
`
	files["releases/links/jobs/app/templates/app.conf.tmpl"] = `{{ with link "db" }}` +
		`{{ .Name }}@{{ .Deployment }}/{{ .InstanceGroup }} port={{ .P "port" }}{{ range .Instances }} {{ .Index }}:{{ .Address }}{{ if .Bootstrap }}*{{ end }}{{ end }}{{ end }}` +
		`{{ if if_link "cache" }} cache{{ end }}` + "\n"
	files["releases/links/jobs/app/monit"] = "# no processes\n"
	head := `releases:
- name: links
  version: latest
stemcells:
- alias: default
  os: local
  version: latest
update:
  canaries: 1
  max_in_flight: 1
  canary_watch_time: 1000-30000
  update_watch_time: 1000-30000
instance_groups:
`
	files["deployments/db/manifest.yml"] = "name: db\n" + head + `- name: pg
  instances: 2
  azs: [z1]
  vm_type: default
  stemcell: default
  networks:
  - name: default
  jobs:
  - name: db
    release: links
    properties:
      port: 6432
    provides:
      conn: {as: pg, shared: true}
`
	files["deployments/app/manifest.yml"] = "name: app\n" + head + appGroup("{db: {from: pg, deployment: db}}")
	return files
}

// appGroup is app's instance group, its job consuming as given.
func appGroup(consumes string) string {
	return `- name: app
  instances: 1
  azs: [z1]
  vm_type: default
  stemcell: default
  networks:
  - name: default
  jobs:
  - name: app
    release: links
    consumes: ` + consumes + "\n"
}

// appJobPos is where app's manifest writes its job: line, column.
const appJobPos = "deployments/app/manifest.yml:23:5"

// renderedFile reads one rendered file of an instance converge was given.
func (h *harness) renderedFile(ci converge.Instance, path string) string {
	h.t.Helper()
	rc, err := h.r.cfg.Blobs.Get(h.ctx, ci.RenderedTemplates)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rc.Close()
	files, err := untgzForTest(rc)
	if err != nil {
		h.t.Fatal(err)
	}
	return string(files[path])
}

func taskOf(t *testing.T, tasks []state.Task, typ, dep string) state.Task {
	t.Helper()
	for _, task := range tasks {
		if task.Type == typ && task.Deployment == dep {
			return task
		}
	}
	t.Fatalf("no %s task for %s in %v", typ, dep, taskTypes(tasks))
	return state.Task{}
}

func TestCrossDeploymentLinks(t *testing.T) {
	h := newHarness(t)
	files := linkFiles(t)
	h.repo.commit("first", files)
	j := h.reconcile(state.RevisionAccepted)
	if got := taskTypes(j.Tasks); !slices.Equal(got, []string{"deploy db", "deploy app"}) {
		t.Fatalf("tasks = %v", got)
	}
	deployDB, deployApp := j.Tasks[0], j.Tasks[1]

	// The consumer first: db shares nothing yet, so app fails having changed nothing.
	if _, err := h.run(deployApp); err == nil {
		t.Fatal("app deployed before db shared its link")
	}
	want := appJobPos + `: job app consumes link "db": deployment db provides no shared link "pg" of type db; deploy it first with provides: {pg: {shared: true}}`
	h.statusHead("app: failed to deploy", want)
	if len(h.conv.runs) != 0 {
		t.Fatalf("converge ran %d times", len(h.conv.runs))
	}
	if _, err := h.store.Deployment(h.ctx, "app"); err == nil {
		t.Error("app was recorded as deployed")
	}
	if res, _ := h.store.ReservedAddresses(h.ctx, ""); len(res) != 0 {
		t.Errorf("addresses reserved for a deploy that failed: %v", res)
	}

	// The provider converges and shares its link; the consumer then renders it.
	h.mustRun(deployDB)
	links, err := h.store.SharedLinks(h.ctx, "db")
	if err != nil || len(links) != 1 || links[0].Name != "pg" || links[0].Type != "db" {
		t.Fatalf("db's shared links = %+v, %v", links, err)
	}
	h.mustRun(deployApp)
	h.statusHead("app: deployed", "Bosun-Result: succeeded")
	task := h.conv.lastRun(t)
	if len(task.Instances) != 1 {
		t.Fatalf("app's converge task has %d instances", len(task.Instances))
	}
	dbInsts, err := h.store.Instances(h.ctx, "db")
	if err != nil || len(dbInsts) != 2 {
		t.Fatalf("db's instances = %+v, %v", dbInsts, err)
	}
	slices.SortFunc(dbInsts, func(a, b state.Instance) int { return a.Index - b.Index })
	wantConf := "pg@db/pg port=6432"
	for _, in := range dbInsts {
		wantConf += fmt.Sprintf(" %d:%s", in.Index, in.IPs[0])
		if in.Bootstrap {
			wantConf += "*"
		}
	}
	var appInst converge.Instance
	for _, ci := range task.Instances {
		appInst = ci
	}
	if got := strings.TrimSpace(h.renderedFile(appInst, "app/config/app.conf")); got != wantConf {
		t.Errorf("app.conf = %q; want %q", got, wantConf)
	}
	// Rendering is the same for the same stored links: a rebuilt task is identical.
	rd, err := h.r.renderedAt(h.ctx, revisionOf(t, deployApp))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := foreignLinks(h.ctx, h.store, rd, rd.Deployments["app"])
	if err != nil {
		t.Fatal(err)
	}
	again, err := BuildTask(h.ctx, rd, rd.Deployments["app"], task.Plan, h.r.cfg.Blobs, nil, foreign)
	if err != nil {
		t.Fatal(err)
	}
	if again.Instances[appInst.ID].ConfigurationHash != appInst.ConfigurationHash || again.Instances[appInst.ID].RenderedTemplates != appInst.RenderedTemplates {
		t.Error("the same stored links rendered differently")
	}

	// A consumer naming a link its provider does not share, or a deployment sharing
	// nothing: failed, with where the manifest says so, and nothing changes.
	runs := len(h.conv.runs)
	before, _ := h.store.Deployment(h.ctx, "app")
	for _, tt := range []struct{ name, consumes, want string }{
		{"unshared alias", "{db: {from: primary, deployment: db}}", `deployment db provides no shared link "primary" of type db`},
		{"absent deployment", "{db: {from: pg, deployment: nowhere}}", `deployment nowhere provides no shared link "pg" of type db`},
		{"wrong type", "{db: {from: pg, deployment: db}, cache: {from: pg, deployment: db}}", `consumes link "cache" from deployment db: its shared link "pg" is of type db, not redis`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := "name: app\n" + strings.SplitN(files["deployments/app/manifest.yml"], "\n", 2)[1]
			m = strings.Replace(m, "{db: {from: pg, deployment: db}}", tt.consumes, 1)
			sha := h.repo.commit(tt.name, map[string]string{"deployments/app/manifest.yml": m})
			j := h.reconcile(state.RevisionAccepted)
			if _, err := h.run(taskOf(t, j.Tasks, state.TaskDeploy, "app")); err == nil {
				t.Fatal("deployed")
			}
			h.statusHead("app: failed to deploy "+sha[:7], appJobPos+": ", tt.want)
			if len(h.conv.runs) != runs {
				t.Error("converge ran")
			}
			if d, _ := h.store.Deployment(h.ctx, "app"); d.Revision != before.Revision {
				t.Errorf("app recorded at %s; want %s still", d.Revision, before.Revision)
			}
		})
	}

	// The provider changes: its link is recorded anew, but the consumer is not redeployed
	// (as in BOSH, it sees the change at its own next deploy).
	h.repo.commit("app as first", map[string]string{"deployments/app/manifest.yml": files["deployments/app/manifest.yml"]})
	h.mustRun(taskOf(t, h.reconcile(state.RevisionAccepted).Tasks, state.TaskDeploy, "app"))
	h.repo.commit("new port", map[string]string{"deployments/db/manifest.yml": strings.Replace(files["deployments/db/manifest.yml"], "port: 6432", "port: 7432", 1)})
	j = h.reconcile(state.RevisionAccepted)
	if got := taskTypes(j.Tasks); !slices.Equal(got, []string{"deploy db"}) {
		t.Fatalf("tasks after the provider changed = %v; want db's deploy alone", got)
	}
	h.mustRun(j.Tasks[0])
	if links, _ := h.store.SharedLinks(h.ctx, "db"); len(links) != 1 || !strings.Contains(string(links[0].Data), `"port": 7432`) {
		t.Errorf("db's shared links after the change = %+v", links)
	}
	// The consumer's next deploy (here for a change that moves no instance by itself)
	// updates its instance for the link that moved, and renders the new port.
	h.repo.commit("slower app watch", map[string]string{"deployments/app/manifest.yml": strings.Replace(files["deployments/app/manifest.yml"],
		"update_watch_time: 1000-30000", "update_watch_time: 1000-40000", 1)})
	h.mustRun(taskOf(t, h.reconcile(state.RevisionAccepted).Tasks, state.TaskDeploy, "app"))
	task = h.conv.lastRun(t)
	if in := task.Plan.Groups[0].Instances[0]; in.Action != plan.Update || len(in.Reasons) != 1 || in.Reasons[0].Kind != plan.ReasonLinks {
		t.Errorf("app's plan after db's link moved: %s %+v", in.Action, in.Reasons)
	}
	for _, ci := range task.Instances {
		if got := h.renderedFile(ci, "app/config/app.conf"); !strings.Contains(got, "port=7432") {
			t.Errorf("app.conf after db's link moved = %q", got)
		}
	}

	// Deleting the provider deletes the links it shared.
	h.repo.commit("drop db\n\nBosun-Allow-Delete: db", map[string]string{"deployments/db/": ""})
	h.mustRun(taskOf(t, h.reconcile(state.RevisionAccepted).Tasks, state.TaskDeleteDeployment, "db"))
	if links, err := h.store.SharedLinks(h.ctx, "db"); err != nil || len(links) != 0 {
		t.Errorf("db's shared links after its deletion = %+v, %v", links, err)
	}
}

// revisionOf is the revision a deploy task converges to.
func revisionOf(t *testing.T, task state.Task) string {
	t.Helper()
	var p DeployParams
	if err := json.Unmarshal(task.Params, &p); err != nil {
		t.Fatal(err)
	}
	return p.Revision
}

func TestResolveLinksFromOtherDeployments(t *testing.T) {
	data := func(sl sharedLink) json.RawMessage {
		b, err := json.Marshal(sl)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Stored as a provider records them: instances in any order, addresses by network.
	pg := data(sharedLink{InstanceGroup: "pg", DefaultNetwork: "default", Properties: map[string]any{"port": 6432, "tls": map[string]any{"ratio": 0.5}},
		Instances: []sharedInstance{
			{LinkInstance: release.LinkInstance{Name: "pg", ID: "b", Index: 1, AZ: "z2", Address: "10.0.0.6"}, Addresses: map[string]string{"default": "10.0.0.6", "backend": "10.1.0.6"}},
			{LinkInstance: release.LinkInstance{Name: "pg", ID: "a", Index: 0, AZ: "z1", Address: "10.0.0.5", Bootstrap: true}, Addresses: map[string]string{"default": "10.0.0.5", "backend": "10.1.0.5"}},
		}})
	foreign := map[string][]state.SharedLink{
		"db":    {{Deployment: "db", Name: "pg", Type: "db", Data: pg}, {Deployment: "db", Name: "web", Type: "http", Data: data(sharedLink{InstanceGroup: "w"})}},
		"twice": {{Deployment: "twice", Name: "a", Type: "db", Data: pg}, {Deployment: "twice", Name: "b", Type: "db", Data: pg}},
	}
	d := &Deployment{Name: "app"}
	job := func(defs ...release.LinkDef) *release.Job {
		return &release.Job{Spec: release.JobSpec{Name: "app", Consumes: defs}}
	}
	dbDef := release.LinkDef{Name: "db", Type: "db"}
	pgLink := func(network string, a, b string) release.Link {
		return release.Link{Name: "pg", Type: "db", Deployment: "db", InstanceGroup: "pg", DefaultNetwork: network, Address: a,
			Properties: map[string]any{"port": 6432, "tls": map[string]any{"ratio": 0.5}},
			Instances: []release.LinkInstance{
				{Name: "pg", ID: "a", Index: 0, AZ: "z1", Address: a, Bootstrap: true},
				{Name: "pg", ID: "b", Index: 1, AZ: "z2", Address: b},
			}}
	}
	for _, tt := range []struct {
		name     string
		consumes string // YAML-ish, as JSON
		job      *release.Job
		want     map[string]release.Link
		err      string
	}{
		{"by from", `{"db": {"from": "pg", "deployment": "db"}}`, job(dbDef), map[string]release.Link{"db": pgLink("default", "10.0.0.5", "10.0.0.6")}, ""},
		{"the one link of the type", `{"db": {"deployment": "db", "ip_addresses": true}}`, job(dbDef), map[string]release.Link{"db": pgLink("default", "10.0.0.5", "10.0.0.6")}, ""},
		{"on a network", `{"db": {"from": "pg", "deployment": "db", "network": "backend"}}`, job(dbDef), map[string]release.Link{"db": pgLink("backend", "10.1.0.5", "10.1.0.6")}, ""},
		{"not on that network", `{"db": {"from": "pg", "deployment": "db", "network": "nope"}}`, job(dbDef), nil, `instance group pg is not on network "nope" (networks: backend, default)`},
		{"several of the type", `{"db": {"deployment": "twice"}}`, job(dbDef), nil, `deployment twice shares several links of type db (a, b); name one with consumes: {db: {from: NAME, deployment: twice}}`},
		{"wrong type", `{"db": {"from": "web", "deployment": "db"}}`, job(dbDef), nil, `its shared link "web" is of type http, not db`},
		{"none of the type", `{"db": {"deployment": "db"}}`, job(release.LinkDef{Name: "db", Type: "redis"}), nil, `deployment db provides no shared link of type redis; deploy it first with provides: {db: {shared: true}}`},
		{"absent deployment", `{"db": {"from": "pg", "deployment": "gone"}}`, job(dbDef), nil, `job app consumes link "db": deployment gone provides no shared link "pg" of type db`},
		{"optional and absent", `{"db": {"from": "pg", "deployment": "gone"}}`, job(release.LinkDef{Name: "db", Type: "db", Optional: true}), map[string]release.Link{}, ""},
		{"blocked", `{"db": "nil"}`, job(release.LinkDef{Name: "db", Type: "db", Optional: true}), map[string]release.Link{}, ""},
		// Naming its own deployment is implicit linking: app provides nothing here.
		{"own deployment", `{"db": {"from": "pg", "deployment": "app"}}`, job(dbDef), nil, "which no job of deployment app provides"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var consumes map[string]any
			if err := json.Unmarshal([]byte(tt.consumes), &consumes); err != nil {
				t.Fatal(err)
			}
			got, err := resolveLinks(nil, plan.Plan{}, d, consumes, tt.job, foreign)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v; want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("links (-want +got):\n%s", diff)
			}
		})
	}
}

// A deployment's shared links are those marked shared, built from the plan as consumers
// in it would see them; two of one name are refused.
func TestSharedLinksOfAPlan(t *testing.T) {
	p := plan.Plan{Groups: []plan.GroupPlan{{Name: "pg", Instances: []plan.InstancePlan{
		{ID: "b", Group: "pg", Index: 1, Action: plan.Create, IPs: []plan.Address{{Network: "default", IP: "10.0.0.6"}}},
		{ID: "c", Group: "pg", Index: 2, Action: plan.Delete, IPs: []plan.Address{{Network: "default", IP: "10.0.0.7"}}},
		{ID: "a", Group: "pg", Index: 0, Action: plan.Keep, Bootstrap: true, IPs: []plan.Address{{Network: "default", IP: "10.0.0.5"}}},
	}}}}
	d := &Deployment{Name: "db"}
	provs := []linkProvider{
		{group: "pg", job: "db", name: "pg", typ: "db", props: map[string]any{"port": 6432}, shared: true},
		{group: "pg", job: "db", name: "admin", typ: "http", shared: false},
	}
	got, err := sharedLinks(provs, p, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Deployment != "db" || got[0].Name != "pg" || got[0].Type != "db" {
		t.Fatalf("shared = %+v", got)
	}
	want := `{"instance_group":"pg","default_network":"default","properties":{"port":6432},"instances":[` +
		`{"name":"pg","id":"a","index":0,"az":"","address":"10.0.0.5","bootstrap":true,"addresses":{"default":"10.0.0.5"}},` +
		`{"name":"pg","id":"b","index":1,"az":"","address":"10.0.0.6","bootstrap":false,"addresses":{"default":"10.0.0.6"}}]}`
	if string(got[0].Data) != want {
		t.Errorf("data =\n%s\nwant\n%s", got[0].Data, want)
	}
	provs = append(provs, linkProvider{group: "other", job: "x", name: "pg", typ: "redis", shared: true})
	if _, err := sharedLinks(provs, p, d); err == nil || !strings.Contains(err.Error(), `shares two links named "pg"`) {
		t.Errorf("err = %v; want two links named pg refused", err)
	}
}

// A consumer keeps the links its last successful deploy consumed, as BOSH does: resurrecting
// one of its instances between its deploys renders those, not what the provider shared
// since, and still works once the provider is deleted. Its next deploy takes the
// provider's current links again, and fails if the provider shares none.
func TestResurrectRendersTheConsumersCopyOfForeignLinks(t *testing.T) {
	h := newHarness(t)
	files := linkFiles(t)
	h.repo.commit("first", files)
	for _, task := range h.reconcile(state.RevisionAccepted).Tasks {
		h.mustRun(task)
	}
	appInst := func() (plan.InstancePlan, string) {
		t.Helper()
		task := h.conv.lastRun(t)
		if task.Deployment != "app" || len(task.Plan.Groups) != 1 || len(task.Plan.Groups[0].Instances) != 1 {
			t.Fatalf("last converge = %s, plan %+v; want app's one instance", task.Deployment, task.Plan)
		}
		in := task.Plan.Groups[0].Instances[0]
		ci, ok := task.Instances[in.ID]
		if !ok {
			t.Fatalf("app's converge task does not render %s", in.ID)
		}
		return in, strings.TrimSpace(h.renderedFile(ci, "app/config/app.conf"))
	}
	deployed, conf := appInst()
	if !strings.Contains(conf, "port=6432") {
		t.Fatalf("app.conf after app's deploy = %q", conf)
	}
	copyOf := func() string {
		t.Helper()
		kept, err := h.store.ConsumedLinks(h.ctx, "app")
		if err != nil {
			t.Fatal(err)
		}
		if len(kept) != 1 || len(kept["db"]) != 1 || kept["db"][0].Name != "pg" || kept["db"][0].Type != "db" {
			t.Fatalf("app's copy of the links it consumes = %+v", kept)
		}
		return string(kept["db"][0].Data)
	}
	if got := copyOf(); !strings.Contains(got, `"port": 6432`) {
		t.Errorf("app's copy of pg = %s; want port 6432", got)
	}
	if kept, _ := h.store.ConsumedLinks(h.ctx, "db"); len(kept) != 0 {
		t.Errorf("db, consuming nothing, keeps %+v", kept)
	}
	// A consumer deployed before Bosun kept copies gets one at its next deploy, even one
	// that changes no instance (they run those links already).
	if err := h.store.PutConsumedLinks(h.ctx, "app", nil); err != nil {
		t.Fatal(err)
	}
	h.repo.commit("app: slow watch", map[string]string{"deployments/app/manifest.yml": strings.Replace(files["deployments/app/manifest.yml"],
		"update_watch_time: 1000-30000", "update_watch_time: 1000-50000", 1)})
	runs := len(h.conv.runs)
	if title := h.mustRun(taskOf(t, h.reconcile(state.RevisionAccepted).Tasks, state.TaskDeploy, "app")); !strings.Contains(title, "nothing to change") || len(h.conv.runs) != runs {
		t.Fatalf("app's deploy of an update block: %q, %d converge runs", title, len(h.conv.runs)-runs)
	}
	if got := copyOf(); !strings.Contains(got, `"port": 6432`) {
		t.Errorf("app's copy after a deploy that changed nothing = %s; want port 6432", got)
	}

	// The provider moves its port; the consumer is not deployed.
	h.repo.commit("new port", map[string]string{"deployments/db/manifest.yml": strings.Replace(files["deployments/db/manifest.yml"], "port: 6432", "port: 7432", 1)})
	h.mustRun(taskOf(t, h.reconcile(state.RevisionAccepted).Tasks, state.TaskDeploy, "db"))
	id := 100
	resurrect := func(reason string) (plan.InstancePlan, string) {
		t.Helper()
		insts, err := h.store.Instances(h.ctx, "app")
		if err != nil || len(insts) != 1 {
			t.Fatalf("app's instances = %+v, %v", insts, err)
		}
		id++
		params, _ := json.Marshal(state.ResurrectParams{Instances: []string{insts[0].ID}, Reason: reason})
		if title := h.mustRun(state.Task{ID: int64(id), Type: state.TaskResurrect, Deployment: "app", Params: params}); !strings.HasPrefix(title, "app: resurrected app/0") {
			t.Errorf("title = %q", title)
		}
		return appInst()
	}
	// Resurrected, the instance renders the port app's deploy consumed, and its
	// fingerprint is the one that deploy gave it: no link change is seen.
	for _, reason := range []string{"unresponsive agent", ReasonVMMissing} {
		in, conf := resurrect(reason)
		if !strings.Contains(conf, "port=6432") {
			t.Errorf("%s: app.conf after db moved = %q; want port 6432 still", reason, conf)
		}
		if len(in.Reasons) != 1 || in.Action != plan.Recreate {
			t.Errorf("%s: resurrection plan %s %+v; want a recreate for that reason alone", reason, in.Action, in.Reasons)
		}
		if in.Applied != deployed.Applied {
			t.Errorf("%s: fingerprint %+v; want the deploy's %+v", reason, in.Applied, deployed.Applied)
		}
	}

	// A consumer deployed before Bosun kept copies has none: it renders what the provider
	// shares now, as it did before.
	kept, err := h.store.ConsumedLinks(h.ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.PutConsumedLinks(h.ctx, "app", nil); err != nil {
		t.Fatal(err)
	}
	if _, conf := resurrect("unresponsive agent"); !strings.Contains(conf, "port=7432") {
		t.Errorf("app.conf resurrected with no copy = %q; want db's current port 7432", conf)
	}
	if err := h.store.PutConsumedLinks(h.ctx, "app", kept); err != nil {
		t.Fatal(err)
	}

	// The provider is deleted: the consumer's instance still resurrects, with its copy.
	h.repo.commit("drop db\n\nBosun-Allow-Delete: db", map[string]string{"deployments/db/": ""})
	h.mustRun(taskOf(t, h.reconcile(state.RevisionAccepted).Tasks, state.TaskDeleteDeployment, "db"))
	if links, err := h.store.SharedLinks(h.ctx, "db"); err != nil || len(links) != 0 {
		t.Fatalf("db's shared links after its deletion = %+v, %v", links, err)
	}
	if _, conf := resurrect(ReasonVMMissing); !strings.Contains(conf, "port=6432") {
		t.Errorf("app.conf resurrected after db was deleted = %q; want port 6432", conf)
	}
	h.statusHead("app: resurrected app/0", "Bosun-Result: resurrected")

	// A deploy of the consumer resolves the provider's current links: none, so it fails
	// as before, changing nothing, and the copy stays for the next resurrection.
	runs = len(h.conv.runs)
	h.repo.commit("slower app watch", map[string]string{"deployments/app/manifest.yml": strings.Replace(files["deployments/app/manifest.yml"],
		"update_watch_time: 1000-30000", "update_watch_time: 1000-40000", 1)})
	if _, err := h.run(taskOf(t, h.reconcile(state.RevisionAccepted).Tasks, state.TaskDeploy, "app")); err == nil {
		t.Fatal("app deployed with db gone")
	}
	h.statusHead("app: failed to deploy", appJobPos+`: job app consumes link "db": deployment db provides no shared link "pg" of type db`)
	if len(h.conv.runs) != runs {
		t.Error("converge ran for a deploy whose link is gone")
	}
	if got := copyOf(); !strings.Contains(got, `"port": 6432`) {
		t.Errorf("app's copy after its failed deploy = %s; want port 6432 still", got)
	}
}
