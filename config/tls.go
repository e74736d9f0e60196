package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/gochat/im-infra/lifecycle"
)

// TLS is the client side of a TLS connection, as every component's config
// writes it under "tls": PEM files of the CAs to trust and of a client
// certificate for mutual TLS. TLS is on when Enabled is set or any other
// field is; with no CAFile the system roots verify the server.
type TLS struct {
	Enabled bool `json:"enabled,omitempty"`
	// CAFile verifies the server; empty means the system roots.
	CAFile string `json:"caFile,omitempty"`
	// CertFile and KeyFile are the client certificate for mutual TLS; both
	// or neither.
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// ServerName overrides the host name checked in the server certificate.
	ServerName string `json:"serverName,omitempty"`
	// InsecureSkipVerify encrypts without checking the server certificate.
	// Never in production.
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// On reports whether TLS is to be used.
func (t TLS) On() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify
}

// Validate checks what can be checked without reading the files: a client
// certificate and its key go together. Errors are VALIDATION errors of
// component naming tls.certFile or tls.keyFile.
func (t TLS) Validate(component string) error {
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return lifecycle.ValidationError(component, "tls.keyFile", "tls.certFile is set but tls.keyFile is not: set both for mutual TLS, or neither")
	case t.KeyFile != "" && t.CertFile == "":
		return lifecycle.ValidationError(component, "tls.certFile", "tls.keyFile is set but tls.certFile is not: set both for mutual TLS, or neither")
	}
	return nil
}

// ClientConfig reads the files and returns the *tls.Config to dial with
// (TLS 1.2 at least). An unreadable or unusable file is a CONFIG error of
// component naming the field.
func (t TLS) ClientConfig(component string) (*tls.Config, error) {
	if err := t.Validate(component); err != nil {
		return nil, err
	}
	//nolint:gosec // InsecureSkipVerify is an explicit, documented opt-in.
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, lifecycle.ConfigError(component, "tls.caFile", "cannot read the CA file", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, lifecycle.ConfigError(component, "tls.caFile", fmt.Sprintf("%s holds no PEM certificate", t.CAFile), nil)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, lifecycle.ConfigError(component, "tls.certFile", "cannot load the client certificate and key", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
