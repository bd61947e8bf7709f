package alicloud

import (
	"net/http"
	"testing"
)

// The V1 example in OSS's documentation ("Include a V1 signature in the
// Authorization header"): its string to sign and its signature.
var ossDocExample = struct {
	method, resource, secret string
	header                   http.Header
	toSign, signature        string
}{
	method: "PUT", resource: "/oss-example/nelson", secret: "OtxrzxIsfpFjA7SwPzILwy8Bw21TLhquhboDYROV",
	header: http.Header{"Content-Md5": {"ODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM="}, "Content-Type": {"text/html"},
		"Date": {"Thu, 17 Nov 2005 18:49:58 GMT"}, "X-Oss-Meta-Author": {"foo@bar.com"}, "X-Oss-Magic": {"abracadabra"},
		"Host": {"oss-example.oss-cn-hangzhou.aliyuncs.com"}},
	toSign:    "PUT\nODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=\ntext/html\nThu, 17 Nov 2005 18:49:58 GMT\nx-oss-magic:abracadabra\nx-oss-meta-author:foo@bar.com\n/oss-example/nelson",
	signature: "26NBxoKdsyly4EDv6inkoDft/yA=",
}

func TestOSSSignatureDocExample(t *testing.T) {
	ex := ossDocExample
	got := ossStringToSign(ex.method, ex.resource, ex.header)
	if got != ex.toSign {
		t.Errorf("string to sign:\n%q\nwant\n%q", got, ex.toSign)
	}
	if sig := ossSignature(ex.secret, got); sig != ex.signature {
		t.Errorf("signature %s, want %s", sig, ex.signature)
	}
}

func TestOSSEndpointAndURL(t *testing.T) {
	tests := []struct {
		endpoint, wantBucketURL, wantObjectURL string
	}{
		{"", "https://bosh-stemcell-1.oss-cn-beijing.aliyuncs.com/", "https://bosh-stemcell-1.oss-cn-beijing.aliyuncs.com/root.raw"},
		{"oss-cn-beijing-internal.aliyuncs.com", "https://bosh-stemcell-1.oss-cn-beijing-internal.aliyuncs.com/",
			"https://bosh-stemcell-1.oss-cn-beijing-internal.aliyuncs.com/root.raw"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/bosh-stemcell-1/", "http://127.0.0.1:8080/bosh-stemcell-1/root.raw"},
		{"http://localhost:9000", "http://localhost:9000/bosh-stemcell-1/", "http://localhost:9000/bosh-stemcell-1/root.raw"},
		{"https://[::1]:9000", "https://[::1]:9000/bosh-stemcell-1/", "https://[::1]:9000/bosh-stemcell-1/root.raw"},
	}
	for _, tt := range tests {
		c, err := New(Config{Region: "cn-beijing", AccessKeyID: "a", AccessKeySecret: "s", OSSEndpoint: tt.endpoint}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ossURL("bosh-stemcell-1", ""); got != tt.wantBucketURL {
			t.Errorf("%q: bucket URL %s, want %s", tt.endpoint, got, tt.wantBucketURL)
		}
		if got := c.ossURL("bosh-stemcell-1", "root.raw"); got != tt.wantObjectURL {
			t.Errorf("%q: object URL %s, want %s", tt.endpoint, got, tt.wantObjectURL)
		}
	}
}
