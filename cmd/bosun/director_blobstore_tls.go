package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/blobstore/signed"
)

// The blobstore's own CA and server certificate, made in the data dir when no
// --blobstore-tls-cert is given. The keys are 0600 and never logged: whoever holds the
// CA key can impersonate the blobstore to every agent.
const (
	blobCACertFile  = "blobstore-ca.crt"
	blobCAKeyFile   = "blobstore-ca.key"
	blobTLSCertFile = "blobstore-tls.crt"
	blobTLSKeyFile  = "blobstore-tls.key"
)

const (
	// blobCAValidity is long: every VM's settings hold the CA, and a new one reaches
	// running VMs only at the next deploy (converge sends their agents update_settings);
	// until then they cannot fetch or upload blobs.
	blobCAValidity = 10 * 365 * 24 * time.Hour
	// blobCertValidity is a server certificate's life; it is remade when a month or
	// less is left, at start or at the handshake that finds it so.
	blobCertValidity = 365 * 24 * time.Hour
	blobCertRenew    = 30 * 24 * time.Hour
	// blobCertBackdate covers VMs whose clocks lag the director's.
	blobCertBackdate = time.Hour
)

// blobstoreTLS is how the blobstore serves TLS and what agents are told to trust.
type blobstoreTLS struct {
	config *tls.Config
	// caPEM is the CA handed to agents in their settings; empty when the agents are
	// to verify with their system roots (a certificate from a public CA).
	caPEM []byte
	// made says the director made the server certificate at this start (new, or its
	// hosts changed, or it was expiring), for the log.
	made bool
}

// setupBlobstoreTLS loads --blobstore-tls-cert/-key (and --blobstore-tls-ca), or makes
// (once) a CA and a server certificate for the hosts agents dial. base is the URL agents
// are given; listen the address served on.
func setupBlobstoreTLS(dataDir string, f blobstoreFlags, base string, listen net.Addr, now func() time.Time) (*blobstoreTLS, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("blobstore TLS: %w", err)
	}
	if f.tlsCert != "" {
		return loadBlobstoreTLS(f, u.Hostname())
	}
	hosts := certHosts(u.Hostname(), listen)
	ca, err := loadOrMakeBlobCA(dataDir, now())
	if err != nil {
		return nil, err
	}
	src := &blobCertSource{dataDir: dataDir, ca: ca, hosts: hosts, now: now}
	if err := src.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: src.get}
	return &blobstoreTLS{config: cfg, caPEM: ca.certPEM, made: src.made}, nil
}

// loadBlobstoreTLS takes the operator's certificate and checks, before any agent tries,
// that it is good for host and, with --blobstore-tls-ca, chains to that CA.
func loadBlobstoreTLS(f blobstoreFlags, host string) (*blobstoreTLS, error) {
	// LoadX509KeyPair's errors name what is wrong, never the key's content.
	cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--blobstore-tls-cert %s / --blobstore-tls-key %s: %w", f.tlsCert, f.tlsKey, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("--blobstore-tls-cert %s: %w", f.tlsCert, err)
		}
	}
	out := &blobstoreTLS{config: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}}
	if f.tlsCA == "" {
		// The agents verify with their system roots, which this machine's need not
		// match; the host at least must be right.
		if err := leaf.VerifyHostname(host); err != nil {
			return nil, fmt.Errorf("--blobstore-tls-cert %s does not cover --blobstore-url's host: %w", f.tlsCert, err)
		}
		return out, nil
	}
	caPEM, err := os.ReadFile(f.tlsCA)
	if err != nil {
		return nil, fmt.Errorf("--blobstore-tls-ca: %w", err)
	}
	pool, err := signed.CertPool(caPEM)
	if err != nil {
		return nil, fmt.Errorf("--blobstore-tls-ca %s: %w", f.tlsCA, err)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, Intermediates: inter}); err != nil {
		return nil, fmt.Errorf("--blobstore-tls-cert %s, as agents would check it against --blobstore-tls-ca %s: %w", f.tlsCert, f.tlsCA, err)
	}
	out.caPEM = caPEM
	return out, nil
}

// certHosts are the names the server certificate is made for: the URL's host, and the
// listen address's when it is a specific one (agents on this machine, or a proxy, may
// dial that).
func certHosts(urlHost string, listen net.Addr) []string {
	hosts := []string{urlHost}
	if listen != nil {
		if h, _, err := net.SplitHostPort(listen.String()); err == nil {
			if ip := net.ParseIP(h); (ip == nil || !ip.IsUnspecified()) && h != "" && !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
	}
	return hosts
}

// blobCA is the director's blobstore CA.
type blobCA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
}

