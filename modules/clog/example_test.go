package clog_test

import (
	"context"
	"fmt"
	"os"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/modules/clog"
)

// stdoutCore prints console lines without timestamps or callers, so the
// examples' output is deterministic.
func stdoutCore() zapcore.Core {
	enc := zapcore.NewConsoleEncoder(zapcore.EncoderConfig{
		LevelKey:    "level",
		MessageKey:  "msg",
		EncodeLevel: zapcore.CapitalLevelEncoder,
	})
	return zapcore.NewCore(enc, zapcore.Lock(os.Stdout), zapcore.DebugLevel)
}

// A module logger made early follows level changes made later.
func ExampleFor() {
	restore := clog.ReplaceCore(stdoutCore())
	defer restore()

	cache := clog.For("cache")
	cache.Debug("not shown: the global level is info")

	clog.SetModuleLevel("cache", zapcore.DebugLevel)
	cache.Debug("shown", clog.String("key", "user:42"))
	clog.Debug("the root logger stays at info")
	// Output:
	// DEBUG	shown	{"module": "cache", "key": "user:42"}
}

func ExampleTraceFields() {
	restore := clog.ReplaceCore(stdoutCore())
	defer restore()

	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)

	clog.For("orders").Info("order stored", clog.TraceFields(ctx)...)
	clog.WithContext(context.Background()).Info("no span, no trace fields")
	// Output:
	// INFO	order stored	{"module": "orders", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}
	// INFO	no span, no trace fields
}

// The document a service keeps at /config/{env}/{service}/clog. Fields left
// out keep their defaults.
func ExampleConfig() {
	doc := []byte(`{"level": "warn", "levels": {"cache": "debug"}, "sampling": {"initial": 100, "thereafter": 100, "tick": "1s"}}`)
	cfg, err := config.Parse[clog.Config]("clog", config.Layer{Key: config.Key("prod", "im-repo", "clog"), Data: doc})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Level, cfg.Format, cfg.Output, cfg.Levels["cache"], cfg.Sampling.Tick)

	_, err = config.Parse[clog.Config]("clog", config.Layer{Key: "k", Data: []byte(`{"levels": {"cache": "loud"}}`)})
	fmt.Println(err)
	// Output:
	// warn json stderr debug 1s
	// clog: validate [VALIDATION] field "levels.cache": key k: unknown level "loud": want debug, info, warn or error
}
