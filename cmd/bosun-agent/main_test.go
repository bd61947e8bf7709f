package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/agent"
)

func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "a1.agent.bosh-internal"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// TestMbusTLS: BOSH's env.bosh.mbus.cert gives the agent its client certificate.
func TestMbusTLS(t *testing.T) {
	cert, key := selfSigned(t)
	env := func(v any) agent.Settings {
		b, _ := json.Marshal(v)
		return agent.Settings{Env: agent.Env{Bosh: b}}
	}
	good := env(map[string]any{"mbus": map[string]any{"cert": map[string]string{"ca": cert, "certificate": cert, "private_key": key}}})
	if opt, err := mbusTLS(good); err != nil || opt == nil {
		t.Fatalf("mbusTLS = %v, %v", opt, err)
	}
	if opt, err := mbusTLS(env(map[string]any{"password": "x"})); err != nil || opt != nil {
		t.Fatalf("without certs: %v, %v", opt, err)
	}
	tests := []struct {
		cert map[string]string
		want string
	}{
		{map[string]string{"ca": "not pem"}, "env.bosh.mbus.cert.ca holds no PEM certificate"},
		{map[string]string{"certificate": cert, "private_key": "nope"}, "env.bosh.mbus.cert"},
	}
	for _, tc := range tests {
		_, err := mbusTLS(env(map[string]any{"mbus": map[string]any{"cert": tc.cert}}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mbusTLS(%v) = %v, want %q", tc.cert, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "nope") {
			t.Errorf("error echoes the private key: %v", err)
		}
	}
}
