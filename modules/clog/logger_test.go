package clog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

func TestModuleLoggerCreatedBeforeApplyFollowsItsLevel(t *testing.T) {
	isolate(t)
	cache := For("cache")
	db := For("db")

	cfg, path := fileConfig(t)
	require.NoError(t, Apply(cfg))
	cache.Debug("cache debug 1")
	cache.Info("cache info 1")

	cfg.Levels = map[string]string{"cache": "debug"}
	require.NoError(t, Apply(cfg))
	cache.Debug("cache debug 2")
	db.Debug("db debug 2")
	L().Debug("root debug 2")
	assert.Equal(t, zapcore.DebugLevel, cache.Level())
	assert.Equal(t, zapcore.InfoLevel, db.Level())

	lines := readLines(t, path)
	require.Equal(t, []string{"cache info 1", "cache debug 2"}, messages(t, path))
	assert.Equal(t, "cache", lines[1]["module"])
	assert.Equal(t, "debug", lines[1]["level"])
}

func TestFacadeFollowsSwapAndReportsCaller(t *testing.T) {
	isolate(t)
	root := L()
	cfg, path := fileConfig(t)
	require.NoError(t, Apply(cfg))

	Info("facade info", String("k", "v"))
	root.Warn("root warn")
	Debug("facade debug")

	lines := readLines(t, path)
	require.Len(t, lines, 2)
	assert.Equal(t, "facade info", lines[0]["msg"])
	assert.Equal(t, "v", lines[0]["k"])
	assert.Contains(t, lines[0]["caller"], "clog/logger_test.go:", "caller must be the user, not the facade")
	assert.Contains(t, lines[1]["caller"], "clog/logger_test.go:")
}

func TestWithFieldsSurviveSwap(t *testing.T) {
	isolate(t)
	l := For("orders").With(String("tenant", "t1")).Named("sub")
	cfgA, pathA := fileConfig(t)
	require.NoError(t, Apply(cfgA))
	l.Info("on A")

	cfgB, pathB := fileConfig(t)
	require.NoError(t, Apply(cfgB))
	l.Info("on B", Int("n", 2))

	require.Equal(t, []string{"on A"}, messages(t, pathA))
	lines := readLines(t, pathB)
	require.Len(t, lines, 1)
	assert.Equal(t, "t1", lines[0]["tenant"])
	assert.Equal(t, "orders", lines[0]["module"])
	assert.Equal(t, "sub", lines[0]["logger"])
	assert.EqualValues(t, 2, lines[0]["n"])
}

func TestBootstrapIdentityStaysThroughApply(t *testing.T) {
	isolate(t)
	l := For("x")
	Bootstrap(lifecycle.Identity{Service: "im-repo", Env: "test", Instance: "i-1"})
	cfg, path := fileConfig(t)
	require.NoError(t, Apply(cfg))
	l.Info("one")
	// A late Bootstrap keeps the production core and only renames.
	Bootstrap(lifecycle.Identity{Service: "im-repo", Env: "test", Instance: "i-2"})
	l.Info("two")

	lines := readLines(t, path)
	require.Len(t, lines, 2)
	for i, inst := range []string{"i-1", "i-2"} {
		assert.Equal(t, "im-repo", lines[i]["service"])
		assert.Equal(t, "test", lines[i]["env"])
		assert.Equal(t, inst, lines[i]["instance"])
	}
}

func TestInvalidConfigIsRefusedAndOldKept(t *testing.T) {
	isolate(t)
	l := For("cache")
	cfg, path := fileConfig(t)
	cfg.Levels = map[string]string{"cache": "debug"}
	require.NoError(t, Apply(cfg))

	bad := cfg
	bad.Level = "loud"
	err := Apply(bad)
	require.Error(t, err)
	assert.True(t, errors.Is(err, lifecycle.ErrValidation))

	unwritable := cfg
	unwritable.File.Path = filepath.Join(t.TempDir(), "file-not-dir", "x.log")
	require.NoError(t, os.WriteFile(filepath.Dir(unwritable.File.Path), nil, 0o600))
	err = Apply(unwritable)
	var ie *lifecycle.InfraError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, lifecycle.TypeConfig, ie.Type)
	assert.Equal(t, "file.path", ie.Field)

	l.Debug("still debug, still here")
	assert.Equal(t, []string{"still debug, still here"}, messages(t, path))
}

