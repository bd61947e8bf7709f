package source

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

const hookSecret = "s3cret-hook"

func sign(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

func hookWatcher(t testing.TB) *Watcher {
	t.Helper()
	s, err := Open(Config{Remote: Remote{URL: t.TempDir()}, Branch: "main", CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return NewWatcher(s, WatchOptions{})
}

// triggered drains the watcher's pending trigger, if any.
func triggered(w *Watcher) bool {
	select {
	case <-w.kick:
		return true
	default:
		return false
	}
}

func TestWebhook(t *testing.T) {
	push := `{"ref":"refs/heads/main","after":"abc"}`
	other := `{"ref":"refs/heads/feature"}`
	form := "payload=" + url.QueryEscape(push)
	for _, tc := range []struct {
		name    string
		method  string
		headers map[string]string
		body    string
		code    int
		trigger bool
		reason  string
	}{
		{"github push", "POST", map[string]string{"X-Hub-Signature-256": "sha256=" + sign(hookSecret, push), "X-GitHub-Event": "push"}, push, 202, true, "checking"},
		{"github form push", "POST", map[string]string{"X-Hub-Signature-256": "sha256=" + sign(hookSecret, form), "X-GitHub-Event": "push", "Content-Type": "application/x-www-form-urlencoded"}, form, 202, true, "checking"},
		{"github ping", "POST", map[string]string{"X-Hub-Signature-256": "sha256=" + sign(hookSecret, `{}`), "X-GitHub-Event": "ping"}, `{}`, 200, false, "ignored: ping"},
		{"github wrong secret", "POST", map[string]string{"X-Hub-Signature-256": "sha256=" + sign("nope", push)}, push, 403, false, "does not match"},
		{"github missing prefix", "POST", map[string]string{"X-Hub-Signature-256": sign(hookSecret, push)}, push, 403, false, "malformed"},
		{"github sha1 only", "POST", map[string]string{"X-Hub-Signature": "sha1=00"}, push, 401, false, "SHA-1"},
		{"github other branch", "POST", map[string]string{"X-Hub-Signature-256": "sha256=" + sign(hookSecret, other), "X-GitHub-Event": "push"}, other, 200, false, "ignored: push to refs/heads/feature"},
		{"gitlab push", "POST", map[string]string{"X-Gitlab-Token": hookSecret, "X-Gitlab-Event": "Push Hook"}, push, 202, true, "checking"},
		{"gitlab wrong token", "POST", map[string]string{"X-Gitlab-Token": "guess", "X-Gitlab-Event": "Push Hook"}, push, 403, false, "X-Gitlab-Token"},
		{"gitlab tag push", "POST", map[string]string{"X-Gitlab-Token": hookSecret, "X-Gitlab-Event": "Tag Push Hook"}, push, 200, false, "ignored"},
		{"gitea push", "POST", map[string]string{"X-Gitea-Signature": sign(hookSecret, push), "X-Gitea-Event": "push"}, push, 202, true, "checking"},
		{"gitea tampered body", "POST", map[string]string{"X-Gitea-Signature": sign(hookSecret, push), "X-Gitea-Event": "push"}, other, 403, false, "does not match"},
		{"generic ref", "POST", map[string]string{GenericSignatureHeader: "sha256=" + sign(hookSecret, push)}, push, 202, true, "checking"},
		{"generic branch", "POST", map[string]string{GenericSignatureHeader: "sha256=" + sign(hookSecret, `{"branch":"main"}`)}, `{"branch":"main"}`, 202, true, "checking"},
		{"generic no branch", "POST", map[string]string{GenericSignatureHeader: "sha256=" + sign(hookSecret, ``)}, ``, 202, true, "checking"},
		{"generic bad json", "POST", map[string]string{GenericSignatureHeader: "sha256=" + sign(hookSecret, `{`)}, `{`, 400, false, "not a JSON"},
		{"unsigned", "POST", nil, push, 401, false, "no signature"},
		{"get", "GET", nil, "", 405, false, "POSTed"},
		{"too big", "POST", map[string]string{GenericSignatureHeader: "sha256=00"}, strings.Repeat("x", MaxWebhookBody+1), 413, false, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := hookWatcher(t)
			req := httptest.NewRequest(tc.method, "/hooks/git", strings.NewReader(tc.body))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			w.WebhookHandler(hookSecret).ServeHTTP(rec, req)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.reason) {
				t.Errorf("got %d %q, want %d containing %q", rec.Code, rec.Body.String(), tc.code, tc.reason)
			}
			if got := triggered(w); got != tc.trigger {
				t.Errorf("triggered = %v, want %v", got, tc.trigger)
			}
		})
	}
}

func TestWebhookWithoutSecretRefusesAll(t *testing.T) {
	w := hookWatcher(t)
	req := httptest.NewRequest("POST", "/hooks/git", strings.NewReader(`{}`))
	req.Header.Set(GenericSignatureHeader, "sha256="+sign("", `{}`))
	rec := httptest.NewRecorder()
	w.WebhookHandler("").ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || triggered(w) {
		t.Fatalf("got %d, triggered=%v", rec.Code, triggered(w))
	}
}

func FuzzWebhook(f *testing.F) {
	for _, s := range []string{`{"ref":"refs/heads/main"}`, `{"branch":""}`, `[]`, `null`, `{"ref":1}`, "payload=%7B%7D", ""} {
		f.Add(s, "application/json")
		f.Add(s, "application/x-www-form-urlencoded")
	}
	f.Fuzz(func(t *testing.T, body, contentType string) {
		w := hookWatcher(t)
		req := httptest.NewRequest("POST", "/hooks/git", strings.NewReader(body))
		req.Header.Set(GenericSignatureHeader, "sha256="+sign(hookSecret, body))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		w.WebhookHandler(hookSecret).ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 202, 400, 413:
		default:
			t.Fatalf("signed body %q got %d %s", body, rec.Code, rec.Body)
		}
	})
}
