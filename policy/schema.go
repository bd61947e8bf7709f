package policy

import (
	"encoding/json"

	"github.com/open-policy-agent/opa/v1/ast"
)

// inputSchema types `input` for OPA's type checker, so a policy reading a path that does
// not exist (`input.change`, `input.commit.trailer`) fails to compile, naming file and
// line, instead of silently never denying. Objects listed with properties are closed;
// manifests and the per-deployment changes are open (OPA's schemas cannot type a map
// whose keys are names).
const inputSchema = `{
  "type": "object",
  "properties": {
    "commit": {"type": "object", "properties": {
      "sha": {"type": "string"},
      "author": {"$ref": "#/definitions/person"},
      "committer": {"$ref": "#/definitions/person"},
      "message": {"type": "string"},
      "trailers": {"type": "object"},
      "signature": {"type": "object", "properties": {
        "status": {"type": "string"}, "signer": {"type": "string"}, "type": {"type": "string"}}}
    }},
    "previous": {"$ref": "#/definitions/snapshot"},
    "proposed": {"$ref": "#/definitions/snapshot"},
    "changes": {"type": "object", "properties": {
      "deployments": {"type": "object"},
      "created": {"type": "array", "items": {"type": "string"}},
      "deleted": {"type": "array", "items": {"type": "string"}},
      "cloud_config_changed": {"type": "boolean"},
      "runtime_configs_changed": {"type": "array", "items": {"type": "string"}}
    }}
  },
  "definitions": {
    "person": {"type": "object", "properties": {
      "name": {"type": "string"}, "email": {"type": "string"}, "time": {"type": "string"}}},
    "snapshot": {"type": "object", "properties": {
      "deployments": {"type": "object"},
      "cloud_config": {"type": "object"},
      "runtime_configs": {"type": "object"},
      "releases": {"type": "object"},
      "stemcells": {"type": "object"}
    }}
  }
}`

func schemas() *ast.SchemaSet {
	var s any
	if err := json.Unmarshal([]byte(inputSchema), &s); err != nil {
		panic("policy: input schema is not JSON: " + err.Error()) // a constant; caught by every test
	}
	ss := ast.NewSchemaSet()
	ss.Put(ast.SchemaRootRef, s)
	return ss
}
