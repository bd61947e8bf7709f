package release

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func demoInstance(i int) InstanceSpec {
	return InstanceSpec{
		Deployment: "d", Name: "web", Index: i, ID: "id-" + string(rune('a'+i%26)), AZ: "z1",
		Address: "127.0.1.2", IP: "127.0.1.2", Bootstrap: i == 0,
		Networks: map[string]any{"default": map[string]any{"ip": "127.0.1.2"}},
	}
}

func TestRenderDemoWeb(t *testing.T) {
	r, err := Build(context.Background(), "../repo-template/releases/demo")
	if err != nil {
		t.Fatal(err)
	}
	rn := NewRenderer()
	render := func(props map[string]any) *RenderedInstance {
		t.Helper()
		out, err := rn.Render(demoInstance(0), []JobInput{{Release: "demo", ReleaseVersion: r.Manifest.Version, Job: r.Job("web"), Properties: props}})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	def := render(nil)
	bpm := string(def.Jobs[0].Files["config/bpm.yml"])
	for _, want := range []string{`- "127.0.1.2:8080"`, `- "Hello"`, `- "web/id-a"`, "for web/0 (id-a) of deployment d"} {
		if !strings.Contains(bpm, want) {
			t.Errorf("bpm.yml lacks %s:\n%s", want, bpm)
		}
	}
	custom := render(map[string]any{"greeting": `Bonjour "monde"`, "port": 9090, "undeclared": true})
	bpm = string(custom.Jobs[0].Files["config/bpm.yml"])
	for _, want := range []string{`- "127.0.1.2:9090"`, `- "Bonjour \"monde\""`} {
		if !strings.Contains(bpm, want) {
			t.Errorf("bpm.yml lacks %s:\n%s", want, bpm)
		}
	}
	if def.ConfigurationHash == custom.ConfigurationHash || len(def.ConfigurationHash) != 40 {
		t.Errorf("configuration hashes %q and %q: want distinct sha1s", def.ConfigurationHash, custom.ConfigurationHash)
	}
	if again := render(nil); again.ConfigurationHash != def.ConfigurationHash || !bytes.Equal(again.Archive, def.Archive) {
		t.Error("rendering twice gave different results")
	}
	entries, err := untgz(context.Background(), bytes.NewReader(def.Archive))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"web/config/bpm.yml", "web/monit"}, slices.Sorted(maps.Keys(entries))); diff != "" {
		t.Errorf("rendered templates archive (-want +got):\n%s", diff)
	}
	if def.ArchiveSHA1 != sha1Hex(def.Archive) || def.TemplateHashes["web"] != def.Jobs[0].Hash {
		t.Error("archive sha1 or template hashes do not describe what was rendered")
	}
}

func jobWith(templates map[string]string, props map[string]Property, consumes ...LinkDef) *Job {
	j := &Job{Spec: JobSpec{Name: "j", Templates: map[string]string{}, Properties: props, Consumes: consumes}, Templates: map[string][]byte{}}
	for src, body := range templates {
		dest := "config/" + strings.TrimSuffix(src, ".tmpl")
		j.Spec.Templates[src] = dest
		j.Templates[src] = []byte(body)
	}
	return j
}

