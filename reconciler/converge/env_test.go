package converge

import (
	"encoding/json"
	"testing"
)

func TestMergeEnv(t *testing.T) {
	for _, tc := range []struct{ base, over, want string }{
		{`{"bosun":{"stable_after":"1s"}}`, ``, `{"bosun":{"stable_after":"1s"}}`},
		{``, `{"bosh":{"password":"x"}}`, `{"bosh":{"password":"x"}}`},
		{`{"bosun":{"stable_after":"1s"}}`, `{"bosh":{"password":"x"}}`, `{"bosh":{"password":"x"},"bosun":{"stable_after":"1s"}}`},
		{`{"bosun":{"a":1}}`, `{"bosun":{"b":2}}`, `{"bosun":{"b":2}}`},
		{`{"bosun":{}}`, `"not an object"`, `"not an object"`},
	} {
		if got := string(mergeEnv(json.RawMessage(tc.base), json.RawMessage(tc.over))); got != tc.want {
			t.Errorf("mergeEnv(%s, %s) = %s, want %s", tc.base, tc.over, got, tc.want)
		}
	}
}
