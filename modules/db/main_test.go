package db

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// target is one database the suite runs on.
type target struct {
	driver string
	dsn    string // "" for sqlite
	addr   string // host:port of the server, for proxies
	// structured returns the target as host/port/user/... fields with the
	// server at addr (a proxy in front of it, say).
	structured func(t testing.TB, addr string) Config
}

// config is the target's base config: its DSN, or a fresh sqlite file.
func (tg target) config(t testing.TB) Config {
	cfg := Config{}.Defaults()
	cfg.Driver = tg.driver
	cfg.DialTimeout = config.Duration(2 * time.Second)
	if tg.driver == DriverSQLite {
		cfg.Database = filepath.Join(t.TempDir(), "test.db")
		return cfg
	}
	cfg.DSN = config.Secret(tg.dsn)
	return cfg
}

func mysqlTarget() target {
	dsn := devstack.MySQLDSN()
	mc, err := mysql.ParseDSN(dsn)
	addr := ""
	if err == nil {
		addr = mc.Addr
	}
	return target{driver: DriverMySQL, dsn: dsn, addr: addr, structured: func(t testing.TB, addr string) Config {
		mc, err := mysql.ParseDSN(dsn)
		require.NoError(t, err)
		host, port := splitHostPort(t, addr)
		cfg := Config{}.Defaults()
		cfg.Driver, cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database = DriverMySQL, host, port, mc.User, config.Secret(mc.Passwd), mc.DBName
		cfg.DialTimeout = config.Duration(2 * time.Second)
		return cfg
	}}
}

func postgresTarget() target {
	dsn := devstack.PostgresDSN()
	pc, err := pgx.ParseConfig(dsn)
	addr := ""
	if err == nil {
		addr = net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port)))
	}
	return target{driver: DriverPostgres, dsn: dsn, addr: addr, structured: func(t testing.TB, addr string) Config {
		pc, err := pgx.ParseConfig(dsn)
		require.NoError(t, err)
		host, port := splitHostPort(t, addr)
		cfg := Config{}.Defaults()
		cfg.Driver, cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database = DriverPostgres, host, port, pc.User, config.Secret(pc.Password), pc.Database
		if pc.TLSConfig == nil {
			cfg.TLS.Mode = TLSDisable
		}
		cfg.DialTimeout = config.Duration(2 * time.Second)
		return cfg
	}}
}

func sqliteTarget() target { return target{driver: DriverSQLite} }

func splitHostPort(t testing.TB, addr string) (string, int) {
	host, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	port, err := strconv.Atoi(p)
	require.NoError(t, err)
	return host, port
}

// need skips (or, in CI, fails) t when tg's server does not answer.
func need(t testing.TB, tg target) {
	t.Helper()
	if tg.driver == DriverSQLite {
		return
	}
	c, err := net.DialTimeout("tcp", tg.addr, time.Second)
	if err == nil {
		_ = c.Close()
		return
	}
	if devstack.RequireReal() {
		t.Fatalf("%s at %s does not answer and %s=1: %v", tg.driver, tg.addr, devstack.EnvRequireReal, err)
	}
	t.Skipf("%s at %s does not answer: %v", tg.driver, tg.addr, err)
}

// eachDriver runs fn once per database: MariaDB/MySQL, PostgreSQL, SQLite.
func eachDriver(t *testing.T, fn func(t *testing.T, tg target)) {
	for _, tg := range []target{mysqlTarget(), postgresTarget(), sqliteTarget()} {
		t.Run(tg.driver, func(t *testing.T) {
			need(t, tg)
			fn(t, tg)
		})
	}
}

// testDB is a DB whose tables all carry a prefix unique to the test, so
// tests sharing a server never see each other's tables; cleanup drops them.
type testDB struct {
	*DB
	prefix string
	logs   *observer.ObservedLogs // tests take from it
	// everything keeps every line, for "never logged" checks.
	everything *observer.ObservedLogs
}

func randomPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:]) + "_"
}

// openDB opens cfg for t with a fresh prefix and an observed logger.
func openDB(t testing.TB, cfg Config, opts ...Option) *testDB {
	t.Helper()
	return openPrefixed(t, randomPrefix(), cfg, opts...)
}

func openPrefixed(t testing.TB, prefix string, cfg Config, opts ...Option) *testDB {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	allCore, everything := observer.New(zapcore.DebugLevel)
	all := append([]Option{
		WithLogger(zap.New(zapcore.NewTee(core, allCore))),
		WithGormConfig(func(c *gorm.Config) { c.NamingStrategy = schema.NamingStrategy{TablePrefix: prefix} }),
	}, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := New(ctx, cfg, all...)
	require.NoError(t, err)
	t.Cleanup(func() {
		dropPrefixed(t, d, prefix)
		require.NoError(t, d.Close())
	})
	return &testDB{DB: d, prefix: prefix, logs: logs, everything: everything}
}

// dropPrefixed drops every table whose name starts with prefix.
func dropPrefixed(t testing.TB, d *DB, prefix string) {
	t.Helper()
	if d.Driver() == DriverSQLite {
		return // the file goes with t.TempDir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var q string
	switch d.Driver() {
	case DriverMySQL:
		q = "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
	case DriverPostgres:
		q = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
	}
	var names []string
	rows, err := d.SQL().QueryContext(ctx, q)
	require.NoError(t, err)
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	require.NoError(t, rows.Err())
	_ = rows.Close()
	for _, n := range names {
		_, err := d.SQL().ExecContext(ctx, "DROP TABLE IF EXISTS "+n+cascade(d.Driver()))
		require.NoError(t, err)
	}
}

func cascade(driver string) string {
	if driver == DriverPostgres {
		return " CASCADE"
	}
	return ""
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var (
	sqliteRowsPerMs     int
	sqliteCalibrateOnce sync.Once
)

// sqliteBusy returns a statement that keeps SQLite busy for about d: it
// has no sleep function, and a recursive CTE runs 60 times slower under
// the race detector, so the row count is measured once.
func sqliteBusy(t testing.TB, d time.Duration) string {
	const cte = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d) SELECT count(*) FROM c"
	sqliteCalibrateOnce.Do(func() {
		db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "calibrate.db"))
		require.NoError(t, err)
		defer db.Close()
		const n = 20000
		start := time.Now()
		var c int
		require.NoError(t, db.QueryRow(fmt.Sprintf(cte, n)).Scan(&c))
		sqliteRowsPerMs = max(1, int(float64(n)/(float64(time.Since(start))/float64(time.Millisecond))))
	})
	return fmt.Sprintf(cte, sqliteRowsPerMs*int(d/time.Millisecond))
}

// Item is the model most tests use.
type Item struct {
	ID        uint   `gorm:"primaryKey"`
	Name      string `gorm:"size:64;uniqueIndex"`
	Qty       int
	CreatedAt time.Time
}
