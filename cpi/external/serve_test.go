package external_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/bosun-gitops/bosun/cpi/cpitest"
	"github.com/bosun-gitops/bosun/cpi/external"
)

// FuzzServe: any request gets exactly one well-formed response, never a panic.
func FuzzServe(f *testing.F) {
	for _, s := range []string{
		`{"method":"info","arguments":[]}`,
		`{"method":"create_vm","arguments":["a","sc",{},{"n":{"type":"dynamic"}},[],{"bosh":{"mbus":{"urls":["nats://x"]}}}],"api_version":2}`,
		`{"method":"create_vm","arguments":[1,2,3,4,5,6]}`,
		`{"method":"attach_disk","arguments":["vm","disk"],"context":{"vm":{"stemcell":{"api_version":"x"}}}}`,
		`{"method":"create_disk","arguments":[-1,null,null]}`,
		`{"method":"set_vm_metadata","arguments":["vm",[]]}`,
		`{"method":"list_vms"}`,
		`[]`, ``, `{"method":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		var out bytes.Buffer
		if err := external.Serve(context.Background(), cpitest.NewFake("fake"), bytes.NewReader(req), &out, nil); err != nil {
			t.Fatal(err)
		}
		var resp struct {
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Type string `json:"type"`
			} `json:"error"`
		}
		if err := json.Unmarshal(out.Bytes(), &resp); err != nil {
			t.Fatalf("response %q is not JSON: %v", out.Bytes(), err)
		}
		if resp.Error != nil && resp.Error.Type == "" {
			t.Fatalf("error without type: %s", out.Bytes())
		}
	})
}
