package fakeopenstack_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/cpi/openstack/fakeopenstack"
)

func do(t *testing.T, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestAuthFaultsAndLog(t *testing.T) {
	c := fakeopenstack.New(t, fakeopenstack.Options{})
	auth := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"` + fakeopenstack.Username +
		`","password":"` + fakeopenstack.Password + `","domain":{"name":"Default"}}}},"scope":{"project":{"name":"bosun","domain":{"name":"Default"}}}}}`
	code, h, _ := do(t, "POST", c.AuthURL()+"/v3/auth/tokens", "", auth)
	tok := h.Get("X-Subject-Token")
	if code != 201 || tok == "" {
		t.Fatalf("auth: %d, token %q", code, tok)
	}
	if code, _, body := do(t, "GET", c.URL()+"/compute/v2.1/flavors/detail", "", ""); code != 401 || !strings.Contains(body, "requires authentication") {
		t.Errorf("without a token: %d %s", code, body)
	}
	c.Inject(fakeopenstack.Fault{Method: "GET", Path: "/flavors", Times: 2, Status: 429, RetryAfter: "7"})
	for i := range 2 {
		if code, h, body := do(t, "GET", c.URL()+"/compute/v2.1/flavors/detail", tok, ""); code != 429 || h.Get("Retry-After") != "7" || !strings.Contains(body, "overLimit") {
			t.Errorf("fault %d: %d %v %s", i, code, h, body)
		}
	}
	if code, _, body := do(t, "GET", c.URL()+"/compute/v2.1/flavors/detail", tok, ""); code != 200 || !strings.Contains(body, "m1.small") {
		t.Errorf("after the fault: %d %s", code, body)
	}
	if code, _, body := do(t, "GET", c.URL()+"/network/v2.0/ports/x", tok, ""); code != 405 && code != 404 {
		t.Errorf("unknown route: %d %s", code, body)
	}
	log := c.Requests()
	if len(log) != 6 || log[0].Path != "/identity/v3/auth/tokens" || log[2].Status != 429 || log[0].RequestID == "" {
		t.Errorf("log = %+v", log)
	}
	for _, r := range log {
		if strings.Contains(r.Path+r.Query, fakeopenstack.Password) {
			t.Errorf("log holds the password: %+v", r)
		}
	}
}

func TestVolumeStatesAdvancePerPoll(t *testing.T) {
	c := fakeopenstack.New(t, fakeopenstack.Options{Polls: 3})
	auth := `{"auth":{"identity":{"methods":["application_credential"],"application_credential":{"id":"` + fakeopenstack.AppCredID +
		`","secret":"` + fakeopenstack.AppCredKey + `"}}}}`
	_, h, _ := do(t, "POST", c.AuthURL()+"/v3/auth/tokens", "", auth)
	tok := h.Get("X-Subject-Token")
	code, _, body := do(t, "POST", c.URL()+"/volume/v3/volumes", tok, `{"volume":{"size":1}}`)
	if code != 202 {
		t.Fatalf("create: %d %s", code, body)
	}
	id := c.Volumes()[0].ID
	var states []string
	for range 4 {
		_, _, body := do(t, "GET", c.URL()+"/volume/v3/volumes/"+id, tok, "")
		for _, s := range []string{"creating", "available"} {
			if strings.Contains(body, `"status":"`+s+`"`) {
				states = append(states, s)
			}
		}
	}
	if strings.Join(states, ",") != "creating,creating,available,available" {
		t.Errorf("states = %v", states)
	}
}

func TestAddNetwork(t *testing.T) {
	c := fakeopenstack.New(t, fakeopenstack.Options{})
	if _, err := c.AddNetwork("bad", "127.1.2.0"); err == nil || !strings.Contains(err.Error(), "fake network bad") {
		t.Errorf("a range without a prefix length: %v", err)
	}
	id, err := c.AddNetwork("loopback", "127.1.2.0/24")
	if err != nil {
		t.Fatal(err)
	}
	_, h, _ := do(t, "POST", c.AuthURL()+"/v3/auth/tokens", "", `{"auth":{"identity":{"methods":["application_credential"],"application_credential":{"id":"`+
		fakeopenstack.AppCredID+`","secret":"`+fakeopenstack.AppCredKey+`"}}}}`)
	tok := h.Get("X-Subject-Token")
	if code, _, body := do(t, "GET", c.URL()+"/network/v2.0/networks/"+id, tok, ""); code != 200 || !strings.Contains(body, `"name":"loopback"`) {
		t.Errorf("get network: %d %s", code, body)
	}
	if code, _, body := do(t, "POST", c.URL()+"/network/v2.0/ports", tok,
		`{"port":{"network_id":"`+id+`","fixed_ips":[{"ip_address":"127.1.2.20"}]}}`); code != 201 || !strings.Contains(body, "127.1.2.20") {
		t.Errorf("port on the new network: %d %s", code, body)
	}
}
