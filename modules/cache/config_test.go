package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/lifecycle"
)

func validConfig() Config {
	c := Config{}.Defaults()
	c.Addresses = []string{"127.0.0.1:6379"}
	return c
}

func TestDefaults(t *testing.T) {
	d := Config{}.Defaults()
	assert.Equal(t, ModeStandalone, d.Mode)
	assert.Equal(t, 10, d.Pool.Size, "design document: pool of 10")
	assert.Equal(t, 5, d.Pool.MinIdle, "design document: 5 idle")
	assert.Equal(t, 5*time.Second, d.DialTimeout.Std(), "design document: 5s connect timeout")
	assert.Equal(t, 5*time.Minute, d.ClientCache.TTL.Std(), "design document: local cache TTL 5 min")
	assert.Equal(t, time.Hour, d.DefaultTTL.Std(), "design document: Redis cache TTL 1 h")
	assert.Equal(t, "", d.KeyPrefix)
	err := d.Validate()
	require.ErrorIs(t, err, lifecycle.ErrValidation, "no address by default: a service must be pointed at its Redis")
	assert.Contains(t, err.Error(), `field "addresses"`)
	require.NoError(t, validConfig().Validate())
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		field  string
		mutate func(*Config)
	}{
		{"mode", func(c *Config) { c.Mode = "ring" }},
		{"addresses", func(c *Config) { c.Addresses = nil }},
		{"addresses[0]", func(c *Config) { c.Addresses = []string{"localhost"} }},
		{"addresses[1]", func(c *Config) { c.Mode = ModeCluster; c.Addresses = []string{"a:1", "b:0"} }},
		{"addresses", func(c *Config) { c.Addresses = []string{"a:1", "b:2"} }},
		{"sentinel.masterName", func(c *Config) { c.Mode = ModeSentinel }},
		{"sentinel.masterName", func(c *Config) { c.Sentinel.MasterName = "mymaster" }},
		{"db", func(c *Config) { c.DB = -1 }},
		{"db", func(c *Config) { c.Mode = ModeCluster; c.DB = 1 }},
		{"dialTimeout", func(c *Config) { c.DialTimeout = 0 }},
		{"readTimeout", func(c *Config) { c.ReadTimeout = -1 }},
		{"writeTimeout", func(c *Config) { c.WriteTimeout = 0 }},
		{"commandTimeout", func(c *Config) { c.CommandTimeout = 0 }},
		{"defaultTTL", func(c *Config) { c.DefaultTTL = 0 }},
		{"loadTimeout", func(c *Config) { c.LoadTimeout = 0 }},
		{"clientCache.ttl", func(c *Config) { c.ClientCache.TTL = 0 }},
		{"clientCache.sizePerConn", func(c *Config) { c.ClientCache.SizePerConn = 0 }},
		{"sentinel.refreshInterval", func(c *Config) { c.Sentinel.RefreshInterval = -1 }},
		{"keyPrefix", func(c *Config) { c.KeyPrefix = "{svc}:" }},
		{"pool.size", func(c *Config) { c.Pool.Size = 0 }},
		{"pool.minIdle", func(c *Config) { c.Pool.MinIdle = 11 }},
		{"pool.idleTimeout", func(c *Config) { c.Pool.IdleTimeout = -1 }},
		{"pool.pipelineMultiplex", func(c *Config) { c.Pool.PipelineMultiplex = 9 }},
		{"pool.ringScale", func(c *Config) { c.Pool.RingScale = 17 }},
		{"pool.maxFlushDelay", func(c *Config) { c.Pool.MaxFlushDelay = -1 }},
		{"tls.keyFile", func(c *Config) { c.TLS.CertFile = "c.pem" }},
		{"tls.certFile", func(c *Config) { c.TLS.KeyFile = "k.pem" }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			err := c.Validate()
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, lifecycle.TypeValidation, ie.Type)
			assert.Equal(t, ModuleName, ie.Component)
			assert.Equal(t, tc.field, ie.Field)
		})
	}
}

