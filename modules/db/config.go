package db

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// The drivers Config.Driver accepts.
const (
	DriverMySQL    = "mysql"
	DriverPostgres = "postgres"
	DriverSQLite   = "sqlite"
)

// The SQL log levels Config.LogLevel accepts, quietest first. They mirror
// gorm's logger levels so GORM users read them the same way.
const (
	LogSilent = "silent" // nothing, not even errors
	LogError  = "error"  // failed statements
	LogWarn   = "warn"   // failed and slow statements (default)
	LogInfo   = "info"   // every statement
)

// The TLS modes TLSConfig.Mode accepts.
const (
	// TLSDefault ("") leaves TLS to the driver and to dsn/params:
	// go-sql-driver/mysql does not encrypt, pgx tries TLS and falls back
	// to plain (sslmode=prefer).
	TLSDefault = ""
	// TLSDisable never encrypts.
	TLSDisable = "disable"
	// TLSRequire encrypts but does not verify the server's certificate.
	TLSRequire = "require"
	// TLSVerifyFull encrypts and verifies the certificate chain and the host name.
	TLSVerifyFull = "verify-full"
)

// Defaults of Config, from the design document where it names them.
const (
	DefaultMaxOpenConns       = 25
	DefaultMaxIdleConns       = 10
	DefaultConnMaxLifetime    = time.Hour
	DefaultConnMaxIdleTime    = 30 * time.Minute
	DefaultDialTimeout        = 5 * time.Second
	DefaultSlowQueryThreshold = 200 * time.Millisecond
)

