package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/lifecycle"
)

func TestTLS(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))
	tests := []struct {
		name    string
		tls     config.TLS
		on      bool
		typ     lifecycle.ErrorType
		field   string
		noError bool
	}{
		{name: "off", tls: config.TLS{}, on: false, noError: true},
		{name: "enabled with system roots", tls: config.TLS{Enabled: true}, on: true, noError: true},
		{name: "a server name turns it on", tls: config.TLS{ServerName: "redis.internal"}, on: true, noError: true},
		{name: "certificate without key", tls: config.TLS{CertFile: "c.pem"}, on: true, typ: lifecycle.TypeValidation, field: "tls.keyFile"},
		{name: "key without certificate", tls: config.TLS{KeyFile: "k.pem"}, on: true, typ: lifecycle.TypeValidation, field: "tls.certFile"},
		{name: "missing CA file", tls: config.TLS{CAFile: "/no/such/ca.pem"}, on: true, typ: lifecycle.TypeConfig, field: "tls.caFile"},
		{name: "CA file without a certificate", tls: config.TLS{CAFile: notPEM}, on: true, typ: lifecycle.TypeConfig, field: "tls.caFile"},
		{name: "missing client certificate", tls: config.TLS{CertFile: "/no/c.pem", KeyFile: "/no/k.pem"}, on: true, typ: lifecycle.TypeConfig, field: "tls.certFile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.on, tt.tls.On())
			tc, err := tt.tls.ClientConfig("cache")
			if tt.noError {
				require.NoError(t, err)
				assert.Equal(t, tt.tls.ServerName, tc.ServerName)
				assert.False(t, tc.InsecureSkipVerify)
				return
			}
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, tt.typ, ie.Type)
			assert.Equal(t, "cache", ie.Component)
			assert.Equal(t, tt.field, ie.Field)
		})
	}
}

func TestTLSLoadsRealFiles(t *testing.T) {
	pki, err := devstack.WriteTestPKI(t.TempDir())
	require.NoError(t, err)
	tc, err := config.TLS{CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "localhost"}.ClientConfig("db")
	require.NoError(t, err)
	assert.NotNil(t, tc.RootCAs)
	assert.Len(t, tc.Certificates, 1)
	assert.Equal(t, "localhost", tc.ServerName)
}
