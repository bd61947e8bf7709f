// Package external runs any executable that speaks BOSH's CPI JSON protocol (one
// process per call, one request on stdin, one response on stdout, stderr a log), and
// serves a built-in CPI as such an executable (Serve), so Bosun drives the BOSH
// ecosystem's CPIs and BOSH's tools drive Bosun's.
package external

import (
	"encoding/json"
	"strings"

	"github.com/bosun-gitops/bosun/cpi"
)

// request is what goes to the CPI's stdin (bosh-spec §7.1).
type request struct {
	Method     string            `json:"method"`
	Arguments  []json.RawMessage `json:"arguments"`
	Context    map[string]any    `json:"context"`
	APIVersion int               `json:"api_version,omitempty"`
}

// response is what comes back on stdout.
type response struct {
	Result json.RawMessage `json:"result"`
	Error  *wireError      `json:"error"`
	Log    string          `json:"log"`
}

type wireError struct {
	Type      string `json:"type"`
	Message   string `json:"message"`
	OkToRetry bool   `json:"ok_to_retry"`
}

// readOnly methods change nothing, so repeating them is always safe.
func readOnly(method string) bool {
	switch method {
	case "info", "has_vm", "has_disk", "get_disks", "calculate_vm_cloud_properties", "list_vms":
		return true
	}
	return false
}

// kindOf maps a wire error to a kind, including BOSH's two legacy spellings of
// "no such method".
func kindOf(e *wireError) (cpi.Kind, bool) {
	switch {
	case e.Type == "InvalidCall" && strings.Contains(e.Message, "Method is not known"),
		e.Type == cpi.WirePrefix+"CloudError" && strings.Contains(e.Message, "Invalid Method:"):
		return cpi.NotImplemented, true
	}
	return cpi.ParseKind(e.Type)
}
