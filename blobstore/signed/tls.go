package signed

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
)

// NewClient returns a Client for a blobstore served over TLS. With caPEM set, the client
// trusts exactly the certificates in it (the director's own CA, which no system trusts
// and which must be the only one: a system root would let anyone holding a public
// certificate for the host read the rendered templates it serves) and refuses plain HTTP
// URLs, redirects included, since a blobstore with a CA is one that serves TLS. Without
// it, the system roots verify https URLs and http URLs are allowed.
func NewClient(caPEM []byte) (Client, error) {
	if len(caPEM) == 0 {
		return Client{}, nil
	}
	pool, err := CertPool(caPEM)
	if err != nil {
		return Client{}, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return Client{HTTP: &http.Client{Transport: httpsOnly{t}}}, nil
}

// CertPool parses PEM certificates into a pool holding only them; anything in caPEM that
// is not a certificate is an error, so a CA file with a private key in it is refused
// rather than half used.
func CertPool(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := caPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			// The block's type only: its content may be a key.
			return nil, fmt.Errorf("blobstore CA: a PEM %q block where certificates belong", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("blobstore CA: %w", err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("blobstore CA: no PEM certificate")
	}
	return pool, nil
}

// httpsOnly refuses requests that are not https: on every request, so a redirect to
// http:// is refused too.
type httpsOnly struct{ next http.RoundTripper }

func (h httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, fmt.Errorf("refusing %s://%s: this blobstore is reached over TLS only (a CA is configured for it)", r.URL.Scheme, r.URL.Host)
	}
	return h.next.RoundTrip(r)
}
