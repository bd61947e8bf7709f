package fakealicloud

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/cpi/internal/fakecloud"
)

// The region's OSS: PutBucket, DeleteBucket, PutObject and DeleteObject, reached
// path-style at the fake's URL (http://127.0.0.1:port/bucket/object), authenticated
// with OSS's V1 header signature, errors as OSS's XML with its codes. Objects keep
// their size and SHA-256; small ones (up to ossKeepBytes) their bytes too.

// OSSMaxPutObject is the most one PutObject takes, as OSS: 5 GiB.
const OSSMaxPutObject = 5 << 30

const ossKeepBytes = 1 << 20

// OSSObjectInfo is an object as tests see it.
type OSSObjectInfo struct {
	Bucket, Key string
	Size        int64
	SHA256      string // hex
	Data        []byte // up to 1 MiB; nil for larger objects
}

type ossBucket struct {
	acl     string
	objects map[string]*OSSObjectInfo
}

// OSSBuckets returns the names of the buckets that exist.
func (c *Cloud) OSSBuckets() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for name := range c.buckets {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// OSSObjects returns every object in every bucket.
func (c *Cloud) OSSObjects() []OSSObjectInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []OSSObjectInfo
	for _, b := range c.buckets {
		for _, o := range b.objects {
			out = append(out, *o)
		}
	}
	slices.SortFunc(out, func(a, b OSSObjectInfo) int { return strings.Compare(a.Bucket+"/"+a.Key, b.Bucket+"/"+b.Key) })
	return out
}

// hasObject says whether bucket/key exists; c.mu is held.
func (c *Cloud) hasObject(bucket, key string) bool {
	b := c.buckets[bucket]
	return b != nil && b.objects[key] != nil
}

// isOSS tells an OSS request from an RPC one: RPC calls go to "/" and sign their
// query; OSS ones name a bucket in the path or carry an Authorization header.
func isOSS(r *http.Request) bool {
	return r.URL.Path != "/" || r.Header.Get("Authorization") != ""
}

var bucketNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)

func (c *Cloud) serveOSS(w http.ResponseWriter, r *http.Request) {
	rid := strings.ToUpper(newID(24))
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	action := map[string]string{"PUT": "PutObject", "DELETE": "DeleteObject", "GET": "GetObject", "HEAD": "HeadObject"}[r.Method]
	if key == "" {
		action = map[string]string{"PUT": "PutBucket", "DELETE": "DeleteBucket", "GET": "ListObjects"}[r.Method]
	}
	entry := Request{Action: action, RequestID: rid, Params: map[string]string{"Bucket": bucket, "Key": key}}
	status, code := 0, ""
	defer func() {
		entry.Status, entry.Code = status, code
		c.log.Add(entry)
	}()
	answer := func(st int, e *apiError) {
		w.Header().Set("x-oss-request-id", rid)
		if e != nil {
			status, code = e.status, e.code
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(e.status)
			x := ossErrorXML{Code: e.code, Message: e.message, RequestID: rid, HostID: r.Host, StringToSign: e.toSign}
			xml.NewEncoder(w).Encode(x)
			return
		}
		status = st
		w.WriteHeader(st)
	}
	f := c.takeFault(action)
	if f != nil && !fakecloud.Hold(r, f.Delay) {
		return
	}
	if e := ossAuthenticate(r, bucket, key); e != nil {
		answer(0, e)
		return
	}
	if f != nil && !f.After {
		fail(w, f, answer)
		return
	}
	st, e := c.ossAct(r, action, bucket, key, entry.Params)
	if f != nil {
		fail(w, f, answer)
		return
	}
	answer(st, e)
}

type ossErrorXML struct {
	XMLName      xml.Name `xml:"Error"`
	Code         string
	Message      string
	RequestID    string `xml:"RequestId"`
	HostID       string `xml:"HostId"`
	StringToSign string `xml:",omitempty"`
}

