package clog

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The benchmarks put clog beside raw zap on the same JSON encoder config and
// an io.Discard sink, so the difference is the swappable core alone, and
// beside log/slog's JSON handler as the standard library's reference.
// Callers are on everywhere (the production default; slog's AddSource);
// the NoCaller pair shows what clog pays for capturing callers always.

const benchElapsed = 1500 * time.Millisecond

func benchZap(opts ...zap.Option) *zap.Logger {
	core := zapcore.NewCore(zapcore.NewJSONEncoder(encoderConfig(FormatJSON, true)), zapcore.AddSync(io.Discard), zapcore.InfoLevel)
	return zap.New(core, opts...)
}

// benchHub is a hub like the package's after Apply, on the discard core.
func benchHub(caller bool) *hub {
	raw := zapcore.NewCore(zapcore.NewJSONEncoder(encoderConfig(FormatJSON, caller)), zapcore.AddSync(io.Discard), zapcore.DebugLevel)
	return newHub(&state{raw: raw, base: raw, level: zapcore.InfoLevel, stack: zapcore.ErrorLevel, applied: true})
}

func benchSlog() *slog.Logger {
	return slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{AddSource: true}))
}

func BenchmarkInfo4Fields(b *testing.B) {
	b.Run("zap", func(b *testing.B) {
		l := benchZap(zap.AddCaller(), zap.AddStacktrace(zapcore.ErrorLevel))
		b.ReportAllocs()
		for b.Loop() {
			l.Info("request served", zap.String("user", "alice"), zap.Int("attempt", 3), zap.Bool("cached", true), zap.Duration("elapsed", benchElapsed))
		}
	})
	b.Run("clog", func(b *testing.B) {
		l := newLogger(benchHub(true).ref, "", nil)
		b.ReportAllocs()
		for b.Loop() {
			l.Info("request served", String("user", "alice"), Int("attempt", 3), Bool("cached", true), Duration("elapsed", benchElapsed))
		}
	})
	b.Run("slog", func(b *testing.B) {
		l := benchSlog()
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			l.LogAttrs(ctx, slog.LevelInfo, "request served", slog.String("user", "alice"), slog.Int("attempt", 3), slog.Bool("cached", true), slog.Duration("elapsed", benchElapsed))
		}
	})
}

// BenchmarkInfo4FieldsModule adds one accumulated field: zap.With against
// clog's Module logger, whose field is encoded once per generation.
func BenchmarkInfo4FieldsModule(b *testing.B) {
	b.Run("zap", func(b *testing.B) {
		l := benchZap(zap.AddCaller(), zap.AddStacktrace(zapcore.ErrorLevel)).With(zap.String("module", "cache"))
		b.ReportAllocs()
		for b.Loop() {
			l.Info("request served", zap.String("user", "alice"), zap.Int("attempt", 3), zap.Bool("cached", true), zap.Duration("elapsed", benchElapsed))
		}
	})
	b.Run("clog", func(b *testing.B) {
		l := newLogger(benchHub(true).ref, "cache", []Field{String("module", "cache")})
		b.ReportAllocs()
		for b.Loop() {
			l.Info("request served", String("user", "alice"), Int("attempt", 3), Bool("cached", true), Duration("elapsed", benchElapsed))
		}
	})
}

func BenchmarkInfo4FieldsNoCaller(b *testing.B) {
	b.Run("zap", func(b *testing.B) {
		l := benchZap(zap.AddStacktrace(zapcore.ErrorLevel))
		b.ReportAllocs()
		for b.Loop() {
			l.Info("request served", zap.String("user", "alice"), zap.Int("attempt", 3), zap.Bool("cached", true), zap.Duration("elapsed", benchElapsed))
		}
	})
	b.Run("clog", func(b *testing.B) {
		l := newLogger(benchHub(false).ref, "", nil)
		b.ReportAllocs()
		for b.Loop() {
			l.Info("request served", String("user", "alice"), Int("attempt", 3), Bool("cached", true), Duration("elapsed", benchElapsed))
		}
	})
}

func BenchmarkDisabledDebug4Fields(b *testing.B) {
	b.Run("zap", func(b *testing.B) {
		l := benchZap(zap.AddCaller(), zap.AddStacktrace(zapcore.ErrorLevel))
		b.ReportAllocs()
		for b.Loop() {
			l.Debug("request served", zap.String("user", "alice"), zap.Int("attempt", 3), zap.Bool("cached", true), zap.Duration("elapsed", benchElapsed))
		}
	})
	b.Run("clog", func(b *testing.B) {
		l := newLogger(benchHub(true).ref, "cache", []Field{String("module", "cache")})
		b.ReportAllocs()
		for b.Loop() {
			l.Debug("request served", String("user", "alice"), Int("attempt", 3), Bool("cached", true), Duration("elapsed", benchElapsed))
		}
	})
	b.Run("clog-check", func(b *testing.B) {
		l := newLogger(benchHub(true).ref, "cache", []Field{String("module", "cache")})
		b.ReportAllocs()
		for b.Loop() {
			if ce := l.Check(zapcore.DebugLevel, "request served"); ce != nil {
				ce.Write(String("user", "alice"), Int("attempt", 3), Bool("cached", true), Duration("elapsed", benchElapsed))
			}
		}
	})
	b.Run("slog", func(b *testing.B) {
		l := benchSlog()
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			l.LogAttrs(ctx, slog.LevelDebug, "request served", slog.String("user", "alice"), slog.Int("attempt", 3), slog.Bool("cached", true), slog.Duration("elapsed", benchElapsed))
		}
	})
}
