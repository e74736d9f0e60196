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

// appOptions are the fx options of an app with clog on a memory source.
func appOptions(id lifecycle.Identity, src config.Source, extra ...fx.Option) fx.Option {
	return fx.Options(append([]fx.Option{
		fx.Supply(id),
		fx.Provide(func() config.Source { return src }),
		Module,
	}, extra...)...)
}

func TestModuleAppliesConfigLive(t *testing.T) {
	isolate(t)
	id := lifecycle.Identity{Service: "im-repo", Env: "test", Instance: "i-1", Version: "v1"}
	path := t.TempDir() + "/app.log"
	key := config.Key(id.Env, id.Service, "clog")
	src := config.NewMemorySource()
	src.Set(key, []byte(`{"output":"file","file":{"path":"`+path+`"}}`))

	var (
		v    *config.Value[Config]
		root *Logger
	)
	app := fxtest.New(t, appOptions(id, src,
		fx.WithLogger(func(l *Logger) fxevent.Logger { return FxEventLogger(ModuleLogger(l, "fx")) }),
		fx.Populate(&v, &root),
	))
	// Made before the app starts: it must follow everything below.
	cache := ModuleLogger(root, "cache")
	facadeCache := For("cache")
	app.RequireStart()

	cache.Debug("before the change")
	cache.Info("info before the change")
	facadeCache.Info("facade follows the app")

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
	assert.Contains(t, msgs, "facade follows the app")
	assert.Contains(t, msgs, "still debug")
	assert.Contains(t, msgs, "production logger applied")
	for _, l := range lines {
		assert.Equal(t, "im-repo", l["service"], "identity on every line: %v", l)
	}
}

func TestModuleWithoutDocumentUsesDefaults(t *testing.T) {
	isolate(t)
	id := lifecycle.Identity{Service: "im-logic", Env: "test", Instance: "i-2"}
	var a *appLogging
	app := fxtest.New(t, appOptions(id, config.NewMemorySource(), fx.NopLogger, fx.Populate(&a)))
	app.RequireStart()
	assert.Equal(t, zapcore.InfoLevel, a.hub.cur.Load().level)
	assert.True(t, a.hub.cur.Load().applied, "defaults are applied at start")
	app.RequireStop()
}

func TestModuleKeepsBootstrapWhenFileCannotOpen(t *testing.T) {
	isolate(t)
	id := lifecycle.Identity{Service: "im-task", Env: "test", Instance: "i-3"}
	src := config.NewMemorySource()
	src.Set(config.Key(id.Env, id.Service, "clog"), []byte(`{"output":"file","file":{"path":"/proc/no/such/dir/x.log"}}`))
	obs, logs := observer.New(zapcore.DebugLevel)
	var a *appLogging
	app := fxtest.New(t, appOptions(id, src, fx.NopLogger, fx.Populate(&a),
		fx.Supply(fx.Annotate(obs, fx.As(new(zapcore.Core)), fx.ResultTags(`name:"`+TeeName+`"`)))))
	app.RequireStart()
	assert.Nil(t, a.hub.cur.Load().sink)
	warned := logs.FilterMessage("logging config not applied; keeping the current logger").All()
	require.Len(t, warned, 1)
	assert.Equal(t, "im-task", warned[0].ContextMap()["service"])
	assert.Equal(t, "clog", warned[0].ContextMap()["module"])
	app.RequireStop()
}

// Two apps in one process (parallel tests) each keep their own logging:
// one app's config change never reaches the other's loggers, and the
// facade follows the app installed last while it lives.
func TestTwoAppsKeepSeparateLogging(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	start := func(name string) (*fxtest.App, *Logger, *config.MemorySource, string) {
		id := lifecycle.Identity{Service: name, Env: "test", Instance: name + "-1"}
		path := dir + "/" + name + ".log"
		src := config.NewMemorySource()
		src.Set(config.Key("test", name, "clog"), []byte(`{"output":"file","file":{"path":"`+path+`"}}`))
		var root *Logger
		app := fxtest.New(t, appOptions(id, src, fx.NopLogger, fx.Populate(&root)))
		app.RequireStart()
		return app, root, src, path
	}
	appA, logA, srcA, pathA := start("svc-a")
	appB, logB, _, pathB := start("svc-b")

	srcA.Set(config.Key("test", "svc-a", "clog"), []byte(`{"output":"file","file":{"path":"`+pathA+`"},"level":"debug"}`))
	require.Eventually(t, func() bool { return logA.Core().Enabled(zapcore.DebugLevel) }, time.Second, time.Millisecond)
	assert.False(t, logB.Core().Enabled(zapcore.DebugLevel), "A's level change does not reach B")

	logA.Debug("a debug")
	logB.Debug("b debug")
	Info("facade line")
	appB.RequireStop()
	Info("facade after b stopped")
	appA.RequireStop()

	assert.Equal(t, []string{"a debug", "facade after b stopped"}, filter(messages(t, pathA)))
	assert.Equal(t, []string{"facade line"}, filter(messages(t, pathB)))
}

// filter keeps the lines the test itself wrote.
func filter(msgs []string) []string {
	mine := []string{"a debug", "b debug", "facade line", "facade after b stopped"}
	return slices.DeleteFunc(msgs, func(m string) bool { return !slices.Contains(mine, m) })
}