func TestParseDocuments(t *testing.T) {
	const key = "/config/dev/im-logic/cache"
	cfg, err := config.Parse[Config](ModuleName, config.Layer{Key: key, Data: []byte(`{
		"mode": "sentinel", "addresses": ["s1:26379", "s2:26379"],
		"sentinel": {"masterName": "mymaster", "password": "sentinel-pw"},
		"password": "${IMINFRA_TEST_REDIS_PASSWORD}", "db": 2,
		"commandTimeout": "250ms", "keyPrefix": "im-logic:",
		"pool": {"size": 20}, "clientCache": {"sizePerConn": 1048576}
	}`)})
	require.Error(t, err, "an unset environment variable is an error")

	t.Setenv("IMINFRA_TEST_REDIS_PASSWORD", "pw-from-env")
	cfg, err = config.Parse[Config](ModuleName, config.Layer{Key: key, Data: []byte(`{
		"mode": "sentinel", "addresses": ["s1:26379", "s2:26379"],
		"sentinel": {"masterName": "mymaster", "password": "sentinel-pw"},
		"password": "${IMINFRA_TEST_REDIS_PASSWORD}", "db": 2,
		"commandTimeout": "250ms", "keyPrefix": "im-logic:",
		"pool": {"size": 20}, "clientCache": {"sizePerConn": 1048576}
	}`)})
	require.NoError(t, err)
	assert.Equal(t, "pw-from-env", cfg.Password.Reveal())
	assert.Equal(t, 250*time.Millisecond, cfg.CommandTimeout.Std())
	assert.Equal(t, 20, cfg.Pool.Size)
	assert.Equal(t, 5, cfg.Pool.MinIdle, "unset fields of an object keep their defaults")
	assert.Equal(t, 5*time.Minute, cfg.ClientCache.TTL.Std())

	for _, tc := range []struct{ doc, field string }{
		{`{"addresses": ["a:1"], "poolSize": 10}`, "poolSize"},
		{`{"addresses": ["a:1"], "pool": {"max": 1}}`, "pool.max"},
		{`{"addresses": ["a:1"], "db": "zero"}`, "db"},
		{`{"addresses": ["a:1"], "commandTimeout": 5}`, ""},
	} {
		_, err := config.Parse[Config](ModuleName, config.Layer{Key: key, Data: []byte(tc.doc)})
		var ie *lifecycle.InfraError
		require.ErrorAs(t, err, &ie, tc.doc)
		assert.Equal(t, lifecycle.TypeConfig, ie.Type, tc.doc)
		if tc.field != "" {
			assert.Equal(t, tc.field, ie.Field, tc.doc)
		}
	}
}

func TestConfigNeverShowsPasswords(t *testing.T) {
	c := validConfig()
	c.Password = "hunter2"
	c.Sentinel.Password = "hunter3"
	for _, s := range []string{
		func() string { b, _ := json.Marshal(c); return string(b) }(),
		fmt.Sprintf("%v %+v %#v", c, c, c),
	} {
		assert.NotContains(t, s, "hunter2")
		assert.NotContains(t, s, "hunter3")
	}
}

func TestUnreachableAddressIsAConnectionErrorWithoutThePassword(t *testing.T) {
	cfg := validConfig()
	cfg.Addresses = []string{"127.0.0.1:1"} // nothing listens on port 1
	cfg.Password = "hunter2"
	cfg.DialTimeout = config.Duration(time.Second)
	log, logs := observedLogger()
	began := time.Now()
	_, err := New(context.Background(), cfg, WithLogger(log))
	require.Error(t, err)
	assert.Less(t, time.Since(began), 2*time.Second)
	var ie *lifecycle.InfraError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, lifecycle.TypeConnection, ie.Type)
	assert.Equal(t, ModuleName, ie.Component)
	assert.Contains(t, err.Error(), "127.0.0.1:1", "the error names the address")
	assert.NotContains(t, err.Error(), "hunter2")
	for _, e := range logs.All() {
		assert.NotContains(t, fmt.Sprintf("%v %v", e.Message, e.ContextMap()), "hunter2")
	}
}

