package api

import (
	"crypto/tls"
	"fmt"
)

// ServerTLS loads c's certificate and key into a server TLS configuration, or returns
// nil when c names none (plain HTTP).
func (c Config) ServerTLS() (*tls.Config, error) {
	if c.TLS.Cert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("API TLS certificate %s and key %s: %w", c.TLS.Cert, c.TLS.Key, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
