package openstack

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestBodyMessage(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"itemNotFound":{"code":404,"message":"Instance x could not be found."}}`, "Instance x could not be found."},
		{`{"NeutronError":{"type":"IpAddressAlreadyAllocated","message":"IP in use","detail":""}}`, "IpAddressAlreadyAllocated: IP in use"},
		{`{"error":{"code":401,"message":"requires authentication","title":"Unauthorized"}}`, "requires authentication"},
		{`{"message":"top"}`, "top"},
		{"404 Not Found\n\nNo image found with ID x\n", "404 Not Found No image found with ID x"},
		{``, ""},
	}
	for _, tt := range tests {
		if got := bodyMessage([]byte(tt.body)); got != tt.want {
			t.Errorf("bodyMessage(%q) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func FuzzBodyMessage(f *testing.F) {
	for _, s := range []string{`{"a":{"message":"m"}}`, `{"message":1}`, `[`, `{"x":[1]}`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if m := bodyMessage(b); len(m) > 310 {
			t.Errorf("message of %d bytes: not clipped", len(m))
		}
	})
}

// FuzzRootImage: a stemcell image file of any content is read or refused, never a
// panic.
func FuzzRootImage(f *testing.F) {
	f.Add([]byte("plain disk image"))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0})
	f.Add(append(make([]byte, 257), []byte("ustar\x0000")...))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := rootImage(bytes.NewReader(b))
		if err == nil {
			io.Copy(io.Discard, r)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	future := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"2", 2 * time.Second, true},
		{"0.5", 500 * time.Millisecond, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{future, 90 * time.Second, true},
	}
	for _, tt := range tests {
		got, ok := retryAfter(http.Header{"Retry-After": {tt.v}})
		if ok != tt.ok || got > tt.want || got < tt.want-2*time.Second {
			t.Errorf("retryAfter(%q) = %s, %v; want %s, %v", tt.v, got, ok, tt.want, tt.ok)
		}
	}
}

func TestConfigRedacts(t *testing.T) {
	c := Config{AuthURL: "https://k", Username: "u", APIKey: "hunter2", ApplicationCredentialSecret: "s3cr3t-xyz"}
	for _, out := range []string{c.String(), fmt.Sprint(c), fmt.Sprintf("%v %+v", c, &c), c.LogValue().String()} {
		if strings.Contains(out, "hunter2") || strings.Contains(out, "s3cr3t-xyz") || !strings.Contains(out, "https://k") {
			t.Errorf("printed config: %s", out)
		}
	}
}
