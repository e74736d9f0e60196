package metrics

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// collect reads every metric from r by name.
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

func sumOf[N int64 | float64](t *testing.T, m metricdata.Metrics) N {
	t.Helper()
	switch d := m.Data.(type) {
	case metricdata.Sum[N]:
		var total N
		for _, p := range d.DataPoints {
			total += p.Value
		}
		return total
	case metricdata.Gauge[N]:
		require.Len(t, d.DataPoints, 1, m.Name)
		return d.DataPoints[0].Value
	case metricdata.Histogram[N]:
		var total N
		for _, p := range d.DataPoints {
			total += p.Sum
		}
		return total
	}
	t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
	return 0
}

// TestDeferredMeterBindsEveryKind creates every kind of instrument before
// the SDK exists (as modules do in their constructors), records before
// and after bind, and reads what the SDK got: only what came after bind.
func TestDeferredMeterBindsEveryKind(t *testing.T) {
	ctx := context.Background()
	var d deferredMeterProvider
	m := d.Meter("test")

	i64c, _ := m.Int64Counter("i64c")
	i64u, _ := m.Int64UpDownCounter("i64u")
	i64h, _ := m.Int64Histogram("i64h")
	i64g, _ := m.Int64Gauge("i64g")
	f64c, _ := m.Float64Counter("f64c")
	f64u, _ := m.Float64UpDownCounter("f64u")
	f64h, _ := m.Float64Histogram("f64h")
	f64g, _ := m.Float64Gauge("f64g")
	// Observables with callbacks given as options ...
	_, _ = m.Int64ObservableCounter("oi64c", metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error { o.Observe(7); return nil }))
	_, _ = m.Float64ObservableGauge("of64g", metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error { o.Observe(2.5); return nil }))
	// ... and with RegisterCallback, before and after bind.
	oi64u, _ := m.Int64ObservableUpDownCounter("oi64u")
	oi64g, _ := m.Int64ObservableGauge("oi64g")
	of64c, _ := m.Float64ObservableCounter("of64c")
	of64u, _ := m.Float64ObservableUpDownCounter("of64u")
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(oi64u, -3)
		o.ObserveInt64(oi64g, 11)
		o.ObserveFloat64(of64c, 1.5)
		return nil
	}, oi64u, oi64g, of64c)
	require.NoError(t, err)
	gone, err := m.RegisterCallback(func(context.Context, metric.Observer) error {
		t.Error("a callback unregistered before bind must never run")
		return nil
	}, oi64g)
	require.NoError(t, err)
	require.NoError(t, gone.Unregister())

	record := func() {
		i64c.Add(ctx, 1)
		i64u.Add(ctx, -2)
		i64h.Record(ctx, 3)
		i64g.Record(ctx, 4)
		f64c.Add(ctx, 1.5)
		f64u.Add(ctx, -0.5)
		f64h.Record(ctx, 0.25)
		f64g.Record(ctx, 9)
	}
	assert.False(t, i64c.Enabled(ctx))
	record() // before the SDK exists: dropped

	reader := sdkmetric.NewManualReader()
	sdk := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = sdk.Shutdown(ctx) }()
	require.NoError(t, d.bind(sdk))
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveFloat64(of64u, -4)
		return nil
	}, of64u)
	require.NoError(t, err)
	assert.True(t, i64c.Enabled(ctx))
	record()

	got := collect(t, reader)
	assert.Equal(t, int64(1), sumOf[int64](t, got["i64c"]), "only the measurements after bind")
	assert.Equal(t, int64(-2), sumOf[int64](t, got["i64u"]))
	assert.Equal(t, int64(3), sumOf[int64](t, got["i64h"]))
	assert.Equal(t, int64(4), sumOf[int64](t, got["i64g"]))
	assert.Equal(t, 1.5, sumOf[float64](t, got["f64c"]))
	assert.Equal(t, -0.5, sumOf[float64](t, got["f64u"]))
	assert.Equal(t, 0.25, sumOf[float64](t, got["f64h"]))
	assert.Equal(t, 9.0, sumOf[float64](t, got["f64g"]))
	assert.Equal(t, int64(7), sumOf[int64](t, got["oi64c"]))
	assert.Equal(t, 2.5, sumOf[float64](t, got["of64g"]))
	assert.Equal(t, int64(-3), sumOf[int64](t, got["oi64u"]))
	assert.Equal(t, int64(11), sumOf[int64](t, got["oi64g"]))
	assert.Equal(t, 1.5, sumOf[float64](t, got["of64c"]))
	assert.Equal(t, -4.0, sumOf[float64](t, got["of64u"]), "a callback registered after bind on a placeholder")

	// After bind, Meter and new instruments come from the SDK directly.
	_, isPlaceholder := d.Meter("after").(*deferredMeter)
	assert.False(t, isPlaceholder)
	c, _ := m.Int64Counter("late")
	_, isPlaceholder = c.(*int64Counter)
	assert.False(t, isPlaceholder)
}

func TestDeferredMeterUnregisterAfterBind(t *testing.T) {
	ctx := context.Background()
	var d deferredMeterProvider
	m := d.Meter("test")
	g, _ := m.Int64ObservableGauge("g")
	calls := 0
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		calls++
		o.ObserveInt64(g, 1)
		return nil
	}, g)
	require.NoError(t, err)

	reader := sdkmetric.NewManualReader()
	sdk := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = sdk.Shutdown(ctx) }()
	require.NoError(t, d.bind(sdk))
	collect(t, reader)
	require.Equal(t, 1, calls)
	require.NoError(t, reg.Unregister())
	collect(t, reader)
	assert.Equal(t, 1, calls, "unregistered callbacks stop")
}

func TestDeferredMeterReportsRefusedInstruments(t *testing.T) {
	var d deferredMeterProvider
	c, err := d.Meter("test").Int64Counter("1-not-a-name")
	require.NoError(t, err, "placeholders cannot check names; bind reports them")
	sdk := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer func() { _ = sdk.Shutdown(context.Background()) }()
	err = d.bind(sdk)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "1-not-a-name")
	c.Add(context.Background(), 1) // still safe
}

// TestDeferredTracer: a tracer taken before bind makes no-op spans that
// keep the caller's span context, then real spans after bind.
func TestDeferredTracer(t *testing.T) {
	ctx := context.Background()
	var d deferredTracerProvider
	tr := d.Tracer("test")

	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	pctx := trace.ContextWithRemoteSpanContext(ctx, parent)
	_, span := tr.Start(pctx, "before")
	assert.False(t, span.IsRecording())
	assert.Equal(t, parent.TraceID(), span.SpanContext().TraceID(), "the incoming trace ID survives")
	span.End()

	rec := tracetest.NewSpanRecorder()
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = sdk.Shutdown(ctx) }()
	d.bind(sdk)
	_, span = tr.Start(pctx, "after", trace.WithAttributes(attribute.String("k", "v")))
	assert.True(t, span.IsRecording())
	span.End()
	require.Len(t, rec.Ended(), 1)
	assert.Equal(t, "after", rec.Ended()[0].Name())
	assert.Equal(t, parent.TraceID(), rec.Ended()[0].SpanContext().TraceID())
	_, isPlaceholder := d.Tracer("new").(*deferredTracer)
	assert.False(t, isPlaceholder)
}
