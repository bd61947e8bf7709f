package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/api"
)

// fakeObserved answers web's instances and, for every deployment, the addresses the
// others hold; it records who was asked, so that a refused request is seen not to reach it.
type fakeObserved struct {
	mu    sync.Mutex
	asked []string
}

func (f *fakeObserved) Observed(ctx context.Context, deployment string) (api.ObservedState, error) {
	f.mu.Lock()
	f.asked = append(f.asked, deployment)
	f.mu.Unlock()
	o := api.ObservedState{IPsInUse: map[string][]string{"default": {"10.0.0.99"}}}
	if deployment == "web" {
		o.Instances = []api.ObservedInstance{{ID: "id-0", Group: "web", Index: 0, AZ: "z1", Bootstrap: true, VMCID: "vm-web-0", State: "started",
			IPs: map[string]string{"default": "10.0.0.5"}, Applied: api.Fingerprint{Stemcell: "ubuntu-noble/1.5", Jobs: "0123456789abcdef", Disk: api.FingerprintDisk{Size: 1024}}}}
	}
	if deployment == "broken" {
		return o, errors.New("database went away")
	}
	return o, nil
}

func TestObservedEndpoint(t *testing.T) {
	f := &fakeObserved{}
	e := newEnv(t, api.Options{Observed: f})
	seed(t, e.store)
	ctx := ctxFor(t)
	tests := []struct {
		name, token, deployment string
		code                    int
		reason                  string // in the error message
		known                   bool
		instances               int
	}{
		{"no token", "", "web", 401, "no token", false, 0},
		{"read token reads any", readToken, "db", 200, "", true, 0},
		{"read token, web", readToken, "web", 200, "", true, 1},
		{"a deployment the director lacks is not a 404", readToken, "new-one", 200, "", false, 0},
		{"team reads its own", webReadToken, "web", 200, "", true, 1},
		{"team reads its own new one by pattern", webReadToken, "web-canary", 200, "", false, 0},
		{"team may not read another's", webReadToken, "db", 403, "token web-dev may not read deployment db", false, 0},
		{"team may not read another's new one", webAdmToken, "search", 403, "may not read deployment search", false, 0},
		{"admin", adminToken, "web", 200, "", true, 1},
		{"a failure is a 500 naming it", adminToken, "broken", 500, "observed state of broken: database went away", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.mu.Lock()
			f.asked = nil
			f.mu.Unlock()
			req, _ := http.NewRequestWithContext(ctx, "GET", e.server.URL+"/deployments/"+tt.deployment+"/observed", nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.code, b)
			}
			f.mu.Lock()
			asked := f.asked
			f.mu.Unlock()
			if tt.code >= 400 {
				var eb api.ErrorBody
				if err := json.Unmarshal(b, &eb); err != nil || eb.Status != tt.code || !strings.Contains(eb.Error, tt.reason) {
					t.Errorf("error %s (%v), want status %d and %q", b, err, tt.code, tt.reason)
				}
				if (tt.code == 401 || tt.code == 403) && len(asked) > 0 {
					t.Errorf("a refused request reached the reconciler: %v", asked)
				}
				return
			}
			var o api.ObservedState
			if err := json.Unmarshal(b, &o); err != nil {
				t.Fatal(err)
			}
			if o.Deployment != tt.deployment || o.Known != tt.known || len(o.Instances) != tt.instances {
				t.Errorf("observed = %+v; want %s known=%v with %d instances", o, tt.deployment, tt.known, tt.instances)
			}
			if o.Instances == nil {
				t.Error(`no instances is "instances": null; want []`)
			}
			if len(o.IPsInUse["default"]) != 1 {
				t.Errorf("ips in use = %v", o.IPsInUse)
			}
		})
	}

	// The client decodes every field.
	got, err := e.client(t, webReadToken).Observed(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := f.Observed(ctx, "web")
	want.Deployment, want.Known, want.Revision = "web", true, "0123456789abcdef"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("client's observed state (-want +got):\n%s", diff)
	}
	var ae *api.Error
	if _, err := e.client(t, webReadToken).Observed(ctx, "db"); !errors.As(err, &ae) || ae.Status != 403 {
		t.Errorf("team token on db: %v; want a 403 *api.Error", err)
	}
}

func TestObservedNotWired(t *testing.T) {
	e := newEnv(t, api.Options{})
	ctx := ctxFor(t)
	_, err := e.client(t, readToken).Observed(ctx, "web")
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 501 || !strings.Contains(ae.Message, "no reconciler") {
		t.Errorf("err = %v; want a 501 naming the reconciler", err)
	}
	in, err := e.client(t, readToken).Info(ctx)
	if err != nil || in.Features["observed"] {
		t.Errorf("info = %+v, %v; want feature observed false", in, err)
	}
}
