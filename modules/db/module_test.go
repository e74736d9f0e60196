package db_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/fxinfratest"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/db"
)

// TestModuleOpensOnlyWhenAsked: db.Module in a graph where nothing asks
// for *db.DB connects to nothing, needs no valid config and adds no health
// check; asking for *db.DB opens the pool at start.
func TestModuleOpensOnlyWhenAsked(t *testing.T) {
	t.Run("not asked", func(t *testing.T) {
		var agg *lifecycle.Aggregator
		app := fxinfratest.New(t,
			// Unreachable and invalid would both fail a start that connected.
			fxinfratest.WithConfig(db.ModuleName, `{"host":"127.0.0.1","port":1}`),
			fxinfratest.WithFx(fx.Populate(&agg)),
		)
		rep := agg.Check(context.Background())
		assert.NotContains(t, rep.Checks, db.ModuleName)
		assert.Empty(t, dbLines(app, "connected"))
	})
	t.Run("asked", func(t *testing.T) {
		var (
			d   *db.DB
			agg *lifecycle.Aggregator
		)
		app := fxinfratest.New(t,
			fxinfratest.WithDB(fxinfratest.SQLite),
			fxinfratest.WithFx(fx.Populate(&d, &agg)),
		)
		require.NoError(t, d.Ping(context.Background()))
		rep := agg.Check(context.Background())
		assert.Equal(t, lifecycle.Healthy, rep.Checks[db.ModuleName].State)
		lines := dbLines(app, "connected")
		require.Len(t, lines, 1)
		assert.Equal(t, db.DriverSQLite, lines[0].ContextMap()["driver"])
	})
}

const restartMsg = "config change needs a restart to apply; the running pool keeps its old settings"

// dbLines are the app's lines with message msg from module=db.
func dbLines(app *fxinfratest.App, msg string) []observer.LoggedEntry {
	return app.Logs.FilterMessage(msg).FilterField(zap.String("module", db.ModuleName)).All()
}

// connIDs holds n connections at once and returns their server-side IDs
// (the driver connection's address on SQLite).
func connIDs(t *testing.T, d *db.DB, n int) []string {
	ctx := context.Background()
	var ids []string
	for range n {
		c, err := d.SQL().Conn(ctx)
		require.NoError(t, err)
		defer c.Close()
		var id string
		switch d.Driver() {
		case db.DriverMySQL:
			require.NoError(t, c.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id))
		case db.DriverPostgres:
			require.NoError(t, c.QueryRowContext(ctx, "SELECT pg_backend_pid()::text").Scan(&id))
		default:
			require.NoError(t, c.Raw(func(dc any) error { id = fmt.Sprintf("%p", dc); return nil }))
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// TestModulePoolSizeChangeThroughConfig writes a new db document to etcd
// and checks that the running pool takes the new sizes without opening or
// closing a connection.
func TestModulePoolSizeChangeThroughConfig(t *testing.T) {
	for _, kind := range []fxinfratest.DBKind{fxinfratest.SQLite, fxinfratest.MySQL, fxinfratest.Postgres} {
		t.Run(string(kind), func(t *testing.T) {
			var d *db.DB
			app := fxinfratest.New(t,
				fxinfratest.WithDB(kind),
				fxinfratest.WithFx(fx.Populate(&d)),
			)
			before := connIDs(t, d, 3)
			require.Equal(t, db.DefaultMaxOpenConns, d.Stats().MaxOpenConnections)
			open := d.Stats().OpenConnections

			// The service document is replaced whole: keep its address.
			cfg := d.Config()
			doc := map[string]any{"driver": cfg.Driver, "maxOpenConns": 40, "maxIdleConns": 20}
			if cfg.DSN != "" {
				doc["dsn"] = cfg.DSN.Reveal()
			} else {
				doc["database"] = cfg.Database
			}
			b, err := json.Marshal(doc)
			require.NoError(t, err)
			app.Put(t, db.ModuleName, string(b))

			s := d.Stats()
			assert.Equal(t, 40, s.MaxOpenConnections)
			assert.Equal(t, open, s.OpenConnections, "no connection opened or closed")
			assert.Equal(t, before, connIDs(t, d, 3), "the same connections serve")
			assert.Equal(t, 40, d.Config().MaxOpenConns)
			entry := app.Logs.Require(t, "config change applied")
			assert.Equal(t, db.ModuleName, entry.ContextMap()["module"])
			assert.Empty(t, dbLines(app, restartMsg))

			// A change of address is logged, not applied.
			doc["maxOpenConns"] = 30
			doc["dialTimeout"] = "3s"
			b, err = json.Marshal(doc)
			require.NoError(t, err)
			app.Put(t, db.ModuleName, string(b))
			assert.Equal(t, 30, d.Stats().MaxOpenConnections)
			warn := dbLines(app, restartMsg)
			require.Len(t, warn, 1)
			assert.Equal(t, []any{"dialTimeout"}, warn[0].ContextMap()["fields"])
		})
	}
}
