package health

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

func TestParseRules(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       Rules
		err        string
	}{
		{"empty is the default", "", Rules{}, ""},
		{"BOSH-shaped", "enabled: true\ninclude: {instance_groups: [web]}\nexclude:\n  instance_groups: [db]\npersistent_disks: true\n",
			Rules{Enabled: new(true), Include: GroupSelector{[]string{"web"}}, Exclude: GroupSelector{[]string{"db"}}, PersistentDisks: true}, ""},
		{"off", "enabled: false", Rules{Enabled: new(false)}, ""},
		{"typo is an error naming its line", "enabled: true\npersistent_disk: true\n", Rules{}, "line 2"},
		{"wrong type", "enabled: maybe\n", Rules{}, "bosun.yml: deployments.web.resurrection"},
		{"both included and excluded", "include: {instance_groups: [web]}\nexclude: {instance_groups: [web]}\n", Rules{}, "both included and excluded"},
		{"empty group name", "exclude: {instance_groups: ['']}\n", Rules{}, "exclude.instance_groups[0] is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRules("bosun.yml: deployments.web.resurrection", []byte(tc.yaml))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
		})
	}
}

// The repository template's bosun.yml nests rules under each deployment; its section
// decodes into Rules as is.
func TestRulesFromBosunYML(t *testing.T) {
	var doc struct {
		Deployments map[string]struct {
			Resurrection Rules `yaml:"resurrection"`
		} `yaml:"deployments"`
	}
	src := "deployments:\n  demo:\n    drift: repair\n    resurrection:\n      enabled: true\n      exclude: {instance_groups: [db]}\n"
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	r := doc.Deployments["demo"].Resurrection
	if ok, _ := r.Allows("web", false); !ok {
		t.Error("web not allowed")
	}
	if ok, why := r.Allows("db", false); ok || !strings.Contains(why, "excluded") {
		t.Errorf("db allowed = %v (%s)", ok, why)
	}
	if ok, why := r.Allows("web", true); ok || !strings.Contains(why, "persistent disk") {
		t.Errorf("web with disk allowed = %v (%s)", ok, why)
	}
}

func TestConfigRejectsNonsense(t *testing.T) {
	for _, cfg := range []Config{
		{AgentTimeout: -1},
		{Meltdown: Meltdown{Percent: 1.5}},
		{Meltdown: Meltdown{MinDown: -2}},
		{DefaultRules: Rules{Include: GroupSelector{[]string{"a"}}, Exclude: GroupSelector{[]string{"a"}}}},
	} {
		if _, err := New(cfg, nil, nil, nil); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	m, err := New(Config{}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := Rules{Include: GroupSelector{[]string{"a"}}, Exclude: GroupSelector{[]string{"a"}}}
	if err := m.SetRules(Rules{}, map[string]Rules{"web": bad}); err == nil {
		t.Error("SetRules accepted contradictory rules")
	}
	if err := m.SetRules(bad, nil); err == nil {
		t.Error("SetRules accepted contradictory default rules")
	}
}

func TestRulesFromMap(t *testing.T) {
	// What a generic bosun.yml reader keeps of the section.
	var raw map[string]any
	if err := yaml.Unmarshal([]byte("enabled: true\nexclude: {instance_groups: [db]}\npersistent_disks: true\n"), &raw); err != nil {
		t.Fatal(err)
	}
	got, err := RulesFromMap("bosun.yml: deployments.web.resurrection", raw)
	if err != nil {
		t.Fatal(err)
	}
	want := Rules{Enabled: new(true), Exclude: GroupSelector{[]string{"db"}}, PersistentDisks: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if r, err := RulesFromMap("x", nil); err != nil || !r.On() {
		t.Errorf("nil map = %+v, %v", r, err)
	}
	if _, err := RulesFromMap("bosun.yml: resurrection", map[string]any{"enabled": true, "persistant_disks": true}); err == nil || !strings.Contains(err.Error(), "bosun.yml: resurrection") {
		t.Errorf("typo: %v", err)
	}
}
