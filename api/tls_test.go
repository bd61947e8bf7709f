package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/api"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns their paths.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bosun director"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTLS(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	cfg := testConfig()
	cfg.TLS = api.TLSConfig{Cert: certFile, Key: keyFile}
	tlsCfg, err := cfg.ServerTLS()
	if err != nil || tlsCfg == nil {
		t.Fatalf("server TLS = %v, %v", tlsCfg, err)
	}
	e := newEnv(t, api.Options{})
	seed(t, e.store)
	hs := httptest.NewUnstartedServer(e.server.Config.Handler)
	hs.TLS = tlsCfg
	hs.StartTLS()
	t.Cleanup(hs.Close)
	ctx := ctxFor(t)

	caPEM, _ := os.ReadFile(certFile)
	c, err := api.NewClient(hs.URL, adminToken, api.ClientOptions{CACert: caPEM})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.URL(), "https://") {
		t.Fatalf("url %s", c.URL())
	}
	if ds, err := c.Deployments(ctx); err != nil || len(ds) != 2 {
		t.Errorf("deployments over TLS = %d, %v", len(ds), err)
	}
	untrusting, _ := api.NewClient(hs.URL, adminToken, api.ClientOptions{})
	if _, err := untrusting.Deployments(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client not trusting the certificate: %v", err)
	}
	plain, _ := api.NewClient(strings.Replace(hs.URL, "https://", "http://", 1), adminToken, api.ClientOptions{})
	if _, err := plain.Deployments(ctx); err == nil {
		t.Error("plain HTTP to the TLS port worked")
	}
	if _, err := api.NewClient(hs.URL, "", api.ClientOptions{CACert: []byte("not pem")}); err == nil {
		t.Error("a CA bundle without certificates was accepted")
	}

	cfg.TLS.Key = certFile // not a key
	if _, err := cfg.ServerTLS(); err == nil || !strings.Contains(err.Error(), "API TLS certificate") {
		t.Errorf("bad key: %v", err)
	}
}
