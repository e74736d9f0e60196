package mq

import (
	"context"
	"reflect"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// W3C trace context travels in the "traceparent" (and "tracestate")
// headers. With a TracerProvider, franz-go's kotel plugin makes publish,
// receive and process spans and carries their context. Without one, only
// the caller's context is carried: kotel would build span attributes for
// every record just to throw them away, which costs more than the rest of
// consuming a record.
var w3c = propagation.TraceContext{}

const traceparent = "traceparent"

// newTracer returns kotel's tracer for tp, or nil when tracing is off.
func newTracer(tp trace.TracerProvider, group string) *kotel.Tracer {
	if tp == nil {
		return nil
	}
	opts := []kotel.TracerOpt{
		kotel.TracerProvider(tp),
		// Explicit: the global propagator is a no-op unless a program sets it.
		kotel.TracerPropagator(w3c),
	}
	if group != "" {
		opts = append(opts, kotel.ConsumerGroup(group))
	}
	return kotel.NewTracer(opts...)
}

// traceHooks are the franz-go hooks that make spans (none without a
// tracer: Send then injects the caller's context itself, see inject).
func traceHooks(t *kotel.Tracer) []kgo.Hook {
	if t != nil {
		return kotel.NewKotel(kotel.WithTracer(t)).Hooks()
	}
	return nil
}

// noSpan is the type of the span trace.SpanFromContext returns for a ctx
// without one (OTel's no-op span, whose span context is never valid).
var noSpan = reflect.TypeOf(trace.SpanFromContext(context.Background()))

// inject writes the sender's span context, if ctx has one, into r's
// headers, and reports whether it did; used when kotel's publish span
// does not. The no-op span is recognised by its type: building its
// SpanContext to find it invalid costs about 130 instructions, more than
// the rest of Send.
func inject(ctx context.Context, r *kgo.Record) bool {
	span := trace.SpanFromContext(ctx)
	if reflect.TypeOf(span) == noSpan || !span.SpanContext().IsValid() {
		return false
	}
	w3c.Inject(ctx, kotel.NewRecordCarrier(r))
	return true
}

// handlerContext is the ctx a record's handler runs in: cancellation from
// base, and the sender's trace.
func handlerContext(base context.Context, t *kotel.Tracer, r *kgo.Record) context.Context {
	if t != nil {
		// kotel's receive hook left the sender's trace in r.Context.
		return trace.ContextWithSpan(base, trace.SpanFromContext(r.Context))
	}
	for _, h := range r.Headers {
		if h.Key == traceparent {
			return w3c.Extract(base, kotel.NewRecordCarrier(r))
		}
	}
	return base
}

// processSpan starts the "process" span of one handler call, when tracing.
func processSpan(t *kotel.Tracer, ctx context.Context, r *kgo.Record) (context.Context, func(error)) {
	if t == nil {
		return ctx, func(error) {}
	}
	r.Context = ctx
	ctx, span := t.WithProcessSpan(r)
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "handler failed")
		}
		span.End()
	}
}
