package cache

import (
	"context"
	"net"
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

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A redis-server with a TLS port that requires client certificates.
func TestTLS(t *testing.T) {
	pki, err := devstack.WriteTestPKI(t.TempDir())
	require.NoError(t, err)
	tlsPort := freeTCPPort(t)
	startOwnRedis(t, devstack.RedisOptions{Args: []string{
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", pki.ServerCert, "--tls-key-file", pki.ServerKey,
		"--tls-ca-cert-file", pki.CA, "--tls-auth-clients", "yes",
	}})
	addr := "127.0.0.1:" + strconv.Itoa(tlsPort)
	ctx := context.Background()

	t.Run("mutual TLS works", func(t *testing.T) {
		cfg := testConfig(t, addr)
		cfg.TLS = TLSConfig{CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}
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
		{"no client certificate", TLSConfig{CAFile: pki.CA}, lifecycle.TypeConnection},
		{"unknown server CA", TLSConfig{Enabled: true, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}, lifecycle.TypeConnection},
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
			"tls.certFile": {CertFile: pki.CA, KeyFile: pki.CA}, // a CA is not a key pair
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
