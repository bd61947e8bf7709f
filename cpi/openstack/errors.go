package openstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/bosun-gitops/bosun/cpi"
)

// apiError is what an OpenStack API answered: which call, what status, the request
// id to quote to the cloud's operators, and the cloud's own message. It is built from
// the parts of gophercloud's error that cannot hold a credential.
type apiError struct {
	Op        string // what we asked, e.g. "nova create server"
	Call      string // "POST /compute/v2.1/servers"
	Status    int    // 0 when no response came
	RequestID string
	Message   string
	err       error
}

func (e *apiError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Call != "" {
		b.WriteString(": " + e.Call)
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " answered %d %s", e.Status, http.StatusText(e.Status))
	} else {
		b.WriteString(" failed")
	}
	if e.RequestID != "" {
		b.WriteString(" (request " + e.RequestID + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

func (e *apiError) Unwrap() error { return e.err }

// apiErr describes err from the call op.
func apiErr(op string, err error) error {
	if err == nil {
		return nil
	}
	e := &apiError{Op: op, err: err}
	var code gophercloud.ErrUnexpectedResponseCode
	var ue *url.Error
	switch {
	case errors.As(err, &code):
		e.Call = code.Method + " " + urlPath(code.URL)
		e.Status = code.Actual
		e.RequestID = requestID(code.ResponseHeader)
		e.Message = bodyMessage(code.Body)
	case errors.As(err, &ue):
		e.Call = strings.ToUpper(ue.Op) + " " + urlPath(ue.URL)
		e.Message = describe(ue.Err)
	default:
		e.Message = describe(err)
	}
	return e
}

// describe is err's text without anything gophercloud may have put in it from a
// request body.
func describe(err error) string {
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		return fmt.Sprintf("%s %s answered %d: %s", code.Method, urlPath(code.URL), code.Actual, bodyMessage(code.Body))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return strings.ToUpper(ue.Op) + " " + urlPath(ue.URL) + ": " + describe(ue.Err)
	}
	return err.Error()
}

func statusOf(err error) int {
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		return code.Actual
	}
	return 0
}

func isNotFound(err error) bool { return statusOf(err) == http.StatusNotFound }

// urlPath drops scheme, host and query: they add nothing an operator needs, and a
// query may carry filters that are long.
func urlPath(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Path
}

func requestID(h http.Header) string {
	for _, k := range []string{"X-Openstack-Request-Id", "X-Compute-Request-Id", "X-Request-Id"} {
		if v := h.Get(k); v != "" {
			return v
		}
	}
	return ""
}

// bodyMessage finds the message in the error bodies OpenStack services send:
// {"itemNotFound":{"message":…}} (Nova, Cinder), {"NeutronError":{"message":…}},
// {"error":{"message":…}} (Keystone), {"message":…}, or plain text (Glance).
func bodyMessage(body []byte) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) == nil {
		var m struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		}
		if raw, ok := top["message"]; ok && json.Unmarshal(raw, &m.Message) == nil {
			return clip(m.Message)
		}
		for _, raw := range top {
			if json.Unmarshal(raw, &m) == nil && m.Message != "" {
				if m.Type != "" {
					return clip(m.Type + ": " + m.Message)
				}
				return clip(m.Message)
			}
		}
	}
	return clip(strings.Join(strings.Fields(string(body)), " "))
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

func (c *CPI) errf(ctx context.Context, method, subject string, kind cpi.Kind, retry bool, cause error, format string, a ...any) error {
	return &cpi.Error{CPI: c.cfg.Name, Method: method, Instance: cpi.InstanceFrom(ctx), Subject: subject,
		Kind: kind, OkToRetry: retry, Msg: fmt.Sprintf(format, a...), Err: cause}
}
