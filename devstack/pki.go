package devstack

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TestPKI names PEM files of a throwaway certificate authority, a server
// certificate for 127.0.0.1 and a client certificate it signed, for TLS
// and mutual-TLS tests against devstack and local servers. They are valid
// for an hour.
type TestPKI struct {
	CA                    string // the CA's certificate
	ServerCert, ServerKey string // for 127.0.0.1 and localhost
	ClientCert, ClientKey string // a client certificate (CN "client")
}

// WriteTestPKI writes a fresh TestPKI into dir.
func WriteTestPKI(dir string) (TestPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return TestPKI{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "devstack test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return TestPKI{}, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return TestPKI{}, err
	}
	write := func(name, typ string, der []byte) (string, error) {
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
	}
	leaf := func(serial int64, usage x509.ExtKeyUsage, name string) (cert, key string, err error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			return "", "", err
		}
		keyDER, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return "", "", err
		}
		if cert, err = write(name+".pem", "CERTIFICATE", der); err != nil {
			return "", "", err
		}
		key, err = write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
		return cert, key, err
	}
	var p TestPKI
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return p, fmt.Errorf("devstack: pki dir: %w", err)
	}
	if p.CA, err = write("ca.pem", "CERTIFICATE", caDER); err != nil {
		return p, err
	}
	if p.ServerCert, p.ServerKey, err = leaf(2, x509.ExtKeyUsageServerAuth, "server"); err != nil {
		return p, err
	}
	p.ClientCert, p.ClientKey, err = leaf(3, x509.ExtKeyUsageClientAuth, "client")
	return p, err
}
