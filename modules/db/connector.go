package db

import (
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	gosqlite "github.com/glebarez/go-sqlite"
	"github.com/glebarez/sqlite"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	mysqldialect "gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// connector is a parsed Config: how to open the pool (no I/O until used),
// which gorm dialect and goose dialect go with it, and what may be shown.
type connector struct {
	driver string
	// address is what logs and errors show: host:port/database or the
	// sqlite file; never a user or password.
	address string
	// database is the database name (or sqlite file).
	database string
	// secrets are scrubbed from every error and log line.
	secrets []string
	// open builds the pool; it reads TLS files but does not dial.
	open      func(log mysql.Logger) (*sql.DB, error)
	dialector func(*sql.DB) gorm.Dialector
	dialect   goose.Dialect
}

// connector parses c through the driver's own parser. It does no I/O.
func (c Config) connector() (*connector, error) {
	switch c.Driver {
	case DriverMySQL:
		return c.mysqlConnector()
	case DriverPostgres:
		return c.postgresConnector()
	case DriverSQLite:
		return c.sqliteConnector()
	}
	return nil, invalid("driver", fmt.Sprintf("%q is not a driver; use mysql, postgres or sqlite", c.Driver))
}

// secretsOf lists every form in which c's password may be echoed.
func (c Config) secretsOf(extra ...string) []string {
	var s []string
	for _, v := range append([]string{c.DSN.Reveal(), c.Password.Reveal()}, extra...) {
		if v == "" {
			continue
		}
		s = append(s, v, url.QueryEscape(v), url.PathEscape(v))
	}
	return s
}

func (c Config) mysqlConnector() (*connector, error) {
	var (
		mc  *mysql.Config
		err error
	)
	if c.DSN != "" {
		dsn := c.DSN.Reveal()
		if mc, err = mysql.ParseDSN(dsn); err != nil {
			return nil, invalidCause("dsn", "not a go-sql-driver/mysql DSN", err, c.secretsOf())
		}
		// gorm maps DATETIME to time.Time, which needs parseTime.
		if !strings.Contains(dsn, "parseTime=") {
			mc.ParseTime = true
		}
	} else {
		base := mysql.NewConfig()
		base.User, base.Passwd, base.DBName = c.User, c.Password.Reveal(), c.Database
		base.Net, base.Addr = "tcp", net.JoinHostPort(c.Host, strconv.Itoa(portOr(c.Port, 3306)))
		base.ParseTime = true
		dsn := base.FormatDSN()
		if len(c.Params) > 0 {
			q := make([]string, 0, len(c.Params))
			for _, k := range sortedParams(c.Params) {
				q = append(q, url.QueryEscape(k)+"="+url.QueryEscape(c.Params[k]))
			}
			sep := "?"
			if strings.Contains(dsn, "?") {
				sep = "&"
			}
			dsn += sep + strings.Join(q, "&")
		}
		if mc, err = mysql.ParseDSN(dsn); err != nil {
			return nil, invalidCause("params", "not accepted by go-sql-driver/mysql", err, c.secretsOf())
		}
	}
	if mc.Timeout == 0 {
		mc.Timeout = c.DialTimeout.Std()
	}
	host, _, _ := net.SplitHostPort(mc.Addr)
	tlsMode := c.TLS
	return &connector{
		driver:   DriverMySQL,
		address:  mc.Addr + "/" + mc.DBName,
		database: mc.DBName,
		secrets:  c.secretsOf(mc.Passwd),
		open: func(log mysql.Logger) (*sql.DB, error) {
			cfg := mc.Clone()
			if log != nil {
				cfg.Logger = log
			}
			switch tlsMode.Mode {
			case TLSDisable:
				cfg.TLS, cfg.TLSConfig = nil, "false"
			case TLSRequire, TLSVerifyFull:
				t, err := tlsMode.build(host)
				if err != nil {
					return nil, err
				}
				cfg.TLS = t
			}
			conn, err := mysql.NewConnector(cfg)
			if err != nil {
				return nil, err
			}
			return sql.OpenDB(conn), nil
		},
		dialector: func(db *sql.DB) gorm.Dialector {
			return mysqldialect.New(mysqldialect.Config{Conn: db, DSNConfig: mc})
		},
		dialect: goose.DialectMySQL,
	}, nil
}

func (c Config) postgresConnector() (*connector, error) {
	var (
		pc    *pgx.ConnConfig
		err   error
		field = "dsn"
	)
	if c.DSN != "" {
		pc, err = pgx.ParseConfig(c.DSN.Reveal())
	} else {
		field = "params"
		u := url.URL{
			Scheme: "postgres",
			Host:   net.JoinHostPort(c.Host, strconv.Itoa(portOr(c.Port, 5432))),
			Path:   "/" + c.Database,
		}
		if c.Password != "" {
			u.User = url.UserPassword(c.User, c.Password.Reveal())
		} else {
			u.User = url.User(c.User)
		}
		q := url.Values{}
		for _, k := range sortedParams(c.Params) {
			q.Set(k, c.Params[k])
		}
		u.RawQuery = q.Encode()
		pc, err = pgx.ParseConfig(u.String())
	}
	if err != nil {
		return nil, invalidCause(field, "not accepted by pgx", err, c.secretsOf())
	}
	if pc.ConnectTimeout == 0 {
		pc.ConnectTimeout = c.DialTimeout.Std()
	}
	tlsMode := c.TLS
	return &connector{
		driver:   DriverPostgres,
		address:  net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port))) + "/" + pc.Database,
		database: pc.Database,
		secrets:  c.secretsOf(pc.Password),
		open: func(mysql.Logger) (*sql.DB, error) {
			cfg := pc.Copy()
			switch tlsMode.Mode {
			case TLSDisable:
				cfg.TLSConfig, cfg.Fallbacks = nil, nil
			case TLSRequire, TLSVerifyFull:
				t, err := tlsMode.build(cfg.Host)
				if err != nil {
					return nil, err
				}
				// No fallback: a server that refuses TLS must fail, not
				// be reached in the clear.
				cfg.TLSConfig, cfg.Fallbacks = t, nil
			}
			return stdlib.OpenDB(*cfg), nil
		},
		dialector: func(db *sql.DB) gorm.Dialector { return postgres.New(postgres.Config{Conn: db}) },
		dialect:   goose.DialectPostgres,
	}, nil
}

