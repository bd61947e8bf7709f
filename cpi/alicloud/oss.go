package alicloud

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/cpi/internal/wait"
)

// The OSS Go SDK is not available to this module, and a heavy stemcell needs only
// four OSS calls (PutBucket, PutObject, DeleteObject, DeleteBucket), so they are made
// here over net/http, signed as OSS's V1 header signature specifies: an HMAC-SHA1,
// keyed with the access key secret, of
//
//	VERB \n Content-MD5 \n Content-Type \n Date \n CanonicalizedOSSHeaders CanonicalizedResource
//
// where CanonicalizedOSSHeaders are the x-oss-* headers, lower-cased and sorted, one
// "name:value\n" each (the STS token travels as one of them), and CanonicalizedResource
// is "/bucket/object" ("/bucket/" for the bucket itself), whatever host the request
// goes to.

// maxPutObject is the most one OSS PutObject takes (5 GiB); larger images would need a
// multipart upload, which this CPI does not make.
const maxPutObject = 5 << 30

// ossRequest is one OSS call.
type ossRequest struct {
	op             string // "PutObject": how errors and logs name the call
	method         string
	bucket, object string // object "" addresses the bucket
	header         http.Header
	body           io.Reader
	size           int64
}

// ossURL is where a request goes: virtual-hosted (bucket.endpoint/object), as OSS
// requires, except for an endpoint given as an IP address or localhost (a test
// service or a local proxy), which cannot take a bucket subdomain and gets the bucket
// in the path instead. The signed resource is the same either way.
func (c *CPI) ossURL(bucket, object string) string {
	host := c.oss.host
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	u := url.URL{Scheme: strings.ToLower(c.oss.scheme), Host: bucket + "." + host, Path: "/" + object}
	if net.ParseIP(strings.Trim(name, "[]")) != nil || name == "localhost" {
		u.Host, u.Path = host, "/"+bucket+"/"+object
	}
	return u.String()
}

// ossStringToSign is the V1 string to sign of a request to resource ("/bucket/object").
func ossStringToSign(method, resource string, h http.Header) string {
	var names []string
	for k := range h {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-oss-") {
			names = append(names, lk)
		}
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(method + "\n" + h.Get("Content-MD5") + "\n" + h.Get("Content-Type") + "\n" + h.Get("Date") + "\n")
	for _, n := range names {
		b.WriteString(n + ":" + strings.TrimSpace(h.Get(n)) + "\n")
	}
	b.WriteString(resource)
	return b.String()
}

// ossSignature is base64(HMAC-SHA1(secret, stringToSign)).
func ossSignature(secret, stringToSign string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(stringToSign))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ossDo sends one OSS request. Requests without a body are retried as ECS ones are
// (throttling, 503; other 5xx and lost answers too, all four calls being idempotent);
// an upload is not, its body being a stream read once.
func (c *CPI) ossDo(ctx context.Context, r ossRequest) error {
	op := "oss " + r.op
	return c.retrying(ctx, op, func(e *apiError) bool { return r.body == nil && retriable(e, true) }, func() error { return c.ossOnce(ctx, op, r) })
}

func (c *CPI) ossOnce(ctx context.Context, op string, r ossRequest) error {
	body := r.body
	if body == nil {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.ossURL(r.bucket, r.object), body)
	if err != nil {
		return &apiError{Op: op, Message: "bad request: " + describe(err)}
	}
	req.ContentLength = r.size
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("Date", c.now().UTC().Format(http.TimeFormat))
	if c.cfg.SecurityToken != "" {
		req.Header.Set("x-oss-security-token", c.cfg.SecurityToken)
	}
	resource := "/" + r.bucket + "/" + r.object
	req.Header.Set("Authorization", "OSS "+c.cfg.AccessKeyID+":"+ossSignature(c.cfg.AccessKeySecret, ossStringToSign(r.method, resource, req.Header)))
	client := &http.Client{Transport: c.base, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if r.body == nil {
		client.Timeout = wait.Seconds(c.cfg.ConnectionOptions.ReadTimeout, 60)
	}
	resp, err := client.Do(req)
	if err != nil {
		// describe drops the URL; it is not secret here, but the message stays the
		// same as every other call's.
		return &apiError{Op: op, Message: describe(err), transport: true}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return nil
	}
	return ossError(op, resp)
}

// ossError reads OSS's XML error. Only the code, message and request id are kept:
// a SignatureDoesNotMatch answer also quotes the string to sign, which holds the
// STS token.
func ossError(op string, resp *http.Response) *apiError {
	var x struct {
		Code, Message, RequestId string
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	_ = xml.Unmarshal(b, &x)
	e := &apiError{Op: op, Status: resp.StatusCode, Code: x.Code, RequestID: x.RequestId, Message: clip(x.Message)}
	if e.RequestID == "" {
		e.RequestID = resp.Header.Get("x-oss-request-id")
	}
	return e
}

// ossEndpoint is the OSS endpoint: oss_endpoint, else the region's public one.
func ossEndpoint(cfg Config) endpoint {
	ep := endpoint{product: "oss", scheme: "HTTPS", host: "oss-" + cfg.Region + ".aliyuncs.com"}
	if scheme, host, _ := parseEndpoint(cfg.OSSEndpoint); host != "" {
		ep.scheme, ep.host = scheme, host
	}
	return ep
}

func (c *CPI) now() time.Time {
	if c.clock != nil {
		return c.clock()
	}
	return time.Now()
}
