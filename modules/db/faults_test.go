package db

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/lifecycle"
)

const password = "s3cr3t-Pa55"

// silentServer accepts TCP connections and never answers, like a server
// that hangs or a firewall that lets SYNs through.
func silentServer(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// closedPort is an address nothing listens on.
func closedPort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestUnreachableAtStart(t *testing.T) {
	refused, silent := closedPort(t), silentServer(t)
	type tc struct {
		name string
		cfg  Config
	}
	var cases []tc
	for _, driver := range []string{DriverMySQL, DriverPostgres} {
		for _, addr := range []struct{ name, addr string }{{"refused", refused}, {"silent", silent}} {
			host, port := splitHostPort(t, addr.addr)
			structured := Config{}.Defaults()
			structured.Driver, structured.Host, structured.Port = driver, host, port
			structured.User, structured.Password, structured.Database = "app", password, "test"
			structured.DialTimeout = config.Duration(500 * time.Millisecond)
			cases = append(cases, tc{driver + " structured " + addr.name, structured})

			dsn := Config{}.Defaults()
			dsn.Driver, dsn.DialTimeout = driver, config.Duration(500*time.Millisecond)
			if driver == DriverMySQL {
				dsn.DSN = config.Secret(fmt.Sprintf("app:%s@tcp(%s)/test", password, addr.addr))
			} else {
				dsn.DSN = config.Secret(fmt.Sprintf("postgres://app:%s@%s/test?sslmode=disable", password, addr.addr))
			}
			cases = append(cases, tc{driver + " dsn " + addr.name, dsn})
		}
	}
	sqliteCfg := Config{}.Defaults()
	sqliteCfg.Driver, sqliteCfg.Database = DriverSQLite, filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")
	cases = append(cases, tc{"sqlite file in a missing directory", sqliteCfg})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			start := time.Now()
			d, err := New(context.Background(), c.cfg, WithLogger(zap.New(core)))
			took := time.Since(start)
			require.Error(t, err)
			require.Nil(t, d)
			assert.ErrorIs(t, err, lifecycle.ErrConnection)
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, ModuleName, ie.Component)
			assert.Equal(t, "connect", ie.Op)
			assert.Less(t, took, c.cfg.DialTimeout.Std()+500*time.Millisecond, "bounded by the dial timeout")
			assert.NotContains(t, err.Error(), password)
			assert.NotContains(t, fmt.Sprintf("%+v %#v", err, err), password)
			assert.NotContains(t, allText(logs), password)
			if c.cfg.Driver != DriverSQLite {
				assert.Contains(t, err.Error(), "/test", "the error names the address")
			}
		})
	}
}

func TestWrongPasswordIsAConnectionErrorWithoutThePassword(t *testing.T) {
	tg := mysqlTarget()
	need(t, tg)
	cfg := tg.structured(t, tg.addr)
	cfg.User, cfg.Password = "im_infra_no_such_user", password
	core, logs := observer.New(zapcore.DebugLevel)
	_, err := New(context.Background(), cfg, WithLogger(zap.New(core)))
	require.Error(t, err)
	assert.ErrorIs(t, err, lifecycle.ErrConnection)
	assert.Contains(t, err.Error(), "Access denied")
	assert.NotContains(t, err.Error(), password)
	assert.NotContains(t, allText(logs), password)
}

// TestConnectionCutMidRun puts a TCP proxy between the pool and the
// server, cuts it and restores it: queries fail within their deadline
// while it is down and succeed on the same DB once it is back.
func TestConnectionCutMidRun(t *testing.T) {
	for _, tg := range []target{mysqlTarget(), postgresTarget()} {
		t.Run(tg.driver, func(t *testing.T) {
			need(t, tg)
			proxy, err := devstack.NewProxy(tg.addr)
			require.NoError(t, err)
			t.Cleanup(proxy.Close)
			d := openDB(t, tg.structured(t, proxy.Addr()))
			hc := NewHealthChecker(d.DB)
			ping := func(timeout time.Duration) (time.Duration, error) {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				start := time.Now()
				var n int
				err := d.WithContext(ctx).Raw("SELECT 1").Scan(&n).Error
				return time.Since(start), err
			}
			_, err = ping(time.Second)
			require.NoError(t, err)
			holdAll(t, context.Background(), d.DB, 3) // several pooled connections to lose

			proxy.Close()
			for range 3 {
				took, err := ping(500 * time.Millisecond)
				require.Error(t, err)
				assert.Less(t, took, 700*time.Millisecond, "fails within its deadline")
			}
			st := hc.Check(context.Background())
			assert.Equal(t, lifecycle.Unhealthy, st.State)

			require.NoError(t, proxy.Open())
			_, err = ping(2 * time.Second)
			require.NoError(t, err, "the same pool recovers without a restart")
			assert.Equal(t, lifecycle.Healthy, hc.Check(context.Background()).State)
		})
	}
}

