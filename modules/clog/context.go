package clog

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// TraceFields returns trace_id and span_id of the span in ctx, or nil when
// ctx holds no valid span context. It composes with any logger, per line or
// per request:
//
//	log.Info("order stored", clog.TraceFields(ctx)...)
//	reqLog := log.With(clog.TraceFields(ctx)...)
func TraceFields(ctx context.Context) []Field {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return []Field{
		zap.String("trace_id", sc.TraceID().String()),
		zap.String("span_id", sc.SpanID().String()),
	}
}

// WithContext returns the root logger with the trace fields of ctx; without
// a valid span it returns L() itself, at no cost.
func WithContext(ctx context.Context) *Logger { return root.With(TraceFields(ctx)...) }
