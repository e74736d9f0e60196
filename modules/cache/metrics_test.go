package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gochat/im-infra/lifecycle"
)

// testMeter returns a MeterProvider whose readings the test can collect.
func testMeter(t testing.TB) (*sdkmetric.MeterProvider, *sdkmetric.ManualReader) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return mp, reader
}

// collect returns every data point of instrument name.
func collect(t testing.TB, r *sdkmetric.ManualReader, name string) metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m.Data
			}
		}
	}
	return nil
}

// sumOf adds up the counter points of name whose attributes include attrs.
func sumOf(t testing.TB, r *sdkmetric.ManualReader, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	sum, ok := collect(t, r, name).(metricdata.Sum[int64])
	if !ok {
		return 0
	}
	var total int64
	for _, p := range sum.DataPoints {
		match := true
		for _, a := range attrs {
			if v, ok := p.Attributes.Value(a.Key); !ok || v != a.Value {
				match = false
			}
		}
		if match {
			total += p.Value
		}
	}
	return total
}

func TestMetricsCountCommandsByStatus(t *testing.T) {
	mp, reader := testMeter(t)
	addr, _ := testRedis(t)
	cfg := testConfig(t, addr)
	c, err := New(context.Background(), cfg, WithMeterProvider(mp))
	require.NoError(t, err)
	t.Cleanup(func() { deleteKeys(t, c.Client(), cfg.KeyPrefix); _ = c.Close() })
	ctx := context.Background()

	require.NoError(t, c.Set(ctx, "k", "v", time.Minute))
	_, err = c.Get(ctx, "k")
	require.NoError(t, err)
	_, err = c.Get(ctx, "missing")
	require.ErrorIs(t, err, ErrMiss)
	_, err = c.HGet(ctx, "k", "f") // WRONGTYPE
	require.Error(t, err)
	short, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	_, err = c.Get(short, "k")
	cancel()
	require.Error(t, err)

	cmd := func(name, status string) int64 {
		return sumOf(t, reader, "cache.commands", attribute.String("command", name), attribute.String("status", status))
	}
	assert.Equal(t, int64(1), cmd("set", "ok"))
	assert.Equal(t, int64(1), cmd("get", "ok"))
	assert.Equal(t, int64(1), cmd("get", "miss"))
	assert.Equal(t, int64(1), cmd("hget", "error"))
	assert.Equal(t, int64(1), cmd("get", "timeout"))

	hist, ok := collect(t, reader, "cache.command.duration").(metricdata.Histogram[float64])
	require.True(t, ok, "latency histogram exists")
	var count uint64
	for _, p := range hist.DataPoints {
		count += p.Count
	}
	assert.Equal(t, uint64(5), count, "one latency sample per call")
}

func TestClientSideCacheSeesWritesFromOtherConnections(t *testing.T) {
	addr, mini := testRedis(t)
	if mini {
		t.Skip("miniredis has no CLIENT TRACKING")
	}
	mp, reader := testMeter(t)
	cfg := testConfig(t, addr)
	c, err := New(context.Background(), cfg, WithMeterProvider(mp))
	require.NoError(t, err)
	t.Cleanup(func() { deleteKeys(t, c.Client(), cfg.KeyPrefix); _ = c.Close() })
	require.True(t, c.sess.Load().tracking, "real Redis 6+ supports tracking")
	ctx := context.Background()
	other := rawClient(t, addr, true) // another process's connection
	key := cfg.KeyPrefix + "hot"

	require.NoError(t, other.Do(ctx, other.B().Set().Key(key).Value("v1").Build()).Error())
	v, err := c.GetCached(ctx, "hot", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, "v1", v)
	v, err = c.GetCached(ctx, "hot", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, "v1", v)
	assert.Equal(t, int64(1), sumOf(t, reader, "cache.client_cache.misses"))
	assert.Equal(t, int64(1), sumOf(t, reader, "cache.client_cache.hits"), "the second read is served from memory")
	assert.Equal(t, int64(1), sumOf(t, reader, "cache.commands", attribute.String("command", "get")),
		"a hit is not a command sent to Redis")

	// Another connection writes: Redis invalidates our copy, and the next
	// cached read returns the new value (the invalidation is pushed
	// asynchronously, so allow it a moment to arrive).
	require.NoError(t, other.Do(ctx, other.B().Set().Key(key).Value("v2").Build()).Error())
	require.Eventually(t, func() bool {
		v, err := c.GetCached(ctx, "hot", time.Minute)
		return err == nil && v == "v2"
	}, time.Second, time.Millisecond)

	// A delete elsewhere turns the next cached read into a miss.
	require.NoError(t, other.Do(ctx, other.B().Del().Key(key).Build()).Error())
	require.Eventually(t, func() bool {
		_, err := c.GetCached(ctx, "hot", time.Minute)
		return errors.Is(err, ErrMiss)
	}, time.Second, time.Millisecond)
}

