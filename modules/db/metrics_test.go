package db

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"gorm.io/gorm"
)

func newMeter() (*sdkmetric.ManualReader, *sdkmetric.MeterProvider) {
	r := sdkmetric.NewManualReader()
	return r, sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
}

func collect(t testing.TB, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	return collectIn(t, r, meterName)
}

func collectIn(t testing.TB, r *sdkmetric.ManualReader, scope string) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != scope {
			continue
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// counterValue sums an int64 counter (or gauge) over its attribute sets.
func counterValue(t testing.TB, r *sdkmetric.ManualReader, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	return counterValueIn(t, r, meterName, name, attrs...)
}

func counterValueIn(t testing.TB, r *sdkmetric.ManualReader, scope, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	m, ok := collectIn(t, r, scope)[name]
	if !ok {
		return 0
	}
	want := attribute.NewSet(attrs...)
	var sum int64
	switch data := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, dp := range data.DataPoints {
			if want.Len() == 0 || dp.Attributes.Equals(&want) {
				sum += dp.Value
			}
		}
	case metricdata.Gauge[int64]:
		for _, dp := range data.DataPoints {
			sum += dp.Value
		}
	default:
		t.Fatalf("%s is %T", name, m.Data)
	}
	return sum
}

func histogramCount(t testing.TB, r *sdkmetric.ManualReader, name, op string) uint64 {
	t.Helper()
	m, ok := collect(t, r)[name]
	require.True(t, ok, name)
	want := attribute.NewSet(attribute.String("operation", op))
	for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Count
		}
	}
	return 0
}

func TestMetrics(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		reader, mp := newMeter()
		d := openDB(t, tg.config(t), WithMeterProvider(mp))
		ctx := ctxT(t, 20*time.Second)
		require.NoError(t, d.AutoMigrate(ctx, &Item{}))
		// AutoMigrate ran statements too; count from here.
		base := map[string]uint64{}
		for _, op := range operations {
			base[op] = histogramCount(t, reader, "db.query.duration", op)
		}
		count := func(op string) uint64 { return histogramCount(t, reader, "db.query.duration", op) - base[op] }
		baseErrs := counterValue(t, reader, "db.query.errors")

		it := Item{Name: "m"}
		require.NoError(t, d.WithContext(ctx).Create(&it).Error)
		require.NoError(t, d.WithContext(ctx).First(&Item{}, it.ID).Error)
		require.ErrorIs(t, d.WithContext(ctx).First(&Item{}, it.ID+100).Error, gorm.ErrRecordNotFound)
		require.NoError(t, d.WithContext(ctx).Model(&it).Update("qty", 2).Error)
		var n int
		require.NoError(t, d.WithContext(ctx).Raw("SELECT 1").Row().Scan(&n))
		require.Error(t, d.WithContext(ctx).Exec("SELECT * FROM no_such_table_"+d.prefix).Error)
		require.ErrorIs(t, d.WithContext(ctx).Create(&Item{Name: "m"}).Error, gorm.ErrDuplicatedKey)
		require.NoError(t, d.WithContext(ctx).Delete(&it).Error)

		assert.EqualValues(t, 2, count("create"))
		assert.EqualValues(t, 2, count("query"))
		assert.EqualValues(t, 1, count("update"))
		assert.EqualValues(t, 1, count("delete"))
		assert.EqualValues(t, 1, count("row"))
		assert.EqualValues(t, 1, count("raw"))
		assert.EqualValues(t, 2, counterValue(t, reader, "db.query.errors")-baseErrs)

		// Record-not-found is an answer; the bad table and the duplicate are failures.
		assert.EqualValues(t, 0, counterValue(t, reader, "db.query.errors", attribute.String("operation", "query")))
		assert.EqualValues(t, 1, counterValue(t, reader, "db.query.errors", attribute.String("operation", "raw")))
		assert.EqualValues(t, 1, counterValue(t, reader, "db.query.errors", attribute.String("operation", "create")))

		s := d.Stats()
		assert.EqualValues(t, DefaultMaxOpenConns, counterValue(t, reader, "db.pool.max_open"))
		assert.EqualValues(t, s.OpenConnections, counterValue(t, reader, "db.pool.open"))
		assert.EqualValues(t, s.Idle, counterValue(t, reader, "db.pool.idle"))
		assert.EqualValues(t, 0, counterValue(t, reader, "db.pool.in_use"))
		assert.EqualValues(t, 0, counterValue(t, reader, "db.config.restart_pending"))
	})
}

func TestPoolWaitMetrics(t *testing.T) {
	cfg := sqliteTarget().config(t)
	cfg.MaxOpenConns, cfg.MaxIdleConns = 1, 1
	reader, mp := newMeter()
	d := openDB(t, cfg, WithMeterProvider(mp))
	ctx := ctxT(t, 10*time.Second)

	conn, err := d.SQL().Conn(ctx) // the only connection
	require.NoError(t, err)
	assert.EqualValues(t, 1, counterValue(t, reader, "db.pool.in_use"))
	var wg sync.WaitGroup
	wg.Go(func() {
		var n int
		assert.NoError(t, d.WithContext(ctx).Raw("SELECT 1").Scan(&n).Error)
	})
	require.Eventually(t, func() bool { return d.Stats().WaitCount == 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, conn.Close())
	wg.Wait()

	assert.EqualValues(t, 1, counterValue(t, reader, "db.pool.waits"))
	m := collect(t, reader)["db.pool.wait_duration"]
	waited := m.Data.(metricdata.Sum[float64]).DataPoints[0].Value
	assert.GreaterOrEqual(t, waited, 0.015)
	assert.Equal(t, "s", m.Unit)
}

func TestTracingSpans(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		d := openDB(t, tg.config(t), WithTracerProvider(tp))
		ctx := ctxT(t, 20*time.Second)
		require.NoError(t, d.AutoMigrate(ctx, &Item{}))

		parentCtx, parent := tp.Tracer("test").Start(ctx, "handler")
		require.NoError(t, d.WithContext(parentCtx).Create(&Item{Name: "secret-value-42"}).Error)
		var it Item
		require.NoError(t, d.WithContext(parentCtx).Where("name = ?", "secret-value-42").First(&it).Error)
		parent.End()

		var create, query sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Parent().SpanID() != parent.SpanContext().SpanID() {
				continue
			}
			switch s.Name() {
			case "db create":
				create = s
			case "db query":
				query = s
			}
		}
		require.NotNil(t, create)
		require.NotNil(t, query)
		attrs := map[attribute.Key]string{}
		for _, kv := range query.Attributes() {
			attrs[kv.Key] = kv.Value.AsString()
		}
		assert.Equal(t, "query", attrs["db.operation.name"])
		assert.Equal(t, d.prefix+"items", attrs["db.collection.name"])
		assert.Contains(t, attrs["db.query.text"], "name =")
		assert.NotContains(t, attrs["db.query.text"], "secret-value-42", "spans carry the parameterized SQL only")
		require.NoError(t, tp.Shutdown(context.Background()))
	})
}
