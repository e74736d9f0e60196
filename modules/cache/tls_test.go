package cache

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/lifecycle"
)

type testPKI struct{ ca, serverCert, serverKey, clientCert, clientKey string }

// newTestPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all PEM, into dir.
func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	leaf := func(serial int64, usage x509.ExtKeyUsage, name string) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		keyDER, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	p := testPKI{ca: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf(2, x509.ExtKeyUsageServerAuth, "server")
	p.clientCert, p.clientKey = leaf(3, x509.ExtKeyUsageClientAuth, "client")
	return p
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A redis-server with a TLS port that requires client certificates.
func TestTLS(t *testing.T) {
	pki := newTestPKI(t, t.TempDir())
	tlsPort := freeTCPPort(t)
	startOwnRedis(t, devstack.RedisOptions{Args: []string{
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", pki.serverCert, "--tls-key-file", pki.serverKey,
		"--tls-ca-cert-file", pki.ca, "--tls-auth-clients", "yes",
	}})
	addr := "127.0.0.1:" + strconv.Itoa(tlsPort)
	ctx := context.Background()

	t.Run("mutual TLS works", func(t *testing.T) {
		cfg := testConfig(t, addr)
		cfg.TLS = TLSConfig{CAFile: pki.ca, CertFile: pki.clientCert, KeyFile: pki.clientKey}
		c, err := New(ctx, cfg)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.Set(ctx, "k", "over tls", time.Minute))
		v, err := c.Get(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, "over tls", v)
		v, err = c.GetCached(ctx, "k", time.Minute)
		require.NoError(t, err)
		assert.Equal(t, "over tls", v)
	})

	for _, tc := range []struct {
		name string
		tls  TLSConfig
		typ  lifecycle.ErrorType
	}{
		{"no client certificate", TLSConfig{CAFile: pki.ca}, lifecycle.TypeConnection},
		{"unknown server CA", TLSConfig{Enabled: true, CertFile: pki.clientCert, KeyFile: pki.clientKey}, lifecycle.TypeConnection},
		{"plain TCP to a TLS port", TLSConfig{}, lifecycle.TypeConnection},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, addr)
			cfg.TLS = tc.tls
			cfg.DialTimeout = config.Duration(time.Second)
			cfg.ReadTimeout = config.Duration(time.Second)
			_, err := New(ctx, cfg)
			require.Error(t, err)
			assert.Equal(t, tc.typ, lifecycle.TypeOf(err), "%v", err)
		})
	}

	t.Run("unreadable files are CONFIG errors naming the field", func(t *testing.T) {
		for field, tls := range map[string]TLSConfig{
			"tls.caFile":   {CAFile: filepath.Join(t.TempDir(), "missing.pem")},
			"tls.certFile": {CertFile: pki.ca, KeyFile: pki.ca}, // a CA is not a key pair
		} {
			cfg := testConfig(t, addr)
			cfg.TLS = tls
			_, err := New(ctx, cfg)
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie, field)
			assert.Equal(t, lifecycle.TypeConfig, ie.Type, field)
			assert.Equal(t, field, ie.Field)
		}
	})
}
