package manifest

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// certKeyBits is the RSA size of generated certificates unless options.key_length says
// otherwise: CredHub's default, the generator BOSH directors use. (BOSH's CLI uses 3072,
// which costs eight times as much to generate; `key_length: 3072` asks for it.)
const certKeyBits = 2048

// keyBits is the key size a certificate variable asks for.
func keyBits(def VarDef) int {
	if n, ok := def.Options.Get("key_length").scalarInt(); ok && (n == 2048 || n == 3072 || n == 4096) {
		return n
	}
	return certKeyBits
}

const passwordAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

func generateValue(def VarDef, s *Store) (*Node, error) {
	pos := Pos{File: s.path}
	str := func(v string) *Node { return Scalar(v, pos) }
	mapOf := func(kv ...string) *Node {
		m := &Node{Kind: MapNode, Pos: pos}
		for i := 0; i < len(kv); i += 2 {
			m.Pairs = append(m.Pairs, Pair{str(kv[i]), str(kv[i+1])})
		}
		return m
	}
	switch def.Type {
	case "password":
		length := 20
		if n, ok := def.Options.Get("length").scalarInt(); ok && n > 0 && n <= 4096 {
			length = n
		}
		p, err := randomString(length)
		if err != nil {
			return nil, err
		}
		return str(p), nil
	case "user":
		name, _ := def.Options.Get("username").scalarString()
		if name == "" {
			var err error
			if name, err = randomString(20); err != nil {
				return nil, err
			}
		}
		p, err := randomString(20)
		if err != nil {
			return nil, err
		}
		salt, err := randomString(16)
		if err != nil {
			return nil, err
		}
		return mapOf("username", name, "password", p, "password_hash", sha512Crypt(p, salt)), nil
	case "rsa", "ssh":
		k, err := s.key(def.Name, 2048)
		if err != nil {
			return nil, err
		}
		pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			return nil, err
		}
		priv := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
		if def.Type == "rsa" {
			return mapOf("private_key", priv, "public_key", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))), nil
		}
		sp, err := ssh.NewPublicKey(&k.PublicKey)
		if err != nil {
			return nil, err
		}
		sum := md5.Sum(sp.Marshal())
		fp := make([]string, len(sum))
		for i, b := range sum {
			fp[i] = fmt.Sprintf("%02x", b)
		}
		return mapOf("private_key", priv, "public_key", string(ssh.MarshalAuthorizedKey(sp)), "public_key_fingerprint", strings.Join(fp, ":")), nil
	case "certificate":
		return generateCert(def, s, mapOf)
	}
	return nil, fmt.Errorf("bosun generates password, certificate, rsa, ssh and user variables, not %q", def.Type)
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	max := big.NewInt(int64(len(passwordAlphabet)))
	for i := range b {
		r, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		b[i] = passwordAlphabet[r.Int64()]
	}
	return string(b), nil
}

func generateCert(def VarDef, s *Store, mapOf func(...string) *Node) (*Node, error) {
	o := def.Options
	cn, _ := o.Get("common_name").scalarString()
	isCA, _ := o.Get("is_ca").scalarBool()
	caName, _ := o.Get("ca").scalarString()
	org := "Cloud Foundry"
	if v, ok := o.Get("organization").scalarString(); ok {
		org = v
	}
	days := 365
	if d, ok := o.Get("duration").scalarInt(); ok && d > 0 {
		days = d
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{org}, CommonName: cn},
		NotBefore:             now,
		NotAfter:              now.Add(time.Duration(days) * 24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	if alts := o.Get("alternative_names"); alts != nil {
		if alts.Kind != SeqNode {
			return nil, fmt.Errorf("options.alternative_names must be a list")
		}
		for _, a := range alts.Items {
			name := fmt.Sprint(a.Value)
			if ip := net.ParseIP(name); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, name)
			}
		}
	}
	if ekus := o.Get("extended_key_usage"); ekus != nil && ekus.Kind == SeqNode {
		for _, e := range ekus.Items {
			switch e.Value {
			case "client_auth":
				tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
			case "server_auth":
				tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
			case "code_signing":
				tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageCodeSigning)
			case "email_protection":
				tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageEmailProtection)
			case "timestamping":
				tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageTimeStamping)
			default:
				return nil, fmt.Errorf("unknown extended_key_usage %v (expected client_auth, server_auth, code_signing, email_protection or timestamping)", e.Value)
			}
		}
	}
	if v := def.Options.Get("key_length"); v != nil && keyBits(def) == certKeyBits && v.Value != certKeyBits {
		return nil, fmt.Errorf("options.key_length must be 2048, 3072 or 4096, not %v", v.Value)
	}
	key, err := s.key(def.Name, keyBits(def))
	if err != nil {
		return nil, err
	}
	parent, signer := tmpl, key
	var caPEM string
	if caName != "" {
		caVal, found := s.static[caName]
		if !found {
			var err error
			if caVal, found, err = s.Get(VarDef{Name: caName}); err != nil {
				return nil, err
			}
		}
		if !found {
			return nil, fmt.Errorf("its signing CA %q is not given, not in the vars store and not declared before it", caName)
		}
		caCertPEM, _ := caVal.Get("certificate").scalarString()
		caKeyPEM, _ := caVal.Get("private_key").scalarString()
		if parent, signer, err = s.signingCA(caCertPEM, caKeyPEM); err != nil {
			return nil, fmt.Errorf("reading signing CA %q: %w", caName, err)
		}
		caPEM = caCertPEM
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	if caPEM == "" {
		caPEM = certPEM
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	return mapOf("ca", caPEM, "certificate", certPEM, "private_key", keyPEM), nil
}

func parseCA(certPEM, keyPEM string) (*x509.Certificate, *rsa.PrivateKey, error) {
	cb, _ := pem.Decode([]byte(certPEM))
	kb, _ := pem.Decode([]byte(keyPEM))
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("certificate or private_key is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	var key *rsa.PrivateKey
	if key, err = x509.ParsePKCS1PrivateKey(kb.Bytes); err != nil {
		k, err2 := x509.ParsePKCS8PrivateKey(kb.Bytes)
		rk, ok := k.(*rsa.PrivateKey)
		if err2 != nil || !ok {
			return nil, nil, fmt.Errorf("private_key: %w", err)
		}
		key = rk
	}
	return cert, key, nil
}

func (n *Node) scalarBool() (bool, bool) {
	if n == nil || n.Kind != ScalarNode {
		return false, false
	}
	b, ok := n.Value.(bool)
	return b, ok
}

func (n *Node) scalarInt() (int, bool) {
	if n == nil || n.Kind != ScalarNode {
		return 0, false
	}
	i, ok := n.Value.(int)
	return i, ok
}
