package fakeopenstack

import (
	"net/http"
	"time"
)

func (c *Cloud) routes() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /identity", c.identityVersions)
	m.HandleFunc("GET /identity/{$}", c.identityVersions)
	m.HandleFunc("GET /identity/v3", c.identityVersions)
	m.HandleFunc("POST /identity/v3/auth/tokens", c.issueToken)
	m.HandleFunc("GET /image", c.versions("v2.16", "/image/v2/"))
	m.HandleFunc("GET /image/{$}", c.versions("v2.16", "/image/v2/"))
	m.HandleFunc("GET /network", c.versions("v2.0", "/network/v2.0/"))
	m.HandleFunc("GET /network/{$}", c.versions("v2.0", "/network/v2.0/"))
	c.novaRoutes(m)
	c.neutronRoutes(m)
	c.cinderRoutes(m)
	c.glanceRoutes(m)
	return c.middleware(m)
}

func (c *Cloud) identityVersions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"versions": map[string]any{"values": []any{map[string]any{
		"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
		"links": []any{map[string]any{"rel": "self", "href": c.srv.URL + "/identity/v3/"}},
	}}}})
}

// versions answers a service's unversioned endpoint with its version document.
func (c *Cloud) versions(id, path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"versions": []any{map[string]any{
			"id": id, "status": "CURRENT", "links": []any{map[string]any{"rel": "self", "href": c.srv.URL + path}},
		}}})
	}
}

type authRequest struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password struct {
				User struct {
					Name     string `json:"name"`
					Password string `json:"password"`
					Domain   struct {
						Name string `json:"name"`
					} `json:"domain"`
				} `json:"user"`
			} `json:"password"`
			AppCred struct {
				ID     string `json:"id"`
				Secret string `json:"secret"`
			} `json:"application_credential"`
		} `json:"identity"`
		Scope struct {
			Project struct {
				Name   string `json:"name"`
				Domain struct {
					Name string `json:"name"`
				} `json:"domain"`
			} `json:"project"`
		} `json:"scope"`
	} `json:"auth"`
}

func (c *Cloud) issueToken(w http.ResponseWriter, r *http.Request) {
	var req authRequest
	if !decode(w, r, &req) {
		return
	}
	id := req.Auth.Identity
	ok := false
	for _, m := range id.Methods {
		switch m {
		case "password":
			u := id.Password.User
			ok = u.Name == Username && u.Password == Password && u.Domain.Name == Domain
			if p := req.Auth.Scope.Project; ok && (p.Name != Project || p.Domain.Name != Domain) {
				fail(w, r, http.StatusUnauthorized, "User %s has no access to project %s", u.Name, p.Name)
				return
			}
		case "application_credential":
			ok = id.AppCred.ID == AppCredID && id.AppCred.Secret == AppCredKey
		}
	}
	if !ok {
		fail(w, r, http.StatusUnauthorized, "The request you have made requires authentication.")
		return
	}
	tok := "gAAAA" + newID()
	c.mu.Lock()
	c.tokens[tok] = true
	c.mu.Unlock()
	endpoint := func(typ, name, path string) any {
		var eps []any
		for _, iface := range []string{"public", "internal", "admin"} {
			eps = append(eps, map[string]any{"id": newID(), "interface": iface, "region": Region, "region_id": Region, "url": c.srv.URL + path})
		}
		return map[string]any{"id": newID(), "type": typ, "name": name, "endpoints": eps}
	}
	w.Header().Set("X-Subject-Token", tok)
	now := time.Now().UTC()
	writeJSON(w, http.StatusCreated, map[string]any{"token": map[string]any{
		"methods":    id.Methods,
		"issued_at":  now.Format(time.RFC3339),
		"expires_at": now.Add(time.Hour).Format(time.RFC3339),
		"user":       map[string]any{"id": "user-1", "name": Username, "domain": map[string]any{"id": "default", "name": Domain}},
		"project":    map[string]any{"id": "project-1", "name": Project, "domain": map[string]any{"id": "default", "name": Domain}},
		"catalog": []any{
			endpoint("identity", "keystone", "/identity/v3"),
			endpoint("compute", "nova", "/compute/v2.1"),
			endpoint("block-storage", "cinderv3", "/volume/v3"),
			endpoint("image", "glance", "/image"),
			endpoint("network", "neutron", "/network"),
		},
	}})
}
