package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func tcpAddr(t *testing.T, s string) net.Addr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// leafOf is the server certificate a handshake would present.
func leafOf(t *testing.T, bt *blobstoreTLS) *x509.Certificate {
	t.Helper()
	if len(bt.config.Certificates) > 0 {
		c, err := x509.ParseCertificate(bt.config.Certificates[0].Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c, err := bt.config.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

func sans(c *x509.Certificate) []string {
	var out []string
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	out = append(out, c.DNSNames...)
	slices.Sort(out)
	return out
}

// verifies says the leaf chains to caPEM for host, as an agent checks it.
func verifies(t *testing.T, leaf *x509.Certificate, caPEM []byte, host string) error {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate")
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host})
	return err
}

// The director makes its CA and server certificate once, keeps them (keys 0600), reuses
// them at the next start, remakes the server certificate (only) when the URL's host
// changes or it nears its end, and renews it at a handshake in a long run.
func TestBlobstoreTLSMadeAndKept(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	clock := func() time.Time { return now }
	listen := tcpAddr(t, "127.0.0.1:25250")

	first, err := setupBlobstoreTLS(dir, blobstoreFlags{}, "https://10.0.0.5:25250", listen, clock)
	if err != nil {
		t.Fatal(err)
	}
	if !first.made {
		t.Error("the first start says it made no certificate")
	}
	for f, mode := range map[string]os.FileMode{blobCACertFile: 0o644, blobCAKeyFile: 0o600, blobTLSCertFile: 0o644, blobTLSKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v; want %v", f, fi.Mode().Perm(), mode)
		}
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, blobCACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.caPEM, caPEM) {
		t.Error("agents are not handed the kept CA")
	}
	leaf1 := leafOf(t, first)
	if diff := cmp.Diff([]string{"10.0.0.5", "127.0.0.1"}, sans(leaf1)); diff != "" {
		t.Errorf("SANs (-want +got):\n%s", diff)
	}
	if err := verifies(t, leaf1, caPEM, "10.0.0.5"); err != nil {
		t.Errorf("the certificate does not verify against the CA: %v", err)
	}
	if slices.Contains(leaf1.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || leaf1.IsCA {
		t.Errorf("the server certificate can do more than serve: %+v, CA %v", leaf1.ExtKeyUsage, leaf1.IsCA)
	}

	// A restart keeps both.
	again, err := setupBlobstoreTLS(dir, blobstoreFlags{}, "https://10.0.0.5:25250", listen, clock)
	if err != nil {
		t.Fatal(err)
	}
	if again.made || !leafOf(t, again).Equal(leaf1) || !bytes.Equal(again.caPEM, caPEM) {
		t.Error("a restart with the same URL remade the certificate or the CA")
	}

	// A new URL host: a new server certificate, the same CA (VMs hold it).
	moved, err := setupBlobstoreTLS(dir, blobstoreFlags{}, "https://blobs.example.com:25250", tcpAddr(t, "0.0.0.0:25250"), clock)
	if err != nil {
		t.Fatal(err)
	}
	leaf2 := leafOf(t, moved)
	if !moved.made || leaf2.Equal(leaf1) {
		t.Error("a new URL host kept the old certificate")
	}
	if diff := cmp.Diff([]string{"blobs.example.com"}, sans(leaf2)); diff != "" {
		t.Errorf("SANs for an unspecified listen address (-want +got):\n%s", diff)
	}
	if !bytes.Equal(moved.caPEM, caPEM) {
		t.Error("a new URL host made a new CA")
	}
	if err := verifies(t, leaf2, caPEM, "blobs.example.com"); err != nil {
		t.Errorf("the new certificate does not verify against the kept CA: %v", err)
	}

	// Eleven months on, a start remakes it.
	later := now.Add(blobCertValidity - blobCertRenew + time.Hour)
	renewed, err := setupBlobstoreTLS(dir, blobstoreFlags{}, "https://blobs.example.com:25250", nil, func() time.Time { return later })
	if err != nil {
		t.Fatal(err)
	}
	if leaf3 := leafOf(t, renewed); !renewed.made || !leaf3.NotAfter.After(leaf2.NotAfter) {
		t.Errorf("a certificate near its end was kept (ends %v, then %v)", leaf2.NotAfter, leaf3.NotAfter)
	}

	// A director running that long renews at a handshake.
	run := now
	long, err := setupBlobstoreTLS(dir, blobstoreFlags{}, "https://blobs.example.com:25250", nil, func() time.Time { return run })
	if err != nil {
		t.Fatal(err)
	}
	before := leafOf(t, long)
	run = before.NotAfter.Add(-time.Hour)
	if after := leafOf(t, long); !after.NotAfter.After(before.NotAfter) {
		t.Error("a handshake served a certificate an hour from its end")
	}
	if a, b := leafOf(t, long), leafOf(t, long); !a.Equal(b) {
		t.Error("handshakes keep remaking the certificate")
	}
}

// A CA the director cannot use stops the start, naming the files and never their
// content; a new CA is not silently made over half of the old one.
func TestBlobstoreTLSBrokenCA(t *testing.T) {
	listen := tcpAddr(t, "127.0.0.1:25250")
	for _, tt := range []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   string
	}{
		{"garbled key", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, blobCAKeyFile), "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n")
		}, "remove both"},
		{"key of another CA", func(t *testing.T, dir string) {
			other := t.TempDir()
			if _, err := setupBlobstoreTLS(other, blobstoreFlags{}, "https://10.0.0.5", listen, time.Now); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(other, blobCAKeyFile))
			if err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(dir, blobCAKeyFile), string(b))
		}, "not the certificate's"},
		{"key gone", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, blobCAKeyFile)); err != nil {
				t.Fatal(err)
			}
		}, "must both exist"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := setupBlobstoreTLS(dir, blobstoreFlags{}, "https://10.0.0.5", listen, time.Now); err != nil {
				t.Fatal(err)
			}
			tt.break_(t, dir)
			var key string
			if b, err := os.ReadFile(filepath.Join(dir, blobCAKeyFile)); err == nil {
				key = strings.Split(string(b), "\n")[1]
			}
			_, err := setupBlobstoreTLS(dir, blobstoreFlags{}, "https://10.0.0.5", listen, time.Now)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), blobCACertFile) {
				t.Fatalf("err = %v; want one naming %s and saying %q", err, blobCACertFile, tt.want)
			}
			if key != "" && strings.Contains(err.Error(), key) {
				t.Errorf("the error quotes the key: %v", err)
			}
		})
	}
}

