package source

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// MaxWebhookBody bounds a webhook request body; push payloads of big pushes stay well below.
const MaxWebhookBody = 1 << 20

// GenericSignatureHeader carries the generic payload's signature: "sha256=" followed by the
// hex HMAC-SHA256 of the raw body under the shared secret, as GitHub's X-Hub-Signature-256.
const GenericSignatureHeader = "X-Bosun-Signature"

// WebhookHandler serves POST /hooks/git (mount it there). It verifies, in this order:
//   - Gitea: X-Gitea-Signature, hex HMAC-SHA256 of the body;
//   - GitHub: X-Hub-Signature-256, "sha256=" + hex HMAC-SHA256 of the body;
//   - GitLab: X-Gitlab-Token, the secret itself;
//   - generic: X-Bosun-Signature, as GitHub's, over a JSON body {"ref": "refs/heads/main"}
//     or {"branch": "main"}; a body naming no branch triggers a check.
//
// All comparisons are constant-time. A push to the tracked branch triggers a check (202);
// a push to another branch, a ping or another event is acknowledged (200) and triggers
// nothing. Missing signature → 401, wrong signature → 403, body over MaxWebhookBody → 413;
// the response says why. An empty secret refuses every request.
func (w *Watcher) WebhookHandler(secret string) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			rw.Header().Set("Allow", http.MethodPost)
			http.Error(rw, "webhooks are POSTed", http.StatusMethodNotAllowed)
			return
		}
		if secret == "" {
			http.Error(rw, "no webhook secret is configured on this director; refusing unauthenticated hooks", http.StatusForbidden)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxWebhookBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(rw, fmt.Sprintf("body is larger than %d bytes", MaxWebhookBody), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(rw, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		sender, event, status, reason := verify(r.Header, body, []byte(secret))
		log := w.log.With("sender", sender, "remote", r.RemoteAddr)
		if status != 0 {
			log.Warn("webhook refused", "reason", reason)
			http.Error(rw, reason, status)
			return
		}
		if event != "" && event != "push" && event != "Push Hook" {
			log.Debug("webhook event ignored", "event", event)
			fmt.Fprintf(rw, "ignored: %s event\n", event)
			return
		}
		var p struct {
			Ref    string `json:"ref"`
			Branch string `json:"branch"`
		}
		if len(body) > 0 {
			// GitHub may send application/x-www-form-urlencoded with the JSON in "payload".
			if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
				if form, err := url.ParseQuery(string(body)); err == nil && form.Get("payload") != "" {
					body = []byte(form.Get("payload"))
				}
			}
			if err := json.Unmarshal(body, &p); err != nil {
				http.Error(rw, "body is not a JSON push payload: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		ref := p.Ref
		if ref == "" && p.Branch != "" {
			ref = "refs/heads/" + p.Branch
		}
		if ref != "" && ref != w.src.branch.String() {
			fmt.Fprintf(rw, "ignored: push to %s; tracking %s\n", ref, w.src.branch)
			return
		}
		w.Trigger()
		log.Info("webhook triggered a check", "ref", ref)
		rw.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(rw, "checking", w.src.branch)
	})
}

// verify returns who sent the hook and its event name, or an HTTP status and reason.
func verify(h http.Header, body, secret []byte) (sender, event string, status int, reason string) {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	want := mac.Sum(nil)
	hexMAC := func(name, got, prefix string) (int, string) {
		got, ok := strings.CutPrefix(got, prefix)
		sum, err := hex.DecodeString(got)
		if !ok || err != nil || len(sum) != sha256.Size {
			return http.StatusForbidden, fmt.Sprintf("%s is malformed: want %shex HMAC-SHA256 of the body", name, prefix)
		}
		if !hmac.Equal(sum, want) {
			return http.StatusForbidden, name + " does not match: check the webhook secret"
		}
		return 0, ""
	}
	switch {
	case h.Get("X-Gitea-Signature") != "":
		status, reason = hexMAC("X-Gitea-Signature", h.Get("X-Gitea-Signature"), "")
		return "gitea", h.Get("X-Gitea-Event"), status, reason
	case h.Get("X-Hub-Signature-256") != "":
		status, reason = hexMAC("X-Hub-Signature-256", h.Get("X-Hub-Signature-256"), "sha256=")
		return "github", h.Get("X-GitHub-Event"), status, reason
	case h.Get("X-Gitlab-Token") != "":
		if subtle.ConstantTimeCompare([]byte(h.Get("X-Gitlab-Token")), secret) != 1 {
			return "gitlab", "", http.StatusForbidden, "X-Gitlab-Token does not match: check the webhook secret"
		}
		return "gitlab", h.Get("X-Gitlab-Event"), 0, ""
	case h.Get(GenericSignatureHeader) != "":
		status, reason = hexMAC(GenericSignatureHeader, h.Get(GenericSignatureHeader), "sha256=")
		return "generic", "", status, reason
	case h.Get("X-Hub-Signature") != "":
		return "github", "", http.StatusUnauthorized, "only X-Hub-Signature-256 is accepted: SHA-1 signatures are not; set the webhook's content type and secret on GitHub"
	}
	return "unknown", "", http.StatusUnauthorized, "no signature: send X-Hub-Signature-256 (GitHub), X-Gitlab-Token (GitLab), X-Gitea-Signature (Gitea) or " + GenericSignatureHeader
}
