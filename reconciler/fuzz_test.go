package reconciler

import (
	"io/fs"
	"testing"

	repotemplate "github.com/bosun-gitops/bosun/repo-template"
)

// FuzzRender: no input in a deployment's manifest, ops file or bosun.yml panics the
// renderer; each is rendered or refused with an error.
func FuzzRender(f *testing.F) {
	m, _ := fs.ReadFile(repotemplate.FS(), "deployments/demo/manifest.yml")
	b, _ := fs.ReadFile(repotemplate.FS(), "bosun.yml")
	f.Add(m, []byte("- type: replace\n  path: /instance_groups/0/instances\n  value: 3\n"), b)
	f.Add([]byte("name: demo\ninstance_groups: [{name: web, instances: -1}]\n"), []byte("[]"), []byte("deployments: {demo: {drift: x}}\n"))
	f.Add([]byte("name: demo\nreleases: [{name: demo, version: ((v))}]\nvariables: [{name: v, type: certificate}]\n"), []byte(""), []byte("{}"))
	f.Fuzz(func(t *testing.T, manifest, ops, bosun []byte) {
		fsys := templateFS(t, nil)
		fsys["deployments/demo/manifest.yml"].Data = manifest
		if len(ops) > 0 {
			fsys["deployments/demo/ops/x.yml"] = fsys["bosun.yml"]
			fsys["deployments/demo/ops/x.yml"] = cloneFile(ops)
		}
		fsys["bosun.yml"] = cloneFile(bosun)
		rd, err := (&Renderer{}).Render(testCtx(t), "fuzz", fsys)
		if err == nil && rd.Deployments["demo"] == nil {
			t.Fatal("rendered without the demo and without an error")
		}
	})
}
