package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// These tests run the module in a small fx app over a MemorySource, which
// is enough to start several apps at the same moment. The full stack
// (etcd, fxinfra) is in module_test.go.

// smallApp is an unstarted fx app with db.Module whose "db" config is doc.
func smallApp(t *testing.T, doc string, logs zapcore.Core, opts ...fx.Option) *fx.App {
	src := config.NewMemorySource()
	src.Set(config.Key("test", "svc", ModuleName), []byte(doc))
	all := append([]fx.Option{
		fx.NopLogger,
		lifecycle.Module,
		fx.Replace(lifecycle.MapEnviron(map[string]string{lifecycle.EnvService: "svc", lifecycle.EnvEnv: "test"})),
		fx.Provide(func() config.Source { return src }),
		fx.Supply(zap.New(logs)),
		Module,
	}, opts...)
	app := fx.New(all...)
	require.NoError(t, app.Err())
	return app
}

func docOf(t testing.TB, cfg Config) string {
	b, err := json.Marshal(map[string]any{"driver": cfg.Driver, "dsn": cfg.DSN.Reveal(), "database": cfg.Database})
	require.NoError(t, err)
	return string(b)
}

// TestModuleStartFailsOnUnreachableDatabase: the app does not start; the
// error is the module's CONNECTION error, within the dial timeout, without
// the password, and counted by the ErrorHandler.
func TestModuleStartFailsOnUnreachableDatabase(t *testing.T) {
	reader, mp := newMeter()
	core, logs := observer.New(zapcore.DebugLevel)
	doc := fmt.Sprintf(`{"host":"127.0.0.1","port":%s,"user":"app","password":%q,"database":"test","dialTimeout":"500ms"}`,
		portOf(t, silentServer(t)), password)
	var d *DB
	app := smallApp(t, doc, core, fx.Supply(fx.Annotate(mp, fx.As(new(metric.MeterProvider)))), fx.Populate(&d))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := app.Start(ctx)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 1500*time.Millisecond)
	assert.ErrorIs(t, err, lifecycle.ErrConnection)
	assert.NotContains(t, err.Error(), password)
	assert.NotContains(t, allText(logs), password)
	assert.EqualValues(t, 1, counterValueIn(t, reader, "github.com/gochat/im-infra/lifecycle", "infra.errors",
		attribute.String("type", "CONNECTION"), attribute.String("component", ModuleName)))
	assert.Equal(t, lifecycle.Unhealthy, NewHealthChecker(d).Check(context.Background()).State)
}

// TestModuleTwoAppsMigrateAtStart: two apps start at the same moment, each
// migrating in its own OnStart (after the db's, since it depends on *DB):
// every migration runs once, in order.
func TestModuleTwoAppsMigrateAtStart(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		cfg := tg.config(t)
		prefix := randomPrefix()
		fsys := migrations(t, tg.driver, prefix)
		table := prefix + "goose"
		migrateOnStart := fx.Invoke(func(lc fx.Lifecycle, d *DB) {
			lc.Append(fx.Hook{OnStart: func(ctx context.Context) error {
				return d.Migrate(ctx, fsys, "migrations", WithVersionTable(table))
			}})
		})
		cores := make([]*observer.ObservedLogs, 2)
		apps := make([]*fx.App, 2)
		var dbs [2]*DB
		for i := range apps {
			core, logs := observer.New(zapcore.InfoLevel)
			cores[i] = logs
			apps[i] = smallApp(t, docOf(t, cfg), core, migrateOnStart, fx.Populate(&dbs[i]))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, app := range apps {
			wg.Go(func() { errs[i] = app.Start(ctx) })
		}
		wg.Wait()
		t.Cleanup(func() {
			for _, app := range apps {
				_ = app.Stop(context.Background())
			}
		})
		require.NoError(t, errors.Join(errs...))
		td := &testDB{DB: dbs[0], prefix: prefix}
		t.Cleanup(func() { dropPrefixed(t, dbs[0], prefix) })
		assert.Equal(t, []int{2, 10}, steps(t, td))
		assert.Equal(t, []int64{0, 1, 2, 10}, versions(t, td, table))
		n := 0
		for _, l := range cores {
			n += l.FilterMessage("migration applied").Len()
		}
		assert.Equal(t, 3, n)
	})
}

func portOf(t testing.TB, addr string) string {
	_, port := splitHostPort(t, addr)
	return fmt.Sprint(port)
}