// sqliteDefaults make a file shared by several connections (and processes)
// behave. The busy timeout comes first, so that every later pragma and
// statement waits up to 5s for a lock instead of failing with SQLITE_BUSY:
// switching the journal to WAL takes an exclusive lock, which two apps
// opening one file at once contend for. WAL lets readers run beside the
// writer, and BEGIN IMMEDIATE takes the write lock at the start of a
// transaction, so two transactions never deadlock while upgrading a read
// lock.
var sqliteDefaults = []string{"_pragma=busy_timeout(5000)", "_pragma=foreign_keys(1)", "_pragma=journal_mode(WAL)", "_txlock=immediate"}

func (c Config) sqliteConnector() (*connector, error) {
	dsn := c.DSN.Reveal()
	file := dsn
	if dsn == "" {
		file = c.Database
		q := append([]string(nil), sqliteDefaults...)
		for _, k := range sortedParams(c.Params) {
			// Several pragmas can be given as "a(1);b(2)".
			for v := range strings.SplitSeq(c.Params[k], ";") {
				q = append(q, url.QueryEscape(k)+"="+url.QueryEscape(strings.TrimSpace(v)))
			}
		}
		dsn = "file:" + escapeSQLitePath(c.Database) + "?" + strings.Join(q, "&")
	}
	if i := strings.IndexByte(file, '?'); i >= 0 {
		file = file[:i]
	}
	file = strings.TrimPrefix(file, "file:")
	return &connector{
		driver:   DriverSQLite,
		address:  file,
		database: file,
		secrets:  c.secretsOf(),
		open: func(mysql.Logger) (*sql.DB, error) {
			return sql.Open(sqlite.DriverName, dsn)
		},
		dialector: func(db *sql.DB) gorm.Dialector { return &sqlite.Dialector{Conn: db} },
		dialect:   goose.DialectSQLite3,
	}, nil
}

// escapeSQLitePath escapes what a "file:" URI would otherwise read as its
// query or fragment.
func escapeSQLitePath(p string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(p)
}

func portOr(p, def int) int {
	if p == 0 {
		return def
	}
	return p
}

// build returns the tls.Config for host; it reads the certificate files.
// require encrypts without verifying, like libpq's sslmode=require.
func (t TLSConfig) build(host string) (*tls.Config, error) {
	name := host
	if t.ServerName != "" {
		name = t.ServerName
	}
	return config.TLS{
		CAFile:             t.CAFile,
		CertFile:           t.CertFile,
		KeyFile:            t.KeyFile,
		ServerName:         name,
		InsecureSkipVerify: t.Mode == TLSRequire,
	}.ClientConfig(ModuleName)
}

// scrubbed is an error whose text has every secret masked. It still
// unwraps to the driver's error, so errors.Is/As keep working.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// scrub returns err with secrets masked in its text, or err itself when
// there is nothing to mask.
func scrub(err error, secrets []string) error {
	if err == nil || len(secrets) == 0 {
		return err
	}
	msg := err.Error()
	clean := scrubString(msg, secrets)
	if clean == msg {
		return err
	}
	return &scrubbed{msg: clean, err: err}
}

func scrubString(s string, secrets []string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "******")
		}
	}
	return s
}

// invalidCause is a VALIDATION error that keeps the parser's reason,
// scrubbed, as its cause.
func invalidCause(field, msg string, cause error, secrets []string) error {
	e := lifecycle.ValidationError(ModuleName, field, msg)
	e.Cause = scrub(cause, secrets)
	return e
}

// SQLite's primary result codes for a file or table held by another
// connection.
const (
	sqliteBusyCode   = 5
	sqliteLockedCode = 6
)

// sqliteCode returns the primary result code of a sqlite error, or 0.
func sqliteCode(err error) int {
	var se *gosqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return 0
}