func TestStartHonoursCtx(t *testing.T) {
	// A server that accepts connections but never answers (paused): only
	// New's ctx can end the handshake early.
	srv := startOwnRedis(t, devstack.RedisOptions{})
	require.NoError(t, srv.Pause())
	defer func() { require.NoError(t, srv.Resume()) }()
	cfg := testConfig(t, srv.Addr())
	cfg.ReadTimeout = config.Duration(10 * time.Second)
	cfg.WriteTimeout = config.Duration(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := New(ctx, cfg)
	require.ErrorIs(t, err, lifecycle.ErrConnection)
	assert.Less(t, time.Since(began), time.Second, "New gives up when its ctx ends")
}

func TestWrongPasswordIsAClearError(t *testing.T) {
	srv := startOwnRedis(t, devstack.RedisOptions{Password: "right-one"})
	for _, tc := range []struct {
		name, password string
	}{{"wrong", "hunter2"}, {"missing", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, srv.Addr())
			cfg.Password = config.Secret(tc.password)
			_, err := New(context.Background(), cfg)
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, lifecycle.TypeConfig, ie.Type)
			assert.Equal(t, "password", ie.Field)
			assert.Contains(t, err.Error(), "refused the credentials")
			assert.NotContains(t, err.Error(), "hunter2")
			assert.NotContains(t, err.Error(), "right-one")
		})
	}
	cfg := testConfig(t, srv.Addr())
	cfg.Password = "right-one"
	c, err := New(context.Background(), cfg)
	require.NoError(t, err)
	require.NoError(t, c.Ping(context.Background()))
	require.NoError(t, c.Close())
}

func TestClusterModeAgainstAPlainServerIsRefused(t *testing.T) {
	addr, mini := testRedis(t)
	if mini {
		t.Skip("miniredis answers CLUSTER commands differently")
	}
	cfg := testConfig(t, addr)
	cfg.Mode = ModeCluster
	_, err := New(context.Background(), cfg)
	var ie *lifecycle.InfraError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, "mode", ie.Field)
}

func TestUpdateConfigAppliesLiveFieldsAndLogsRestartFields(t *testing.T) {
	addr, _ := testRedis(t)
	cfg := testConfig(t, addr)
	log, logs := observedLogger()
	c, err := New(context.Background(), cfg, WithLogger(log))
	require.NoError(t, err)
	oldPrefix := cfg.KeyPrefix
	newPrefix := testPrefix(t)
	t.Cleanup(func() {
		deleteKeys(t, c.Client(), oldPrefix)
		deleteKeys(t, c.Client(), newPrefix)
		_ = c.Close()
	})
	ctx := context.Background()

	// The first call of a subscription passes (current, current): nothing
	// is logged.
	require.NoError(t, c.UpdateConfig(cfg))
	assert.Zero(t, logs.FilterMessage("applied cache config change").Len())

	next := cfg
	next.KeyPrefix = newPrefix
	next.CommandTimeout = config.Duration(123 * time.Millisecond)
	next.Pool.Size = 50
	next.Password = "changed"
	require.NoError(t, c.UpdateConfig(next))
	assert.Equal(t, 123*time.Millisecond, c.live.Load().timeout)
	require.NoError(t, c.Set(ctx, "k", "v", time.Minute))
	v, err := c.Client().Do(ctx, c.Client().B().Get().Key(newPrefix+"k").Build()).ToString()
	require.NoError(t, err)
	assert.Equal(t, "v", v, "the new prefix applies to the next call")

	applied := logs.FilterMessage("applied cache config change").All()
	var fields []string
	for _, e := range applied {
		fields = append(fields, e.ContextMap()["field"].(string))
	}
	assert.ElementsMatch(t, []string{"keyPrefix", "commandTimeout"}, fields)
	restart := logs.FilterMessageSnippet("apply only after a restart").All()
	require.Len(t, restart, 1)
	assert.Equal(t, "warn", restart[0].Level.String())
	assert.ElementsMatch(t, []any{"password", "pool.size"}, restart[0].ContextMap()["fields"])
	for _, e := range logs.All() {
		assert.NotContains(t, fmt.Sprintf("%v", e.ContextMap()), "changed", "secrets are never logged")
	}

	bad := next
	bad.CommandTimeout = 0
	require.ErrorIs(t, c.UpdateConfig(bad), lifecycle.ErrValidation)
	assert.Equal(t, 123*time.Millisecond, c.live.Load().timeout, "an invalid config changes nothing")
}

func TestCallsBeforeStartAndAfterClose(t *testing.T) {
	c, err := newClient()
	require.NoError(t, err)
	_, err = c.Get(context.Background(), "k")
	require.ErrorIs(t, err, lifecycle.ErrConnection)
	assert.Equal(t, lifecycle.Unhealthy, NewHealthChecker(c).Check(context.Background()).State)
	assert.Nil(t, c.Client())
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is idempotent")

	d := newTestClient(t)
	require.NoError(t, d.Close())
	err = d.Set(context.Background(), "k", "v", 0)
	require.ErrorIs(t, err, lifecycle.ErrConnection)
	assert.False(t, errors.Is(err, ErrMiss))
}
