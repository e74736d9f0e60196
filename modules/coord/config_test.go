package coord

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

func cfgEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigLoadFromEnv(t *testing.T) {
	cfg, err := LoadConfig(cfgEnv(map[string]string{
		EnvEndpoints:           " http://10.0.0.1:2379, https://etcd-1:2379 ,,",
		EnvUsername:            "svc",
		EnvPassword:            "s3cret pw",
		EnvTLSCA:               "/ca.pem",
		EnvTLSCert:             "/c.pem",
		EnvTLSKey:              "/k.pem",
		EnvTLSServerName:       "etcd.internal",
		EnvDialTimeout:         "2s",
		EnvProbeTimeout:        "750ms",
		EnvReconnectBackoffMax: "1s",
	}))
	require.NoError(t, err)
	assert.Equal(t, []string{"http://10.0.0.1:2379", "https://etcd-1:2379"}, cfg.Endpoints)
	assert.Equal(t, "svc", cfg.Username)
	assert.Equal(t, "s3cret pw", cfg.Password.Reveal())
	assert.Equal(t, TLSConfig{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem", ServerName: "etcd.internal"}, cfg.TLS)
	assert.Equal(t, 2*time.Second, cfg.DialTimeout.Std())
	assert.Equal(t, 750*time.Millisecond, cfg.ProbeTimeout.Std())
	assert.Equal(t, time.Second, cfg.ReconnectBackoffMax.Std())
	// Unset variables keep their defaults.
	assert.Equal(t, DefaultRequestTimeout, cfg.RequestTimeout.Std())
	assert.Equal(t, DefaultKeepaliveTime, cfg.KeepaliveTime.Std())
	assert.Equal(t, DefaultKeepaliveTimeout, cfg.KeepaliveTimeout.Std())
}

func TestConfigLoadBadInput(t *testing.T) {
	base := map[string]string{EnvEndpoints: "http://127.0.0.1:2379"}
	cases := []struct {
		name  string
		env   map[string]string
		field string
	}{
		{"no endpoints", map[string]string{}, "endpoints"},
		{"blank endpoints", map[string]string{EnvEndpoints: " , "}, "endpoints"},
		{"bad duration", map[string]string{EnvDialTimeout: "5"}, "dialTimeout"},
		{"negative keepalive", map[string]string{EnvKeepaliveTime: "-1s"}, "keepaliveTime"},
		{"zero probe", map[string]string{EnvProbeTimeout: "0s"}, "probeTimeout"},
		{"password without user", map[string]string{EnvPassword: "pw"}, "username"},
		{"cert without key", map[string]string{EnvTLSCert: "/c.pem"}, "tls.keyFile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tc.env {
				env[k] = v
			}
			if tc.field == "endpoints" {
				env[EnvEndpoints] = tc.env[EnvEndpoints]
			}
			_, err := LoadConfig(cfgEnv(env))
			cfgRequireValidation(t, err, tc.field)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		c := Defaults()
		c.Endpoints = []string{"http://127.0.0.1:2379"}
		return c
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		field  string // "" means valid
	}{
		{"defaults with endpoint", func(*Config) {}, ""},
		{"bare host:port", func(c *Config) { c.Endpoints = []string{"etcd-0:2379"} }, ""},
		{"https", func(c *Config) { c.Endpoints = []string{"https://etcd-0:2379/"} }, ""},
		{"unix socket", func(c *Config) { c.Endpoints = []string{"unix:///run/etcd.sock"} }, ""},
		{"keepalive disabled", func(c *Config) { c.KeepaliveTime = 0 }, ""},
		{"auth", func(c *Config) { c.Username, c.Password = "u", "p" }, ""},
		{"mtls", func(c *Config) { c.TLS = TLSConfig{CertFile: "c", KeyFile: "k"} }, ""},
		{"no endpoints", func(c *Config) { c.Endpoints = nil }, "endpoints"},
		{"empty endpoint", func(c *Config) { c.Endpoints = []string{""} }, "endpoints[0]"},
		{"bad scheme", func(c *Config) { c.Endpoints = []string{"ftp://h:1"} }, "endpoints[0]"},
		{"no port", func(c *Config) { c.Endpoints = []string{"http://10.0.0.1"} }, "endpoints[0]"},
		{"bad port", func(c *Config) { c.Endpoints = []string{"http://h:99999"} }, "endpoints[0]"},
		{"port not a number", func(c *Config) { c.Endpoints = []string{"h:x"} }, "endpoints[0]"},
		{"missing host", func(c *Config) { c.Endpoints = []string{":2379"} }, "endpoints[0]"},
		{"path", func(c *Config) { c.Endpoints = []string{"http://h:1/v3"} }, "endpoints[0]"},
		{"second endpoint bad", func(c *Config) { c.Endpoints = []string{"h:1", "h"} }, "endpoints[1]"},
		{"unparsable url", func(c *Config) { c.Endpoints = []string{"http://h:1/%zz"} }, "endpoints[0]"},
		{"negative dial", func(c *Config) { c.DialTimeout = -1 }, "dialTimeout"},
		{"zero request", func(c *Config) { c.RequestTimeout = 0 }, "requestTimeout"},
		{"zero probe", func(c *Config) { c.ProbeTimeout = 0 }, "probeTimeout"},
		{"zero backoff", func(c *Config) { c.ReconnectBackoffMax = 0 }, "reconnectBackoffMax"},
		{"negative keepalive", func(c *Config) { c.KeepaliveTime = config.Duration(-time.Second) }, "keepaliveTime"},
		{"negative keepalive timeout", func(c *Config) { c.KeepaliveTimeout = -1 }, "keepaliveTimeout"},
		{"user without password", func(c *Config) { c.Username = "u" }, "password"},
		{"password without user", func(c *Config) { c.Password = "p" }, "username"},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "c" }, "tls.keyFile"},
		{"key without cert", func(c *Config) { c.TLS.KeyFile = "k" }, "tls.certFile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mutate(&c)
			err := c.Validate()
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			cfgRequireValidation(t, err, tc.field)
		})
	}
}

func TestConfigSecretsNeverShown(t *testing.T) {
	const pw = "hunter2-very-secret"
	c := Defaults()
	c.Endpoints = []string{"http://127.0.0.1:2379"}
	c.Username, c.Password = "svc", pw
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		assert.NotContains(t, s, pw)
	}
	// A password typed into an endpoint URL is refused without repeating it.
	c.Endpoints = []string{"http://svc:" + pw + "@10.0.0.1:2379"}
	err := c.Validate()
	cfgRequireValidation(t, err, "endpoints[0]")
	assert.NotContains(t, err.Error(), pw)
	c.Endpoints = []string{"http://svc:" + pw + "@h:1/%zz"}
	err = c.Validate()
	require.Error(t, err)
	assert.NotContains(t, err.Error(), pw)
}

func cfgRequireValidation(t *testing.T, err error, field string) {
	t.Helper()
	require.Error(t, err)
	require.True(t, errors.Is(err, lifecycle.ErrValidation), "want VALIDATION, got %v", err)
	var ie *lifecycle.InfraError
	require.True(t, errors.As(err, &ie))
	assert.Equal(t, ModuleName, ie.Component)
	assert.Equal(t, field, ie.Field, "error: %v", err)
	assert.False(t, strings.Contains(err.Error(), "hunter2"))
}
