package db

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// connIdentity names the connection conn is: the server's thread or
// backend ID for MariaDB and PostgreSQL, the driver connection's address for
// SQLite (which has no server).
func connIdentity(t testing.TB, ctx context.Context, driver string, conn *sql.Conn) string {
	t.Helper()
	var q string
	switch driver {
	case DriverMySQL:
		q = "SELECT CONNECTION_ID()"
	case DriverPostgres:
		q = "SELECT pg_backend_pid()"
	default:
		var id string
		require.NoError(t, conn.Raw(func(dc any) error { id = fmt.Sprintf("%p", dc); return nil }))
		return id
	}
	var id int64
	require.NoError(t, conn.QueryRowContext(ctx, q).Scan(&id))
	return fmt.Sprint(id)
}

// holdAll takes n connections at once, reads their identities and gives
// them back.
func holdAll(t testing.TB, ctx context.Context, d *DB, n int) []string {
	t.Helper()
	conns := make([]*sql.Conn, n)
	ids := make([]string, n)
	for i := range conns {
		c, err := d.SQL().Conn(ctx)
		require.NoError(t, err)
		conns[i] = c
		ids[i] = connIdentity(t, ctx, d.Driver(), c)
	}
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	slices.Sort(ids)
	return ids
}

func TestPoolSizesApplyLiveWithoutReconnecting(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		cfg := tg.config(t)
		cfg.MaxOpenConns, cfg.MaxIdleConns = 4, 4
		d := openDB(t, cfg)
		ctx := ctxT(t, 20*time.Second)

		before := holdAll(t, ctx, d.DB, 4)
		require.Equal(t, 4, d.Stats().OpenConnections)
		require.Equal(t, 4, d.Stats().MaxOpenConnections)

		// Grow the pool.
		cfg.MaxOpenConns, cfg.MaxIdleConns = 8, 6
		cfg.ConnMaxIdleTime = config.Duration(time.Hour)
		require.NoError(t, d.Apply(cfg))
		s := d.Stats()
		assert.Equal(t, 8, s.MaxOpenConnections)
		assert.Equal(t, 4, s.OpenConnections, "no connection was closed or opened")
		assert.Equal(t, before, holdAll(t, ctx, d.DB, 4), "the same server connections serve after the change")
		assert.Zero(t, d.Stats().MaxIdleClosed+d.Stats().MaxIdleTimeClosed+d.Stats().MaxLifetimeClosed)
		// Eight can now be held at once without waiting.
		waits := d.Stats().WaitCount
		all := holdAll(t, ctx, d.DB, 8)
		assert.Subset(t, all, before)
		assert.Equal(t, waits, d.Stats().WaitCount)
		assert.Equal(t, 6, d.Stats().Idle, "idle connections above maxIdleConns were closed on return")

		// Shrink it: the surplus closes, the rest stay.
		cfg.MaxOpenConns, cfg.MaxIdleConns = 2, 2
		require.NoError(t, d.Apply(cfg))
		s = d.Stats()
		assert.Equal(t, 2, s.MaxOpenConnections)
		assert.Equal(t, 2, s.OpenConnections)
		assert.Subset(t, all, holdAll(t, ctx, d.DB, 2))

		logged := takeMsg(d.logs, "config change applied")
		require.NotEmpty(t, logged)
		assert.Equal(t, zapcore.InfoLevel, logged[len(logged)-1].Level)
		assert.EqualValues(t, 2, logged[len(logged)-1].ContextMap()["max_open_conns"])
	})
}

func TestRestartOnlyChangesAreLoggedNotApplied(t *testing.T) {
	reader, mp := newMeter()
	cfg := sqliteTarget().config(t)
	d := openDB(t, cfg, WithMeterProvider(mp))
	ctx := ctxT(t, 10*time.Second)

	changed := cfg
	changed.Database = cfg.Database + ".other"
	changed.DialTimeout = config.Duration(9 * time.Second)
	changed.MaxOpenConns = 7
	require.NoError(t, d.Apply(changed))

	warns := takeMsg(d.logs, "config change needs a restart to apply; the running pool keeps its old settings")
	require.Len(t, warns, 1)
	assert.Equal(t, []any{"database", "dialTimeout"}, warns[0].ContextMap()["fields"])
	assert.EqualValues(t, 1, counterValue(t, reader, "db.config.restart_pending"))
	assert.Equal(t, 7, d.Stats().MaxOpenConnections, "the live part applied")
	require.NoError(t, d.Ping(ctx), "still on the old database")

	// The same pending change again is not logged twice; reverting clears the gauge.
	require.NoError(t, d.Apply(changed))
	assert.Empty(t, takeMsg(d.logs, "config change needs a restart to apply; the running pool keeps its old settings"))
	require.NoError(t, d.Apply(cfg))
	assert.EqualValues(t, 0, counterValue(t, reader, "db.config.restart_pending"))

	// An invalid config is refused and changes nothing.
	bad := cfg
	bad.MaxOpenConns = 0
	err := d.Apply(bad)
	assert.ErrorIs(t, err, lifecycle.ErrValidation)
	assert.Equal(t, DefaultMaxOpenConns, d.Stats().MaxOpenConnections)
}

func TestRestartOnlyChangeNeverLogsThePassword(t *testing.T) {
	tg := mysqlTarget()
	need(t, tg)
	cfg := tg.structured(t, tg.addr)
	d := openDB(t, cfg)
	changed := cfg
	changed.Password = "s3cr3t-Pa55"
	require.NoError(t, d.Apply(changed))
	assert.Len(t, takeMsg(d.logs, "config change needs a restart to apply; the running pool keeps its old settings"), 1)
	assert.NotContains(t, allText(d.everything), "s3cr3t-Pa55")
}