// The operator's certificate is served as given, checked first against the URL's host
// and --blobstore-tls-ca; agents get that CA, or none (system roots) without it.
func TestBlobstoreTLSOperatorCert(t *testing.T) {
	// An operator's PKI: a CA and a certificate for blobs.example.com, made the way the
	// director makes its own, in another directory.
	pki := t.TempDir()
	if _, err := setupBlobstoreTLS(pki, blobstoreFlags{}, "https://blobs.example.com", nil, time.Now); err != nil {
		t.Fatal(err)
	}
	otherPKI := t.TempDir()
	if _, err := setupBlobstoreTLS(otherPKI, blobstoreFlags{}, "https://blobs.example.com", nil, time.Now); err != nil {
		t.Fatal(err)
	}
	cert, key, ca := filepath.Join(pki, blobTLSCertFile), filepath.Join(pki, blobTLSKeyFile), filepath.Join(pki, blobCACertFile)
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	keyLine := pemBody(t, key)
	for _, tt := range []struct {
		name    string
		f       blobstoreFlags
		url     string
		wantCA  []byte
		wantErr string
	}{
		{name: "with its CA", f: blobstoreFlags{tlsCert: cert, tlsKey: key, tlsCA: ca}, url: "https://blobs.example.com", wantCA: caPEM},
		{name: "system roots", f: blobstoreFlags{tlsCert: cert, tlsKey: key}, url: "https://blobs.example.com:8443"},
		{name: "another host", f: blobstoreFlags{tlsCert: cert, tlsKey: key, tlsCA: ca}, url: "https://10.0.0.5", wantErr: "10.0.0.5"},
		{name: "another host, system roots", f: blobstoreFlags{tlsCert: cert, tlsKey: key}, url: "https://10.0.0.5", wantErr: "does not cover"},
		{name: "another CA", f: blobstoreFlags{tlsCert: cert, tlsKey: key, tlsCA: filepath.Join(otherPKI, blobCACertFile)}, url: "https://blobs.example.com", wantErr: "unknown authority"},
		{name: "another key", f: blobstoreFlags{tlsCert: cert, tlsKey: filepath.Join(otherPKI, blobTLSKeyFile)}, url: "https://blobs.example.com", wantErr: "does not match"},
		{name: "a key as CA", f: blobstoreFlags{tlsCert: cert, tlsKey: key, tlsCA: key}, url: "https://blobs.example.com", wantErr: `"PRIVATE KEY" block`},
		{name: "no such file", f: blobstoreFlags{tlsCert: cert + ".gone", tlsKey: key}, url: "https://blobs.example.com", wantErr: "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bt, err := setupBlobstoreTLS(dir, tt.f, tt.url, tcpAddr(t, "0.0.0.0:25250"), time.Now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want one saying %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), keyLine) {
					t.Errorf("the error quotes the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(bt.caPEM, tt.wantCA) {
				t.Errorf("agents get CA %q; want %q", bt.caPEM, tt.wantCA)
			}
			if leaf := leafOf(t, bt); !slices.Contains(leaf.DNSNames, "blobs.example.com") {
				t.Errorf("serves %v, not the given certificate", leaf.DNSNames)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("the data dir got %v with an operator's certificate", entries)
			}
		})
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