// loadOrMakeBlobCA loads the data dir's CA, making it on first start.
func loadOrMakeBlobCA(dataDir string, now time.Time) (*blobCA, error) {
	certPath, keyPath := filepath.Join(dataDir, blobCACertFile), filepath.Join(dataDir, blobCAKeyFile)
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	switch {
	case cerr == nil && kerr == nil:
		cert, key, err := parsePair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("blobstore CA %s, %s: %w; remove both to have a new CA made (VMs made with the old one are given it at the next deploy)", certPath, keyPath, err)
		}
		return &blobCA{cert: cert, key: key, certPEM: certPEM}, nil
	case errors.Is(cerr, os.ErrNotExist) && errors.Is(kerr, os.ErrNotExist):
	case cerr != nil && !errors.Is(cerr, os.ErrNotExist):
		return nil, fmt.Errorf("read blobstore CA: %w", cerr)
	case kerr != nil && !errors.Is(kerr, os.ErrNotExist):
		return nil, fmt.Errorf("read blobstore CA key: %w", kerr)
	default:
		// One without the other: making a new CA would silently break every VM that
		// trusts the old one.
		return nil, fmt.Errorf("blobstore CA: %s and %s must both exist; remove the one left to have a new CA made (VMs made with the old one are given it at the next deploy)", certPath, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("make blobstore CA: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("make blobstore CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "bosun blobstore CA", Organization: []string{"bosun"}},
		NotBefore:             now.Add(-blobCertBackdate),
		NotAfter:              now.Add(blobCAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("make blobstore CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("make blobstore CA: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writePair(certPath, keyPath, certPEM, key); err != nil {
		return nil, fmt.Errorf("write blobstore CA: %w", err)
	}
	return &blobCA{cert: cert, key: key, certPEM: certPEM}, nil
}

// blobCertSource serves the made server certificate, remaking it when it nears its end
// so that a director running for more than a year keeps serving a valid one.
type blobCertSource struct {
	dataDir string
	ca      *blobCA
	hosts   []string
	now     func() time.Time

	mu   sync.Mutex
	cert *tls.Certificate
	made bool
}

func (s *blobCertSource) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stale(s.cert.Leaf) {
		if err := s.make(); err != nil {
			return nil, err
		}
	}
	return s.cert, nil
}

// load reads the kept server certificate, or makes one when there is none, it is not
// the CA's, its hosts are not exactly the wanted ones (the URL's host changed), or it
// nears its end. The CA stays: agents already hold it.
func (s *blobCertSource) load() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	certPEM, cerr := os.ReadFile(filepath.Join(s.dataDir, blobTLSCertFile))
	keyPEM, kerr := os.ReadFile(filepath.Join(s.dataDir, blobTLSKeyFile))
	if cerr == nil && kerr == nil {
		if leaf, key, err := parsePair(certPEM, keyPEM); err == nil && s.fits(leaf) {
			s.cert = &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
			return nil
		}
	} else if (cerr != nil && !errors.Is(cerr, os.ErrNotExist)) || (kerr != nil && !errors.Is(kerr, os.ErrNotExist)) {
		return fmt.Errorf("read blobstore certificate: %w", errors.Join(cerr, kerr))
	}
	return s.make()
}

// fits says whether leaf can go on serving: the CA's, for exactly the wanted hosts, and
// not near its end.
func (s *blobCertSource) fits(leaf *x509.Certificate) bool {
	if leaf.CheckSignatureFrom(s.ca.cert) != nil {
		return false
	}
	if s.stale(leaf) {
		return false
	}
	var have []string
	for _, ip := range leaf.IPAddresses {
		have = append(have, ip.String())
	}
	have = append(have, leaf.DNSNames...)
	var want []string
	for _, h := range s.hosts {
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		want = append(want, h)
	}
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(have, want)
}

// stale says leaf nears its end and a new one would last longer: one the CA's own end
// cuts short is not remade at every handshake.
func (s *blobCertSource) stale(leaf *x509.Certificate) bool {
	return s.now().Add(blobCertRenew).After(leaf.NotAfter) && leaf.NotAfter.Before(s.ca.cert.NotAfter)
}

func (s *blobCertSource) make() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("make blobstore certificate: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return fmt.Errorf("make blobstore certificate: %w", err)
	}
	now := s.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: s.hosts[0], Organization: []string{"bosun"}},
		NotBefore:    now.Add(-blobCertBackdate),
		NotAfter:     now.Add(blobCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range s.hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if tmpl.NotAfter.After(s.ca.cert.NotAfter) {
		tmpl.NotAfter = s.ca.cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca.cert, key.Public(), s.ca.key)
	if err != nil {
		return fmt.Errorf("make blobstore certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("make blobstore certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writePair(filepath.Join(s.dataDir, blobTLSCertFile), filepath.Join(s.dataDir, blobTLSKeyFile), certPEM, key); err != nil {
		return fmt.Errorf("write blobstore certificate: %w", err)
	}
	s.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	s.made = true
	return nil
}

// parsePair parses a certificate and its PKCS#8 or EC key and checks they belong
// together. Its errors never quote the key.
func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("no PEM private key")
	}
	var key any
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	}
	if err != nil {
		return nil, nil, errors.New("private key: not a PKCS#8 or EC key")
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("private key: not a signing key")
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, errors.New("the private key is not the certificate's")
	}
	return cert, signer, nil
}

// writePair writes the key (0600) before the certificate, each atomically: a crash
// between leaves a key without its certificate, which the next start replaces (server)
// or reports (CA), never a certificate whose key is lost.
func writePair(certPath, keyPath string, certPEM []byte, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := writeFileMode(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileMode(certPath, certPEM, 0o644)
}

func writeFileMode(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	// Mode before content: the key is never readable by others, not even briefly.
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// logBlobstoreTLS says what the blobstore serves with; certificates only, never keys.
func logBlobstoreTLS(log *slog.Logger, dataDir string, f blobstoreFlags, t *blobstoreTLS) {
	switch {
	case f.tlsCert != "":
		log.Info("the blobstore serves TLS with the given certificate", "cert", f.tlsCert, "agents_get_ca", len(t.caPEM) > 0)
	case t.made:
		log.Info("made the blobstore's TLS server certificate", "cert", filepath.Join(dataDir, blobTLSCertFile), "ca", filepath.Join(dataDir, blobCACertFile))
	default:
		log.Info("the blobstore serves TLS with its kept certificate", "cert", filepath.Join(dataDir, blobTLSCertFile), "ca", filepath.Join(dataDir, blobCACertFile))
	}
}
