package db

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{}.Defaults()
	assert.Equal(t, DriverMySQL, c.Driver)
	assert.Equal(t, 25, c.MaxOpenConns)
	assert.Equal(t, 10, c.MaxIdleConns)
	assert.Equal(t, "1h0m0s", c.ConnMaxLifetime.Std().String())
	assert.Equal(t, "30m0s", c.ConnMaxIdleTime.Std().String())
	assert.Equal(t, "200ms", c.SlowQueryThreshold.Std().String())
	assert.Equal(t, LogWarn, c.LogLevel)
	// The defaults say nothing about where the database is: a service
	// must be told, never pointed at a localhost it did not ask for.
	var ie *lifecycle.InfraError
	require.ErrorAs(t, c.Validate(), &ie)
	assert.Equal(t, "host", ie.Field)
}

func TestConfigValidate(t *testing.T) {
	mysqlOK := func(c *Config) { c.Host, c.User = "db.internal", "app" }
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" = valid
	}{
		{"mysql structured", mysqlOK, ""},
		{"mysql dsn", func(c *Config) { c.DSN = "app:pw@tcp(db:3306)/orders" }, ""},
		{"postgres dsn", func(c *Config) { c.Driver, c.DSN = DriverPostgres, "host=db user=app dbname=orders" }, ""},
		{"postgres url", func(c *Config) { c.Driver, c.DSN = DriverPostgres, "postgres://app:pw@db:5432/orders?sslmode=require" }, ""},
		{"postgres structured with params", func(c *Config) {
			mysqlOK(c)
			c.Driver, c.Params = DriverPostgres, map[string]string{"sslmode": "disable", "search_path": "app"}
		}, ""},
		{"sqlite file", func(c *Config) { c.Driver, c.Database = DriverSQLite, "/var/lib/app/app.db" }, ""},
		{"unknown driver", func(c *Config) { mysqlOK(c); c.Driver = "oracle" }, "driver"},
		{"no address", func(*Config) {}, "host"},
		{"no user", func(c *Config) { c.Host = "db" }, "user"},
		{"dsn and host", func(c *Config) { mysqlOK(c); c.DSN = "app@tcp(db)/x" }, "dsn"},
		{"port out of range", func(c *Config) { mysqlOK(c); c.Port = 70000 }, "port"},
		{"bad mysql dsn", func(c *Config) { c.DSN = "app:pw@db:3306/orders" }, "dsn"},
		{"bad mysql param", func(c *Config) { mysqlOK(c); c.Params = map[string]string{"parseTime": "maybe"} }, "params"},
		{"bad postgres dsn", func(c *Config) { c.Driver, c.DSN = DriverPostgres, "postgres://db:notaport/x" }, "dsn"},
		{"sqlite without file", func(c *Config) { c.Driver = DriverSQLite }, "database"},
		{"sqlite in memory", func(c *Config) { c.Driver, c.Database = DriverSQLite, ":memory:" }, "database"},
		{"sqlite with host", func(c *Config) { c.Driver, c.Database, c.Host = DriverSQLite, "a.db", "db" }, "host"},
		{"sqlite with tls", func(c *Config) { c.Driver, c.Database, c.TLS.Mode = DriverSQLite, "a.db", TLSRequire }, "tls"},
		{"tls mode", func(c *Config) { mysqlOK(c); c.TLS.Mode = "maybe" }, "tls.mode"},
		{"tls cert without key", func(c *Config) { mysqlOK(c); c.TLS = TLSConfig{Mode: TLSVerifyFull, CertFile: "c.pem"} }, "tls.certFile"},
		{"tls disabled with files", func(c *Config) { mysqlOK(c); c.TLS = TLSConfig{Mode: TLSDisable, CAFile: "ca.pem"} }, "tls.mode"},
		{"zero pool", func(c *Config) { mysqlOK(c); c.MaxOpenConns = 0 }, "maxOpenConns"},
		{"negative idle", func(c *Config) { mysqlOK(c); c.MaxIdleConns = -1 }, "maxIdleConns"},
		{"idle above open is capped, not refused", func(c *Config) { mysqlOK(c); c.MaxOpenConns, c.MaxIdleConns = 5, 10 }, ""},
		{"negative lifetime", func(c *Config) { mysqlOK(c); c.ConnMaxLifetime = -1 }, "connMaxLifetime"},
		{"negative idle time", func(c *Config) { mysqlOK(c); c.ConnMaxIdleTime = -1 }, "connMaxIdleTime"},
		{"negative slow threshold", func(c *Config) { mysqlOK(c); c.SlowQueryThreshold = -1 }, "slowQueryThreshold"},
		{"zero slow threshold turns it off", func(c *Config) { mysqlOK(c); c.SlowQueryThreshold = 0 }, ""},
		{"zero dial timeout", func(c *Config) { mysqlOK(c); c.DialTimeout = 0 }, "dialTimeout"},
		{"log level", func(c *Config) { mysqlOK(c); c.LogLevel = "debug" }, "logLevel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{}.Defaults()
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				assert.NoError(t, err)
				return
			}
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie, "%v", err)
			assert.Equal(t, lifecycle.TypeValidation, ie.Type)
			assert.Equal(t, ModuleName, ie.Component)
			assert.Equal(t, tt.field, ie.Field, err.Error())
		})
	}
}

