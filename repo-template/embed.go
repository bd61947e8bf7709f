// Package repotemplate holds the example manifest repository that `bosun init` copies:
// a demo deployment that converges on the embedded default (local CPI, local stemcell),
// its release as a source directory, a cloud-config and example policies with tests.
package repotemplate

import (
	"embed"
	"io/fs"
)

//go:embed bosun.yml cloud-config.yml deployments policies releases stemcells README.md
var files embed.FS

// FS is the template's tree, rooted at the repository's top.
func FS() fs.FS { return files }