// TestServerKilledPooledConnection: the server kills the connection the
// pool holds idle; the next statement, read or write, still succeeds
// because the driver reports the dead connection before sending anything
// and database/sql retries on a new one. go-sql-driver/mysql checks the
// socket on every reuse; pgx pings a connection that was idle for more
// than a second, so on PostgreSQL the kill is followed by a second idle.
func TestServerKilledPooledConnection(t *testing.T) {
	for _, tg := range []target{mysqlTarget(), postgresTarget()} {
		t.Run(tg.driver, func(t *testing.T) {
			need(t, tg)
			cfg := tg.config(t)
			cfg.MaxOpenConns, cfg.MaxIdleConns = 1, 1
			d := openDB(t, cfg)
			ctx := ctxT(t, 20*time.Second)
			require.NoError(t, d.AutoMigrate(ctx, &Item{}))
			admin := openDB(t, tg.config(t))

			idQuery, kill := "SELECT CONNECTION_ID()", "KILL %d"
			if tg.driver == DriverPostgres {
				idQuery, kill = "SELECT pg_backend_pid()", "SELECT pg_terminate_backend(%d)"
			}
			for _, op := range []string{"read", "write"} {
				var victim int64
				require.NoError(t, d.WithContext(ctx).Raw(idQuery).Scan(&victim).Error)
				require.NoError(t, admin.WithContext(ctx).Exec(fmt.Sprintf(kill, victim)).Error)
				idle := 50 * time.Millisecond // let the server close the socket
				if tg.driver == DriverPostgres {
					idle = 1100 * time.Millisecond
				}
				time.Sleep(idle)

				switch op {
				case "read":
					var now int64
					require.NoError(t, d.WithContext(ctx).Raw(idQuery).Scan(&now).Error, "first statement after the kill")
					assert.NotEqual(t, victim, now, "a new connection")
				case "write":
					require.NoError(t, d.WithContext(ctx).Create(&Item{Name: "after-kill"}).Error, "first statement after the kill")
				}
			}
		})
	}
}

func TestTLS(t *testing.T) {
	t.Run("mysql server without TLS refuses require", func(t *testing.T) {
		tg := mysqlTarget()
		need(t, tg)
		cfg := tg.structured(t, tg.addr)
		cfg.TLS.Mode = TLSRequire
		_, err := New(context.Background(), cfg)
		require.Error(t, err)
		assert.ErrorIs(t, err, lifecycle.ErrConnection)
		assert.Contains(t, err.Error(), "TLS")
	})
	t.Run("postgres require encrypts", func(t *testing.T) {
		tg := postgresTarget()
		need(t, tg)
		cfg := tg.structured(t, tg.addr)
		cfg.TLS.Mode = TLSRequire
		d := openDB(t, cfg)
		var ssl bool
		err := d.GetDB().Raw("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl).Error
		require.NoError(t, err)
		if !ssl {
			t.Fatal("connection is not encrypted")
		}
	})
	t.Run("postgres verify-full refuses an unknown certificate", func(t *testing.T) {
		tg := postgresTarget()
		need(t, tg)
		cfg := tg.structured(t, tg.addr)
		cfg.TLS.Mode = TLSVerifyFull
		_, err := New(context.Background(), cfg)
		require.Error(t, err)
		assert.ErrorIs(t, err, lifecycle.ErrConnection)
	})
	t.Run("unreadable CA file", func(t *testing.T) {
		cfg := Config{}.Defaults()
		cfg.Host, cfg.User, cfg.TLS = "127.0.0.1", "app", TLSConfig{Mode: TLSVerifyFull, CAFile: "/no/such/ca.pem"}
		_, err := New(context.Background(), cfg)
		require.Error(t, err)
		var ie *lifecycle.InfraError
		require.ErrorAs(t, err, &ie)
		assert.Equal(t, "tls.caFile", ie.Field)
	})
}

func TestHealthChecker(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		cfg := tg.config(t)
		d, err := New(context.Background(), cfg)
		require.NoError(t, err)
		hc := NewHealthChecker(d)
		assert.Equal(t, "db", hc.Name())
		st := hc.Check(context.Background())
		assert.Equal(t, lifecycle.Healthy, st.State)
		assert.Equal(t, tg.driver, st.Details["driver"])
		assert.Equal(t, DefaultMaxOpenConns, st.Details["max_open"])

		require.NoError(t, d.Close())
		require.NoError(t, d.Close(), "Close twice is fine")
		st = hc.Check(context.Background())
		assert.Equal(t, lifecycle.Unhealthy, st.State)
		assert.Contains(t, st.Details["error"], "closed")
	})

	t.Run("bounded by the dial timeout on a hung server", func(t *testing.T) {
		tg := mysqlTarget()
		need(t, tg)
		proxy, err := devstack.NewProxy(tg.addr)
		require.NoError(t, err)
		t.Cleanup(proxy.Close)
		cfg := tg.structured(t, proxy.Addr())
		cfg.DialTimeout = config.Duration(300 * time.Millisecond)
		d := openDB(t, cfg)
		hc := NewHealthChecker(d.DB)
		// Every connection busy: the ping waits for one until the timeout.
		cfg.MaxOpenConns = 1
		require.NoError(t, d.Apply(cfg))
		conn, err := d.SQL().Conn(context.Background())
		require.NoError(t, err)
		defer conn.Close()
		start := time.Now()
		st := hc.Check(context.Background())
		assert.Equal(t, lifecycle.Unhealthy, st.State)
		assert.Less(t, time.Since(start), time.Second)
	})
}