// TestConfigErrorsNeverShowThePassword feeds malformed DSNs and params that
// carry a password through Validate and New.
func TestConfigErrorsNeverShowThePassword(t *testing.T) {
	for _, c := range []Config{
		{Driver: DriverMySQL, DSN: config.Secret("app:" + password + "@db:3306/orders")},
		{Driver: DriverMySQL, DSN: config.Secret("app:" + password + "@tcp(db:3306)/orders?timeout=soon")},
		{Driver: DriverPostgres, DSN: config.Secret("postgres://app:" + password + "@db:port/orders")},
		{Driver: DriverPostgres, DSN: config.Secret("host=db user=app password=" + password + " connect_timeout=soon")},
		{Driver: DriverMySQL, Host: "db", User: "app", Password: password, Params: map[string]string{"readTimeout": "x"}},
	} {
		name := fmt.Sprintf("%s %s", c.Driver, c.DSN)
		t.Run(name, func(t *testing.T) {
			d := Config{}.Defaults()
			d.Driver, d.DSN, d.Host, d.User, d.Password, d.Params = c.Driver, c.DSN, c.Host, c.User, c.Password, c.Params
			err := d.Validate()
			require.Error(t, err)
			assert.True(t, errors.Is(err, lifecycle.ErrValidation), err.Error())
			assert.NotContains(t, err.Error(), password)
			assert.NotContains(t, fmt.Sprintf("%+v %#v %v", err, d, d), password)
			_, err = New(t.Context(), d)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), password)
		})
	}
}

// TestConfigDocuments parses documents as the config center would.
func TestConfigDocuments(t *testing.T) {
	cfg, err := config.Parse[Config](ModuleName,
		config.Layer{Key: "global", Data: []byte(`{"driver":"postgres","host":"db","user":"app","password":"x","maxOpenConns":50}`)},
		config.Layer{Key: "svc", Data: []byte(`{"database":"orders","params":{"sslmode":"require"},"slowQueryThreshold":"1s"}`)},
	)
	require.NoError(t, err)
	assert.Equal(t, DriverPostgres, cfg.Driver)
	assert.Equal(t, 50, cfg.MaxOpenConns)
	assert.Equal(t, 10, cfg.MaxIdleConns)
	assert.Equal(t, "orders", cfg.Database)
	assert.Equal(t, "1s", cfg.SlowQueryThreshold.Std().String())

	_, err = config.Parse[Config](ModuleName, config.Layer{Key: "svc", Data: []byte(`{"maxOpenCons":5}`)})
	assert.ErrorIs(t, err, lifecycle.ErrConfig, "unknown fields are refused")
	_, err = config.Parse[Config](ModuleName, config.Layer{Key: "svc", Data: []byte(`{"host":"db","user":"u","dialTimeout":5}`)})
	assert.ErrorIs(t, err, lifecycle.ErrConfig, "durations are strings")
}

func TestScrub(t *testing.T) {
	cause := &lifecycle.InfraError{Type: lifecycle.TypeConnection, Message: "dial app:" + password + "@db and app:s3cr3t%2DPa55 and " + url.QueryEscape("p@ss w/rd")}
	secrets := Config{Password: password, DSN: "app:p@ss w/rd@tcp(db)/x"}.secretsOf("p@ss w/rd", "s3cr3t%2DPa55")
	err := scrub(cause, secrets)
	assert.NotContains(t, err.Error(), password)
	assert.NotContains(t, err.Error(), "s3cr3t%2DPa55")
	assert.NotContains(t, err.Error(), url.QueryEscape("p@ss w/rd"))
	assert.Contains(t, err.Error(), "dial app:******@db")
	assert.ErrorIs(t, err, lifecycle.ErrConnection, "still unwraps to the cause")
	clean := errors.New("nothing to hide")
	assert.Same(t, clean, scrub(clean, secrets))
	assert.NoError(t, scrub(nil, secrets))
}

// TestSQLiteFileNames: a file name with characters a "file:" URI would
// read as its query or fragment still opens that file.
func TestSQLiteFileNames(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"plain.db", "with space.db", "what?.db", "hash#1.db", "100%.db"} {
		t.Run(name, func(t *testing.T) {
			cfg := Config{}.Defaults()
			cfg.Driver, cfg.Database = DriverSQLite, filepath.Join(dir, name)
			d, err := New(t.Context(), cfg)
			require.NoError(t, err)
			require.NoError(t, d.Close())
			_, err = os.Stat(cfg.Database)
			assert.NoError(t, err, "the file has exactly the configured name")
		})
	}
}
