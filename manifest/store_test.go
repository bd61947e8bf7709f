package manifest

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// storeShape is a saved store as BOSH's stores are compared: the variables in file
// order, each with the keys of its value (nil for a plain string).
func storeShape(t *testing.T, path string) ([]string, map[string][]string) {
	t.Helper()
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	keys := map[string][]string{}
	for _, p := range s.Values().Pairs {
		name := p.Key.Value.(string)
		names = append(names, name)
		for _, q := range p.Value.Pairs {
			keys[name] = append(keys[name], q.Key.Value.(string))
		}
	}
	return names, keys
}

// TestVarsStoreIndependentOfDeclarationOrder: keys are generated in parallel and handed
// out by name, so declaring the same variables in another order gives a store of the
// same shape (sorted, as BOSH writes it), with every certificate signed by its CA.
func TestVarsStoreIndependentOfDeclarationOrder(t *testing.T) {
	decls := []string{
		"- {name: ca, type: certificate, options: {is_ca: true, common_name: ca}}",
		"- {name: other_ca, type: certificate, options: {is_ca: true, common_name: other, key_length: 3072}}",
		"- {name: web_tls, type: certificate, options: {ca: ca, common_name: web, extended_key_usage: [server_auth]}}",
		"- {name: client_tls, type: certificate, options: {ca: other_ca, common_name: client, extended_key_usage: [client_auth]}}",
		"- {name: db_tls, type: certificate, options: {ca: ca, common_name: db, alternative_names: [10.0.0.5]}}",
		"- {name: jumpbox_ssh, type: ssh}",
		"- {name: signing_key, type: rsa}",
		"- {name: admin_password, type: password}",
		"- {name: admin, type: user, options: {username: admin}}",
	}
	orders := map[string][]int{
		"declared":       {0, 1, 2, 3, 4, 5, 6, 7, 8},
		"interleaved":    {7, 1, 5, 0, 4, 8, 3, 6, 2},          // each CA still before what it signs, as BOSH needs
		"keys last":      {8, 7, 0, 2, 4, 1, 3, 6, 5},          // the cheap ones first
		"other CA first": {1, 3, 0, 4, 2, 6, 5, 8, 7, 8, 2, 1}, // and some declared twice
	}
	var wantNames []string
	var wantKeys map[string][]string
	for _, name := range []string{"declared", "interleaved", "keys last", "other CA first"} {
		t.Run(name, func(t *testing.T) {
			var b strings.Builder
			b.WriteString("variables:\n")
			for _, i := range orders[name] {
				b.WriteString(decls[i] + "\n")
			}
			path := filepath.Join(t.TempDir(), "creds.yml")
			store, err := OpenStore(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Interpolate(mustParse(t, b.String()), StaticVars{}, store, InterpolateOptions{ExpectAllKeys: true}); err != nil {
				t.Fatal(err)
			}
			if err := store.Save(); err != nil {
				t.Fatal(err)
			}
			names, keys := storeShape(t, path)
			if wantNames == nil {
				wantNames, wantKeys = names, keys
				if diff := cmp.Diff([]string{"admin", "admin_password", "ca", "client_tls", "db_tls", "jumpbox_ssh", "other_ca", "signing_key", "web_tls"}, names); diff != "" {
					t.Errorf("store not sorted as BOSH writes it (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(wantNames, names); diff != "" {
				t.Errorf("variables (-declared order +this order):\n%s", diff)
			}
			if diff := cmp.Diff(wantKeys, keys); diff != "" {
				t.Errorf("keys (-declared order +this order):\n%s", diff)
			}
			saved, err := OpenStore(path)
			if err != nil {
				t.Fatal(err)
			}
			for leaf, ca := range map[string]string{"web_tls": "ca", "db_tls": "ca", "client_tls": "other_ca"} {
				caCert, caKey, err := parseCA(mustStr(t, saved, ca, "certificate"), mustStr(t, saved, ca, "private_key"))
				if err != nil {
					t.Fatal(err)
				}
				cert, key, err := parseCA(mustStr(t, saved, leaf, "certificate"), mustStr(t, saved, leaf, "private_key"))
				if err != nil {
					t.Fatal(err)
				}
				if err := cert.CheckSignatureFrom(caCert); err != nil || mustStr(t, saved, leaf, "ca") != mustStr(t, saved, ca, "certificate") {
					t.Errorf("%s is not signed by %s: %v", leaf, ca, err)
				}
				if want := map[string]int{"ca": 2048, "other_ca": 3072}[ca]; caKey.N.BitLen() != want || key.N.BitLen() != 2048 {
					t.Errorf("%s has a %d-bit key, %s a %d-bit one", ca, caKey.N.BitLen(), leaf, key.N.BitLen())
				}
			}
		})
	}
}

// TestVarsStoreKeyWorkersEnd: the key generators end with the interpolation, whether it
// succeeds or fails early; a failed one stops handing out keys nobody will use.
func TestVarsStoreKeyWorkersEnd(t *testing.T) {
	settled := func() int {
		// Goroutines of earlier tests and of the runtime come and go; take the lowest
		// count over a moment.
		n := runtime.NumGoroutine()
		for range 10 {
			time.Sleep(10 * time.Millisecond)
			n = min(n, runtime.NumGoroutine())
		}
		return n
	}
	base := settled()
	var b strings.Builder
	b.WriteString("variables:\n- {name: ca, type: certificate, options: {is_ca: true, common_name: ca}}\n")
	b.WriteString("- {name: bad, type: certificate, options: {ca: ca, extended_key_usage: [flying]}}\n")
	for i := range 40 {
		fmt.Fprintf(&b, "- {name: c%d, type: certificate, options: {ca: ca}}\n", i)
	}
	store, err := OpenStore(filepath.Join(t.TempDir(), "s.yml"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := Interpolate(mustParse(t, b.String()), StaticVars{}, store, InterpolateOptions{}); err == nil || !strings.Contains(err.Error(), "flying") {
		t.Fatalf("error %v, want the bad extended_key_usage", err)
	}
	deadline := time.Now().Add(2 * time.Minute) // generous: the machine is shared
	for settled() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left running (from %d):\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
	}
	t.Logf("failed and settled in %v", time.Since(start)) // not asserted: see BENCHMARKS.md
	made := 0
	for _, ch := range store.keys { // keys generated and never asked for
		made += len(ch)
	}
	if made >= 40 {
		t.Errorf("%d keys of the 40 after the failure were generated anyway", made)
	}
}