func TestRenderHelpers(t *testing.T) {
	props := map[string]Property{
		"a.b":      {Default: "dflt"},
		"required": {},
		"tls.cert": {},
		"nested":   {Default: map[string]any{"x": 1, "y": map[string]any{"z": 2}}},
		"flag":     {Default: true},
	}
	db := Link{Name: "db", Type: "postgres", Properties: map[string]any{"port": 5432}, Instances: []LinkInstance{{Address: "10.0.0.1"}, {Address: "10.0.0.2"}}}
	tests := []struct {
		name  string
		tmpl  string
		given map[string]any
		want  string
	}{
		{"default", `{{ p "a.b" }}`, nil, "dflt"},
		{"manifest wins, nested", `{{ p "a.b" }}`, map[string]any{"a": map[string]any{"b": "set"}}, "set"},
		{"manifest wins, dotted key", `{{ p "a.b" }}`, map[string]any{"a.b": "dotted"}, "dotted"},
		{"null falls back to default", `{{ p "a.b" }}`, map[string]any{"a": map[string]any{"b": nil}}, "dflt"},
		{"false is a value", `{{ p "flag" }}`, map[string]any{"flag": false}, "false"},
		{"call-site default", `{{ p "required" "fallback" }}`, nil, "fallback"},
		{"deep merge", `{{ json (p "nested") }}`, map[string]any{"nested": map[string]any{"y": map[string]any{"w": 3}}}, `{"x":1,"y":{"w":3,"z":2}}`},
		{"if_p unset", `{{ if if_p "tls.cert" }}tls{{ else }}plain{{ end }}`, nil, "plain"},
		{"if_p set", `{{ if if_p "tls.cert" "a.b" }}{{ p "tls.cert" }}{{ end }}`, map[string]any{"tls": map[string]any{"cert": "PEM"}}, "PEM"},
		{"spec", `{{ (spec).name }}/{{ .index }} {{ .id }} {{ .az }} {{ .address }} {{ .bootstrap }} {{ .deployment }} {{ .release.name }}`, nil, "web/0 id-a z1 127.0.1.2 true d rel"},
		{"link", `{{ with link "db" }}{{ .P "port" }}{{ range .Instances }} {{ .Address }}{{ end }}{{ end }}`, nil, "5432 10.0.0.1 10.0.0.2"},
		{"if_link", `{{ if if_link "cache" }}cache{{ else }}none{{ end }} {{ if if_link "db" }}db{{ end }}`, nil, "none db"},
		{"unread required property is fine", `ok`, nil, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := jobWith(map[string]string{"t.tmpl": tt.tmpl}, props, LinkDef{Name: "db", Type: "postgres"}, LinkDef{Name: "cache", Type: "redis", Optional: true})
			out, err := NewRenderer().Render(demoInstance(0), []JobInput{{Release: "rel", Job: j, Properties: tt.given, Links: map[string]Link{"db": db}}})
			if err != nil {
				t.Fatal(err)
			}
			if got := string(out.Jobs[0].Files["config/t"]); got != tt.want {
				t.Errorf("rendered %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	props := map[string]Property{"required": {}, "port": {Default: 1}}
	tests := []struct {
		name      string
		templates map[string]string
		want      string
	}{
		{"required property missing", map[string]string{"a.tmpl": "x={{ p \"required\" }}"},
			`release "rel", job "j", template "a.tmpl": property "required" is not set in the manifest and has no default in the job spec`},
		{"undeclared property", map[string]string{"a.tmpl": `{{ p "nope.deep" }}`},
			`release "rel", job "j", template "a.tmpl": property "nope.deep" is not declared in the job spec`},
		{"ERB", map[string]string{"ctl.erb": `<%= p("port") %>`},
			`release "rel", job "j", template "ctl.erb": template engine not supported: ERB templates are not supported yet`},
		{"parse error", map[string]string{"a.tmpl": `{{ p "port" `},
			`release "rel", job "j", template "a.tmpl": template: a.tmpl:1: unclosed action`},
		{"unknown spec key", map[string]string{"a.tmpl": `{{ .nosuch }}`},
			`release "rel", job "j", template "a.tmpl": template: a.tmpl:1:3: executing "a.tmpl" at <.nosuch>: map has no entry for key "nosuch"`},
		{"link not consumed", map[string]string{"a.tmpl": `{{ link "db" }}`},
			`job "j" does not consume a link named "db"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRenderer().Render(demoInstance(0), []JobInput{{Release: "rel", Job: jobWith(tt.templates, props)}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v\nwant it to contain %s", err, tt.want)
			}
		})
	}
	_, err := NewRenderer().Render(demoInstance(0), []JobInput{{Release: "rel", Job: jobWith(map[string]string{"a.tmpl": `{{ p "required" }}`}, props)}})
	var pe *PropertyError
	if !errors.As(err, &pe) || pe.Property != "required" || pe.Template != "a.tmpl" {
		t.Errorf("want a *PropertyError naming the property and template, got %#v", err)
	}
}

// A second engine plugs in by suffix, which is how ERB will arrive.
type engineFunc func(name string, src []byte) (Template, error)

func (f engineFunc) Compile(name string, src []byte) (Template, error) { return f(name, src) }

type upperTemplate []byte

func (u upperTemplate) Execute(w io.Writer, c *TemplateContext) error {
	_, err := w.Write(bytes.ToUpper(u))
	return err
}

func TestRenderSecondEngine(t *testing.T) {
	rn := NewRenderer()
	rn.Engines[".up"] = engineFunc(func(name string, src []byte) (Template, error) { return upperTemplate(src), nil })
	out, err := rn.Render(demoInstance(0), []JobInput{{Release: "rel", Job: jobWith(map[string]string{"a.up": "shout"}, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out.Jobs[0].Files["config/a.up"]); got != "SHOUT" {
		t.Errorf("got %q", got)
	}
}

func TestProvidedLinkProperties(t *testing.T) {
	r, err := Build(context.Background(), "../repo-template/releases/demo")
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Job("web").ProvidedLinkProperties("web", map[string]any{"port": 9000, "greeting": "not shared"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"port": 9000}, got); diff != "" {
		t.Errorf("link properties (-want +got):\n%s", diff)
	}
	if _, err := r.Job("web").ProvidedLinkProperties("db", nil); err == nil || !strings.Contains(err.Error(), `job "web" provides no link named "db"`) {
		t.Errorf("unknown link: %v", err)
	}
}

// Many goroutines render instances of one job at once, as a director's workers do; run
// with -race this checks that compiled templates are shared safely.
func TestRenderConcurrently(t *testing.T) {
	r, err := Build(context.Background(), "../repo-template/releases/demo")
	if err != nil {
		t.Fatal(err)
	}
	rn := NewRenderer()
	want, err := rn.Render(demoInstance(3), []JobInput{{Release: "demo", Job: r.Job("web")}})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 20 {
				got, err := rn.Render(demoInstance(3), []JobInput{{Release: "demo", Job: r.Job("web")}})
				if err == nil && got.ConfigurationHash != want.ConfigurationHash {
					err = errors.New("a concurrent render gave another result")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
