package clog

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/fx/fxtest"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

func TestFxModuleAppliesConfigLive(t *testing.T) {
	isolate(t)
	id := lifecycle.Identity{Service: "im-repo", Env: "test", Instance: "i-1", Version: "v1"}
	path := t.TempDir() + "/app.log"
	key := config.Key(id.Env, id.Service, "clog")
	src := config.NewMemorySource()
	src.Set(key, []byte(`{"output":"file","file":{"path":"`+path+`"}}`))

	// Made before the app exists: it must follow everything below.
	cache := Module("cache")

	var (
		v    *config.Value[Config]
		root *Logger
	)
	app := fxtest.New(t,
		fx.Supply(id),
		fx.Provide(func() config.Source { return src }),
		FxModule,
		fx.WithLogger(func() fxevent.Logger { return FxEventLogger(Module("fx")) }),
		fx.Populate(&v, &root),
	)
	app.RequireStart()
	assert.Same(t, L(), root)

	cache.Debug("before the change")
	cache.Info("info before the change")

	start := time.Now()
	src.Set(key, []byte(`{"output":"file","file":{"path":"`+path+`"},"levels":{"cache":"debug"}}`))
	require.Eventually(t, func() bool {
		cache.Debug("probe")
		return slices.Contains(messages(t, path), "probe")
	}, time.Second, time.Millisecond)
	elapsed := time.Since(start)
	assert.Less(t, elapsed, 100*time.Millisecond)
	t.Logf("debug lines appeared %v after the change", elapsed)

	// An invalid document is refused by config.Value; the level stays.
	src.Set(key, []byte(`{"output":"file","file":{"path":"`+path+`"},"level":"loud","levels":{"cache":"info"}}`))
	require.Eventually(t, func() bool { return v.Rejected() == 1 }, time.Second, time.Millisecond)
	assert.Equal(t, zapcore.DebugLevel, ModuleLevel("cache"))
	cache.Debug("still debug")

	app.RequireStop()

	lines := readLines(t, path)
	msgs := messages(t, path)
	assert.NotContains(t, msgs, "before the change")
	assert.Contains(t, msgs, "info before the change")
	assert.Contains(t, msgs, "still debug")
	for _, l := range lines {
		assert.Equal(t, "im-repo", l["service"], "identity on every line: %v", l)
	}
}

func TestFxModuleWithoutDocumentUsesDefaults(t *testing.T) {
	isolate(t)
	id := lifecycle.Identity{Service: "im-logic", Env: "test", Instance: "i-2"}
	src := config.NewMemorySource()
	app := fxtest.New(t,
		fx.Supply(id),
		fx.Provide(func() config.Source { return src }),
		FxModule,
		fx.NopLogger,
	)
	app.RequireStart()
	assert.Equal(t, zapcore.InfoLevel, Level())
	assert.True(t, std.cur.Load().applied, "defaults are applied at start")
	app.RequireStop()
}

func TestFxModuleKeepsBootstrapWhenFileCannotOpen(t *testing.T) {
	isolate(t)
	id := lifecycle.Identity{Service: "im-task", Env: "test", Instance: "i-3"}
	src := config.NewMemorySource()
	src.Set(config.Key(id.Env, id.Service, "clog"), []byte(`{"output":"file","file":{"path":"/proc/no/such/dir/x.log"}}`))
	obs, logs := observer.New(zapcore.DebugLevel)
	defer ReplaceCore(obs)()
	app := fxtest.New(t,
		fx.Supply(id),
		fx.Provide(func() config.Source { return src }),
		FxModule,
		fx.NopLogger,
	)
	app.RequireStart()
	assert.Nil(t, std.cur.Load().sink)
	warned := logs.FilterMessage("clog: config not applied; keeping the current logger").All()
	require.Len(t, warned, 1)
	assert.Equal(t, "im-task", warned[0].ContextMap()["service"])
	app.RequireStop()
}