func TestFileRotation(t *testing.T) {
	isolate(t)
	cfg, path := fileConfig(t)
	cfg.File.MaxSizeMB = 1
	cfg.File.MaxBackups = 2
	require.NoError(t, Apply(cfg))

	payload := strings.Repeat("x", 1000)
	for i := range 3000 { // ~3 MB: at least two rotations
		Info("fill", Int("i", i), String("payload", payload))
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.GreaterOrEqual(t, len(names), 3, "active file and backups: %v", names)
	assert.Contains(t, names, "app.log")
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.LessOrEqual(t, info.Size(), int64(1<<20))
}

func TestStacktraceAndCallerFollowApply(t *testing.T) {
	isolate(t)
	l := For("m")
	cfg, path := fileConfig(t)
	cfg.StacktraceLevel = "warn"
	require.NoError(t, Apply(cfg))
	l.Warn("with stack")

	cfg2, path2 := fileConfig(t)
	cfg2.StacktraceLevel = "off"
	cfg2.Caller = false
	require.NoError(t, Apply(cfg2))
	l.Error("no stack")

	a := readLines(t, path)
	require.Len(t, a, 1)
	assert.Contains(t, a[0]["stacktrace"], "TestStacktraceAndCallerFollowApply")
	assert.Contains(t, a[0], "caller")
	b := readLines(t, path2)
	require.Len(t, b, 1)
	assert.NotContains(t, b[0], "stacktrace")
	assert.NotContains(t, b[0], "caller")
}

func TestSampling(t *testing.T) {
	isolate(t)
	cfg, path := fileConfig(t)
	cfg.Sampling = &SamplingConfig{Initial: 2, Thereafter: 0, Tick: config.Duration(0)}
	require.NoError(t, Apply(cfg))
	for range 10 {
		Info("same line")
	}
	Info("other line")
	assert.Equal(t, []string{"same line", "same line", "other line"}, messages(t, path))
}

func TestConsoleFormat(t *testing.T) {
	isolate(t)
	cfg, path := fileConfig(t)
	cfg.Format = FormatConsole
	require.NoError(t, Apply(cfg))
	For("cache").Info("hello", Int("n", 1))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Regexp(t, `^\S+\tINFO\tclog/logger_test.go:\d+\thello\t\{"module": "cache", "n": 1\}\n$`, string(b))
}

func TestZeroConfigApplies(t *testing.T) {
	isolate(t)
	require.NoError(t, Apply(Config{}))
	assert.Equal(t, zapcore.InfoLevel, Level())
}

func TestSetLevels(t *testing.T) {
	isolate(t)
	obs, logs := observer.New(zapcore.DebugLevel)
	outer, _ := observer.New(zapcore.DebugLevel)
	defer ReplaceCore(outer)() // keep the stderr of the test run clean
	restore := ReplaceCore(obs)
	l := For("cache")

	l.Debug("dropped")
	SetModuleLevel("cache", zapcore.DebugLevel)
	assert.Equal(t, zapcore.DebugLevel, ModuleLevel("cache"))
	l.Debug("kept")
	SetLevel(zapcore.ErrorLevel)
	assert.Equal(t, zapcore.ErrorLevel, Level())
	Warn("dropped too")
	l.Debug("module level wins")

	require.Equal(t, 2, logs.Len())
	assert.Equal(t, "kept", logs.All()[0].Message)
	assert.Equal(t, "module level wins", logs.All()[1].Message)

	restore()
	Error("after restore goes elsewhere")
	assert.Equal(t, 2, logs.Len())
}

func TestReplaceCoreRestoreNests(t *testing.T) {
	isolate(t)
	outer, outerLogs := observer.New(zapcore.DebugLevel)
	inner, innerLogs := observer.New(zapcore.DebugLevel)
	restoreOuter := ReplaceCore(outer)
	defer restoreOuter()
	restoreInner := ReplaceCore(inner)
	Info("to inner")
	restoreInner()
	Info("to outer")
	assert.Equal(t, 1, innerLogs.Len())
	require.Equal(t, 1, outerLogs.Len())
	assert.Equal(t, "to outer", outerLogs.All()[0].Message)
}

func TestTraceFields(t *testing.T) {
	isolate(t)
	obs, logs := observer.New(zapcore.DebugLevel)
	defer ReplaceCore(obs)()

	assert.Nil(t, TraceFields(context.Background()))
	assert.Same(t, L(), WithContext(context.Background()), "no span: no new logger")

	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10},
		SpanID:     trace.SpanID{0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	WithContext(ctx).Info("traced")
	For("m").Info("per line", TraceFields(ctx)...)

	require.Equal(t, 2, logs.Len())
	for _, e := range logs.All() {
		m := e.ContextMap()
		assert.Equal(t, "0102030405060708090a0b0c0d0e0f10", m["trace_id"])
		assert.Equal(t, "a1a2a3a4a5a6a7a8", m["span_id"])
	}
}

// TestDisabledDebugAllocatesLikeZap pins the guard path: a disabled call
// costs no allocation of clog's own. With fields, zap's variadic API makes
// the compiler heap-allocate the []Field at the call site (raw zap pays the
// same one allocation); guarding with Check avoids even that.
func TestDisabledDebugAllocatesLikeZap(t *testing.T) {
	isolate(t)
	obs, _ := observer.New(zapcore.DebugLevel)
	defer ReplaceCore(obs)()
	l := For("cache").With(String("k", "v"))
	l.Info("warm the per-generation cache")
	raw := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(encoderConfig(FormatJSON, true)), zapcore.AddSync(io.Discard), zapcore.InfoLevel))

	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		l.Debug("disabled")
		Debug("disabled facade")
		if ce := l.Check(zapcore.DebugLevel, "guarded"); ce != nil {
			ce.Write(String("a", "b"), Int("n", 1), Bool("ok", true), Duration("d", 0))
		}
	}))
	withFields := func(log *Logger) func() {
		return func() { log.Debug("disabled", String("a", "b"), Int("n", 1), Bool("ok", true), Duration("d", 0)) }
	}
	assert.Equal(t, testing.AllocsPerRun(1000, withFields(raw)), testing.AllocsPerRun(1000, withFields(l)))
}

