package fakealicloud

import (
	"net/http"
	"testing"
)

// The fake's string to sign against OSS's documented V1 example, so that it checks
// the CPI's signing rather than agreeing with it.
func TestV1StringToSignDocExample(t *testing.T) {
	h := http.Header{"Content-Md5": {"ODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM="}, "Content-Type": {"text/html"},
		"Date": {"Thu, 17 Nov 2005 18:49:58 GMT"}, "X-Oss-Meta-Author": {"foo@bar.com"}, "X-Oss-Magic": {"abracadabra"}}
	want := "PUT\nODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=\ntext/html\nThu, 17 Nov 2005 18:49:58 GMT\nx-oss-magic:abracadabra\nx-oss-meta-author:foo@bar.com\n/oss-example/nelson"
	if got := v1StringToSign("PUT", "/oss-example/nelson", h); got != want {
		t.Errorf("string to sign:\n%q\nwant\n%q", got, want)
	}
}