func TestClientSideCacheFallsBackWithoutTracking(t *testing.T) {
	for _, tc := range []struct {
		name string
		mini bool
	}{{"miniredis", true}, {"disabled by config", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var addr string
			if tc.mini {
				addr = startMiniredis(t)
			} else {
				addr, _ = testRedis(t)
			}
			log, logs := observedLogger()
			cfg := testConfig(t, addr)
			cfg.ClientCache.Disabled = !tc.mini
			c, err := New(context.Background(), cfg, WithLogger(log))
			require.NoError(t, err)
			t.Cleanup(func() { deleteKeys(t, c.Client(), cfg.KeyPrefix); _ = c.Close() })
			assert.False(t, c.sess.Load().tracking)
			warned := logs.FilterMessageSnippet("CLIENT TRACKING").Len()
			if tc.mini {
				assert.Equal(t, 1, warned, "the fallback is logged once, at connect")
			} else {
				assert.Zero(t, warned, "disabling it on purpose is not a warning")
			}

			ctx := context.Background()
			require.NoError(t, c.Set(ctx, "k", "v1", time.Minute))
			v, err := c.GetCached(ctx, "k", time.Minute)
			require.NoError(t, err)
			assert.Equal(t, "v1", v)
			require.NoError(t, c.Set(ctx, "k", "v2", time.Minute))
			v, err = c.GetCached(ctx, "k", time.Minute)
			require.NoError(t, err)
			assert.Equal(t, "v2", v, "plain reads see every write at once")
			assert.Equal(t, warned, logs.FilterMessageSnippet("CLIENT TRACKING").Len(), "and reads log nothing more")
		})
	}
}

func TestErrorsGoThroughTheErrorHandlerOnce(t *testing.T) {
	mp, reader := testMeter(t)
	addr, _ := testRedis(t)
	cfg := testConfig(t, addr)
	c, err := New(context.Background(), cfg, WithErrorHandler(lifecycle.NewErrorHandler(mp)))
	require.NoError(t, err)
	t.Cleanup(func() { deleteKeys(t, c.Client(), cfg.KeyPrefix); _ = c.Close() })
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "str", "x", time.Minute))

	_, err = c.HGet(ctx, "str", "f") // WRONGTYPE: VALIDATION
	require.Error(t, err)
	_, err = c.GetOrLoad(ctx, "str-not-json", time.Minute, func(context.Context) (any, error) { return make(chan int), nil })
	require.Error(t, err) // cannot encode: VALIDATION, counted once though it passes through GetOrLoad's layers
	_, err = c.Get(ctx, "missing")
	require.ErrorIs(t, err, ErrMiss) // not an infrastructure error
	lk, err := c.TryLock(ctx, "l", time.Second)
	require.NoError(t, err)
	_, err = c.TryLock(ctx, "l", time.Second)
	require.ErrorIs(t, err, ErrLockHeld) // an answer, not counted
	require.NoError(t, lk.Unlock(ctx))

	assert.Equal(t, int64(2), sumOf(t, reader, "infra.errors", attribute.String("type", "VALIDATION"), attribute.String("component", ModuleName)))
	assert.Equal(t, int64(2), sumOf(t, reader, "infra.errors"), "nothing else was counted")
}

func TestSpansWithATracerProvider(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	addr, _ := testRedis(t)
	cfg := testConfig(t, addr)
	c, err := New(context.Background(), cfg, WithTracerProvider(tp))
	require.NoError(t, err)
	t.Cleanup(func() { deleteKeys(t, c.Client(), cfg.KeyPrefix); _ = c.Close() })
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "k", "v", time.Minute))
	_, err = c.HGet(ctx, "k", "f")
	require.Error(t, err)

	spans := rec.Ended()
	require.Len(t, spans, 2)
	assert.Equal(t, "cache set", spans[0].Name())
	assert.Equal(t, codes.Unset, spans[0].Status().Code)
	assert.Equal(t, "cache hget", spans[1].Name())
	assert.Equal(t, codes.Error, spans[1].Status().Code)
	var op string
	for _, a := range spans[1].Attributes() {
		if a.Key == "db.operation.name" {
			op = a.Value.AsString()
		}
	}
	assert.Equal(t, "hget", op)
}

func TestCallersShortDeadlineIsNotAnOutage(t *testing.T) {
	addr, _ := testRedis(t)
	log, logs := observedLogger()
	cfg := testConfig(t, addr)
	c, err := New(context.Background(), cfg, WithLogger(log))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err = c.Get(expired, "k")
	require.ErrorIs(t, err, lifecycle.ErrTimeout)
	assert.Zero(t, logs.FilterMessageSnippet("unreachable").Len())
}