// ossAuthenticate checks the request as OSS does with a V1 signature: the access key,
// a Date within 15 minutes, the HMAC-SHA1 over the canonical string (quoted back on a
// mismatch, as OSS does), and the STS token when one is sent.
func ossAuthenticate(r *http.Request, bucket, key string) *apiError {
	auth := r.Header.Get("Authorization")
	id, sig, ok := strings.Cut(strings.TrimPrefix(auth, "OSS "), ":")
	if !strings.HasPrefix(auth, "OSS ") || !ok {
		return errf(403, "AccessDenied", "Anonymous access is forbidden for this operation.")
	}
	if id != AccessKeyID {
		return errf(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.")
	}
	date, err := http.ParseTime(r.Header.Get("Date"))
	if err != nil {
		return errf(403, "AccessDenied", "OSS authentication requires a valid Date.")
	}
	if d := time.Since(date); d > 15*time.Minute || d < -15*time.Minute {
		return errf(403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
	}
	resource := "/" + bucket + "/" + key
	if bucket == "" {
		resource = "/"
	}
	toSign := v1StringToSign(r.Method, resource, r.Header)
	mac := hmac.New(sha1.New, []byte(AccessKeySecret))
	mac.Write([]byte(toSign))
	if !hmac.Equal([]byte(base64.StdEncoding.EncodeToString(mac.Sum(nil))), []byte(sig)) {
		e := errf(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
		e.toSign = toSign
		return e
	}
	if t := r.Header.Get("x-oss-security-token"); t != "" && t != SecurityToken {
		return errf(403, "InvalidSecurityToken", "The security token you provided is invalid.")
	}
	return nil
}

// v1StringToSign is written from OSS's description of the V1 signature, apart from
// the CPI's own code, so that the two check each other.
func v1StringToSign(method, resource string, h http.Header) string {
	lines := []string{method, h.Get("Content-MD5"), h.Get("Content-Type"), h.Get("Date")}
	var oss []string
	for name, vals := range h {
		if n := strings.ToLower(name); strings.HasPrefix(n, "x-oss-") {
			oss = append(oss, n+":"+strings.TrimSpace(vals[0]))
		}
	}
	slices.Sort(oss)
	out := strings.Join(lines, "\n") + "\n"
	for _, l := range oss {
		out += l + "\n"
	}
	return out + resource
}

// ossAct does the call; an upload's size and digest go into logged.
func (c *Cloud) ossAct(r *http.Request, action, bucket, key string, logged map[string]string) (int, *apiError) {
	if !bucketNameRE.MatchString(bucket) {
		return 0, errf(400, "InvalidBucketName", "The specified bucket is not valid.")
	}
	switch action {
	case "PutBucket":
		acl := or(r.Header.Get("x-oss-acl"), "private")
		if !slices.Contains([]string{"private", "public-read", "public-read-write"}, acl) {
			return 0, errf(400, "InvalidArgument", "no such bucket access control exists")
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.buckets[bucket] != nil {
			return 0, errf(409, "BucketAlreadyExists", "The requested bucket name is not available.")
		}
		c.buckets[bucket] = &ossBucket{acl: acl, objects: map[string]*OSSObjectInfo{}}
		return 200, nil
	case "DeleteBucket":
		c.mu.Lock()
		defer c.mu.Unlock()
		b := c.buckets[bucket]
		if b == nil {
			return 0, errf(404, "NoSuchBucket", "The specified bucket does not exist.")
		}
		if len(b.objects) > 0 {
			return 0, errf(409, "BucketNotEmpty", "The bucket you tried to delete is not empty.")
		}
		delete(c.buckets, bucket)
		return 204, nil
	case "DeleteObject":
		c.mu.Lock()
		defer c.mu.Unlock()
		b := c.buckets[bucket]
		if b == nil {
			return 0, errf(404, "NoSuchBucket", "The specified bucket does not exist.")
		}
		delete(b.objects, key) // OSS answers 204 for a key that is not there too
		return 204, nil
	case "PutObject":
		c.mu.Lock()
		exists := c.buckets[bucket] != nil
		c.mu.Unlock()
		if !exists {
			return 0, errf(404, "NoSuchBucket", "The specified bucket does not exist.")
		}
		if r.ContentLength < 0 {
			return 0, errf(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
		}
		if r.ContentLength > OSSMaxPutObject {
			return 0, errf(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
		}
		h := sha256.New()
		var keep []byte
		n, err := io.Copy(io.MultiWriter(h, &capWriter{b: &keep, max: ossKeepBytes}), r.Body)
		if err != nil || n != r.ContentLength {
			return 0, errf(400, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.")
		}
		if n > ossKeepBytes {
			keep = nil
		}
		logged["Size"], logged["SHA256"] = strconv.FormatInt(n, 10), hex.EncodeToString(h.Sum(nil))
		c.mu.Lock()
		defer c.mu.Unlock()
		b := c.buckets[bucket]
		if b == nil {
			return 0, errf(404, "NoSuchBucket", "The specified bucket does not exist.")
		}
		b.objects[key] = &OSSObjectInfo{Bucket: bucket, Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Data: keep}
		return 200, nil
	}
	return 0, errf(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
}

// capWriter keeps the first max bytes written.
type capWriter struct {
	b   *[]byte
	max int
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max + 1 - len(*w.b); room > 0 {
		*w.b = append(*w.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