// Config is the "db" component's config. Either DSN or the structured
// fields (Host, Port, User, Password, Database, Params) say where the
// database is, never both. Pool sizes, SlowQueryThreshold and LogLevel apply
// live; every other field needs a restart (a change is logged at warn).
type Config struct {
	// Driver is mysql (default), postgres or sqlite.
	Driver string `json:"driver"`
	// DSN is the driver's own connection string: go-sql-driver/mysql
	// ("user:pass@tcp(host:3306)/db?parseTime=true"), pgx ("host=h
	// user=u dbname=d" or "postgres://..."), or a sqlite file name or
	// "file:" URI. It is a Secret because it usually carries a password.
	DSN config.Secret `json:"dsn,omitempty"`
	// Host and Port of the server (mysql, postgres). Port 0 means the
	// driver's default, 3306 or 5432.
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`
	// User and Password authenticate (mysql, postgres).
	User     string        `json:"user,omitempty"`
	Password config.Secret `json:"password,omitempty"`
	// Database is the database name (mysql, postgres) or the file (sqlite).
	Database string `json:"database,omitempty"`
	// Params are extra driver parameters, e.g. {"charset":"utf8mb4"} for
	// mysql, {"sslmode":"disable","search_path":"app"} for postgres,
	// {"_pragma":"synchronous(NORMAL)"} for sqlite.
	Params map[string]string `json:"params,omitempty"`
	// TLS encrypts the connection (mysql, postgres).
	TLS TLSConfig `json:"tls"`

	// MaxOpenConns caps the pool (default 25). Live.
	MaxOpenConns int `json:"maxOpenConns"`
	// MaxIdleConns is how many idle connections are kept (default 10),
	// at most MaxOpenConns. Live.
	MaxIdleConns int `json:"maxIdleConns"`
	// ConnMaxLifetime closes a connection this long after it was opened
	// (default 1h; 0 keeps it forever). Live.
	ConnMaxLifetime config.Duration `json:"connMaxLifetime"`
	// ConnMaxIdleTime closes a connection idle this long (default 30m;
	// 0 keeps it). Live.
	ConnMaxIdleTime config.Duration `json:"connMaxIdleTime"`
	// DialTimeout bounds one connection attempt and the start-up ping
	// (default 5s). It also bounds the health check's ping.
	DialTimeout config.Duration `json:"dialTimeout"`
	// SlowQueryThreshold logs statements that take at least this long at
	// warn (default 200ms; 0 turns slow-query logs off). Live.
	SlowQueryThreshold config.Duration `json:"slowQueryThreshold"`
	// LogLevel is silent, error, warn (default) or info. Live.
	LogLevel string `json:"logLevel"`
}

// TLSConfig encrypts the connection to mysql or postgres. Files are PEM.
type TLSConfig struct {
	// Mode is "" (driver default), disable, require or verify-full.
	Mode string `json:"mode,omitempty"`
	// CAFile verifies the server; empty means the system roots.
	CAFile string `json:"caFile,omitempty"`
	// CertFile and KeyFile are the client certificate (mutual TLS).
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// ServerName overrides the host name checked in the certificate.
	ServerName string `json:"serverName,omitempty"`
}

// Defaults returns the design document's defaults and no address.
func (Config) Defaults() Config {
	return Config{
		Driver:             DriverMySQL,
		MaxOpenConns:       DefaultMaxOpenConns,
		MaxIdleConns:       DefaultMaxIdleConns,
		ConnMaxLifetime:    config.Duration(DefaultConnMaxLifetime),
		ConnMaxIdleTime:    config.Duration(DefaultConnMaxIdleTime),
		DialTimeout:        config.Duration(DefaultDialTimeout),
		SlowQueryThreshold: config.Duration(DefaultSlowQueryThreshold),
		LogLevel:           LogWarn,
	}
}

// Validate checks the config without touching the network. A DSN is parsed
// by its driver's own parser, so a malformed one is refused here (without
// repeating it). Errors are VALIDATION InfraErrors naming the JSON field.
func (c Config) Validate() error {
	switch c.Driver {
	case DriverMySQL, DriverPostgres, DriverSQLite:
	default:
		return invalid("driver", fmt.Sprintf("%q is not a driver; use mysql, postgres or sqlite", c.Driver))
	}
	if err := c.validateAddress(); err != nil {
		return err
	}
	switch c.TLS.Mode {
	case TLSDefault, TLSDisable, TLSRequire, TLSVerifyFull:
	default:
		return invalid("tls.mode", fmt.Sprintf("%q is not a TLS mode; use disable, require or verify-full", c.TLS.Mode))
	}
	if c.Driver == DriverSQLite && c.TLS != (TLSConfig{}) {
		return invalid("tls", "sqlite is a local file; remove tls")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return invalid("tls.certFile", "tls.certFile and tls.keyFile go together")
	}
	if c.TLS.Mode == TLSDisable && (c.TLS.CAFile != "" || c.TLS.CertFile != "") {
		return invalid("tls.mode", "tls.mode is disable but certificate files are set")
	}
	if c.MaxOpenConns < 1 {
		return invalid("maxOpenConns", fmt.Sprintf("must be at least 1, got %d", c.MaxOpenConns))
	}
	if c.MaxIdleConns < 0 {
		return invalid("maxIdleConns", fmt.Sprintf("must not be negative, got %d", c.MaxIdleConns))
	}
	for _, d := range []struct {
		field string
		v     config.Duration
	}{
		{"connMaxLifetime", c.ConnMaxLifetime},
		{"connMaxIdleTime", c.ConnMaxIdleTime},
		{"slowQueryThreshold", c.SlowQueryThreshold},
	} {
		if d.v < 0 {
			return invalid(d.field, fmt.Sprintf("must not be negative (0 turns it off), got %s", d.v))
		}
	}
	if c.DialTimeout <= 0 {
		return invalid("dialTimeout", fmt.Sprintf("must be positive, got %s", c.DialTimeout))
	}
	if _, ok := logLevels[c.LogLevel]; !ok {
		return invalid("logLevel", fmt.Sprintf("%q is not a level; use silent, error, warn or info", c.LogLevel))
	}
	// Parsing through the driver catches what the checks above cannot
	// (a bad param value, an unparsable DSN) before anything connects.
	if _, err := c.connector(); err != nil {
		return err
	}
	return nil
}

func (c Config) validateAddress() error {
	structured := c.Host != "" || c.Port != 0 || c.User != "" || c.Password != "" || c.Database != "" || len(c.Params) > 0
	if c.DSN != "" {
		if structured {
			return invalid("dsn", "dsn and the structured fields (host, port, user, password, database, params) are both set; use one")
		}
		return nil
	}
	if c.Port < 0 || c.Port > 65535 {
		return invalid("port", fmt.Sprintf("must be 0 (driver default) or 1-65535, got %d", c.Port))
	}
	if c.Driver == DriverSQLite {
		if c.Database == "" {
			return invalid("database", "sqlite needs the database file (or set dsn)")
		}
		if c.Host != "" || c.Port != 0 || c.User != "" || c.Password != "" {
			return invalid("host", "sqlite is a local file; host, port, user and password do not apply")
		}
		if strings.Contains(c.Database, ":memory:") || strings.Contains(c.Database, "mode=memory") {
			// Every pooled connection would see its own empty database.
			return invalid("database", "an in-memory sqlite database is private to one connection; use a file")
		}
		return nil
	}
	if c.Host == "" {
		return invalid("host", "set host (or dsn) to say where the "+c.Driver+" server is")
	}
	if c.User == "" {
		return invalid("user", "set the user to connect as")
	}
	return nil
}

func invalid(field, msg string) error { return lifecycle.ValidationError(ModuleName, field, msg) }

// liveFields are the fields Apply changes on a running DB; any other
// difference needs a new connection pool.
func restartFields(old, new Config) []string {
	var changed []string
	add := func(cond bool, name string) {
		if cond {
			changed = append(changed, name)
		}
	}
	add(old.Driver != new.Driver, "driver")
	add(old.DSN != new.DSN, "dsn")
	add(old.Host != new.Host, "host")
	add(old.Port != new.Port, "port")
	add(old.User != new.User, "user")
	add(old.Password != new.Password, "password")
	add(old.Database != new.Database, "database")
	add(!maps.Equal(old.Params, new.Params), "params")
	add(old.TLS != new.TLS, "tls")
	add(old.DialTimeout != new.DialTimeout, "dialTimeout")
	return changed
}

// liveChanges names the live fields that differ.
func liveChanges(old, new Config) []string {
	var changed []string
	add := func(cond bool, name string) {
		if cond {
			changed = append(changed, name)
		}
	}
	add(old.MaxOpenConns != new.MaxOpenConns, "maxOpenConns")
	add(old.MaxIdleConns != new.MaxIdleConns, "maxIdleConns")
	add(old.ConnMaxLifetime != new.ConnMaxLifetime, "connMaxLifetime")
	add(old.ConnMaxIdleTime != new.ConnMaxIdleTime, "connMaxIdleTime")
	add(old.SlowQueryThreshold != new.SlowQueryThreshold, "slowQueryThreshold")
	add(old.LogLevel != new.LogLevel, "logLevel")
	return changed
}

// sortedParams returns the param keys in order, so built DSNs are stable.
func sortedParams(p map[string]string) []string { return slices.Sorted(maps.Keys(p)) }