// TestConcurrentLoggingDuringSwaps is for -race: loggers of every kind log
// while the core, levels and identity swap under them.
func TestConcurrentLoggingDuringSwaps(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	cfg := Config{}.Defaults()
	cfg.Output = OutputFile
	cfg.File.Path = filepath.Join(dir, "app.log")
	require.NoError(t, Apply(cfg))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loggers := []*Logger{L(), For("cache"), For("db").With(String("k", "v")), WithContext(context.Background())}
	for i := range 4 {
		wg.Go(func() {
			l := loggers[i]
			derived := l.With(Int("g", i))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				l.Debug("debug", Int("n", n))
				derived.Info("info", Int("n", n))
				Warn("facade")
				_ = l.Level()
			}
		})
	}
	for i := range 50 {
		cfg := Config{}.Defaults()
		cfg.Output = OutputFile
		cfg.File.Path = filepath.Join(dir, fmt.Sprintf("app-%d.log", i%3))
		if i%2 == 0 {
			cfg.Levels = map[string]string{"cache": "debug"}
			cfg.Format = FormatConsole
		}
		require.NoError(t, Apply(cfg))
		SetModuleLevel("db", zapcore.DebugLevel)
		Bootstrap(lifecycle.Identity{Service: "s", Env: "test", Instance: fmt.Sprint(i)})
	}
	close(stop)
	wg.Wait()
	require.NoError(t, Sync())
}

func TestReplaceCoreKeepsIdentity(t *testing.T) {
	isolate(t)
	Bootstrap(lifecycle.Identity{Service: "svc", Env: "dev", Instance: "i"})
	var buf bytes.Buffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zapcore.EncoderConfig{MessageKey: "msg"}), zapcore.AddSync(&buf), zapcore.DebugLevel)
	restore := ReplaceCore(core)
	defer restore()
	Info("x")
	assert.JSONEq(t, `{"msg":"x","service":"svc","env":"dev","instance":"i"}`, buf.String())
}
