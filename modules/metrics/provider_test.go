package metrics_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog/clogtest"
	"github.com/gochat/im-infra/modules/metrics"
)

var testID = lifecycle.Identity{Service: "orders", Env: "test", Instance: "orders-7", Version: "1.4.2"}

// start runs a Provider for the test and stops it at the end.
func start(t *testing.T, cfg metrics.Config, opts ...metrics.Option) *metrics.Provider {
	t.Helper()
	p, err := metrics.New(context.Background(), cfg, append([]metrics.Option{metrics.WithIdentity(testID)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Shutdown(context.Background())) })
	return p
}

func TestScrapeShowsTheResourceAndErrors(t *testing.T) {
	ctx := context.Background()
	p := start(t, metrics.Config{}.Defaults())
	errs := lifecycle.NewErrorHandler(p.MeterProvider())
	cause := io.ErrUnexpectedEOF
	for range 3 {
		_ = errs.Handle(ctx, lifecycle.ConnectionError("cache", "get", cause))
	}
	_ = errs.Handle(ctx, lifecycle.ValidationError("db", "dsn", "bad"))
	_ = errs.Handle(ctx, context.Canceled) // not an InfraError: not counted

	fams := scrape(t, p.Handler())
	assert.Equal(t, 3.0, fams.value("infra_errors_total", map[string]string{"type": "CONNECTION", "component": "cache"}))
	assert.Equal(t, 1.0, fams.value("infra_errors_total", map[string]string{"type": "VALIDATION", "component": "db"}))
	assert.Len(t, fams["infra_errors_total"].GetMetric(), 2)

	info := labelMap(fams["target_info"].GetMetric()[0])
	assert.Equal(t, "orders", info["service_name"])
	assert.Equal(t, "test", info["deployment_environment_name"])
	assert.Equal(t, "orders-7", info["service_instance_id"])
	assert.Equal(t, "1.4.2", info["service_version"])
	assert.Equal(t, "opentelemetry", info["telemetry_sdk_name"], "merged with the SDK's default resource")
	for _, l := range labelNames(fams["infra_errors_total"]) {
		assert.NotContains(t, l, "otel_scope", "scope labels are off")
	}

	assert.Greater(t, fams.value("go_goroutine_count", nil), 0.0, "Go runtime metrics")
	assert.Greater(t, fams.value("go_memory_used_bytes", map[string]string{"go_memory_type": "stack"}), 0.0)
	checkAgainstTable(t, readmeTable(t), fams)
}

// TestEmptyIdentity: standalone use without WithIdentity keeps the SDK's
// service.name rather than an empty one.
func TestEmptyIdentity(t *testing.T) {
	p, err := metrics.New(context.Background(), metrics.Config{}.Defaults())
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Shutdown(context.Background())) }()
	info := labelMap(scrape(t, p.Handler())["target_info"].GetMetric()[0])
	assert.True(t, strings.HasPrefix(info["service_name"], "unknown_service"), info["service_name"])
	assert.NotContains(t, info, "service_instance_id")
}

func TestPrefix(t *testing.T) {
	cfg := metrics.Config{}.Defaults()
	cfg.Prefix = "gochat"
	p := start(t, cfg)
	_ = lifecycle.NewErrorHandler(p.MeterProvider()).Handle(context.Background(), lifecycle.TimeoutError("mq", "send", nil))
	p.Inc(context.Background(), "orders.placed")
	fams := scrape(t, p.Handler())
	assert.Equal(t, 1.0, fams.value("gochat_infra_errors_total", map[string]string{"type": "TIMEOUT", "component": "mq"}))
	assert.Equal(t, 1.0, fams.value("gochat_orders_placed_total", nil))
	assert.Nil(t, fams["infra_errors_total"])
	assert.NotNil(t, fams["target_info"], "target_info keeps its name")
}

// TestBucketsApplyToEveryLatencyHistogram: the configured bounds replace
// an instrument's own advice (cache, db and mq advise theirs), for every
// histogram in seconds and no other.
func TestBucketsApplyToEveryLatencyHistogram(t *testing.T) {
	ctx := context.Background()
	cfg := metrics.Config{}.Defaults()
	cfg.Buckets = []float64{0.05, 0.5}
	p := start(t, cfg)
	m := p.MeterProvider().Meter("test")
	advised, err := m.Float64Histogram("cache.command.duration", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.0001, 0.001, 0.01))
	require.NoError(t, err)
	advised.Record(ctx, 0.2)
	sizes, err := m.Int64Histogram("payload.size", metric.WithUnit("By"))
	require.NoError(t, err)
	sizes.Record(ctx, 300)

	fams := scrape(t, p.Handler())
	bounds := func(name string) []float64 {
		var out []float64
		for _, b := range fams[name].GetMetric()[0].GetHistogram().GetBucket() {
			out = append(out, b.GetUpperBound())
		}
		return out
	}
	assert.Equal(t, []float64{0.05, 0.5, math.Inf(1)}, bounds("cache_command_duration_seconds"))
	assert.NotEqual(t, []float64{0.05, 0.5, math.Inf(1)}, bounds("payload_size_bytes"), "not a latency: SDK default buckets")
}

func TestHealthGauge(t *testing.T) {
	agg := lifecycle.NewAggregator(nil, lifecycle.AggregatorOptions{CacheTTL: -1})
	agg.Add(lifecycle.CheckerFunc("cache", func(context.Context) lifecycle.Status { return lifecycle.Status{State: lifecycle.Healthy} }))
	agg.Add(lifecycle.CheckerFunc("db", func(context.Context) lifecycle.Status { return lifecycle.Status{State: lifecycle.Degraded} }))
	agg.Add(lifecycle.CheckerFunc("mq", func(context.Context) lifecycle.Status { return lifecycle.Status{State: lifecycle.Unhealthy} }))
	p := start(t, metrics.Config{}.Defaults(), metrics.WithHealth(agg))

	fams := scrape(t, p.Handler())
	want := map[string]lifecycle.State{"cache": lifecycle.Healthy, "db": lifecycle.Degraded, "mq": lifecycle.Unhealthy, "metrics": lifecycle.Healthy}
	for component, state := range want {
		for _, s := range []lifecycle.State{lifecycle.Healthy, lifecycle.Degraded, lifecycle.Unhealthy} {
			v := 0.0
			if s == state {
				v = 1
			}
			assert.Equal(t, v, fams.value("health_status", map[string]string{"component": component, "state": string(s)}), "%s %s", component, s)
		}
	}
	assert.Len(t, fams["health_status"].GetMetric(), 3*len(want))
}

// TestHealthScrapeNeverWaitsOnAHungChecker: a checker that blocks until
// its ctx ends must not hold /metrics up; the scrape shows the last report
// it has, and the aggregator's verdict (unhealthy: timed out) once it has
// one.
func TestHealthScrapeNeverWaitsOnAHungChecker(t *testing.T) {
	agg := lifecycle.NewAggregator(nil, lifecycle.AggregatorOptions{Timeout: 600 * time.Millisecond, CacheTTL: -1})
	agg.Add(lifecycle.CheckerFunc("ok", func(context.Context) lifecycle.Status { return lifecycle.Status{State: lifecycle.Healthy} }))
	hung := make(chan struct{})
	agg.Add(lifecycle.CheckerFunc("hung", func(ctx context.Context) lifecycle.Status {
		select {
		case <-hung:
		case <-ctx.Done():
		}
		return lifecycle.Status{State: lifecycle.Healthy}
	}))
	p := start(t, metrics.Config{}.Defaults(), metrics.WithHealth(agg))

	began := time.Now()
	fams := scrape(t, p.Handler())
	assert.Less(t, time.Since(began), 500*time.Millisecond, "the scrape does not wait for the hung check")
	assert.Nil(t, fams["health_status"], "no report yet: no health samples rather than made-up ones")
	assert.NotNil(t, fams["go_goroutine_count"], "the rest of the scrape is there")

	require.Eventually(t, func() bool {
		f := scrape(t, p.Handler())
		return f.value("health_status", map[string]string{"component": "hung", "state": "unhealthy"}) == 1 &&
			f.value("health_status", map[string]string{"component": "ok", "state": "healthy"}) == 1
	}, 5*time.Second, 100*time.Millisecond)
	close(hung)
}

func TestHandlerWhenDisabledAndStopped(t *testing.T) {
	ctx := context.Background()
	cfg := metrics.Config{}.Defaults()
	cfg.Enabled = false
	off, err := metrics.New(ctx, cfg)
	require.NoError(t, err)
	off.Inc(ctx, "orders.placed") // a no-op, not a panic
	rec := httptest.NewRecorder()
	off.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Contains(t, rec.Body.String(), "metrics.enabled=false")
	require.NoError(t, off.Shutdown(ctx))

	on, err := metrics.New(ctx, metrics.Config{}.Defaults())
	require.NoError(t, err)
	require.NoError(t, on.Shutdown(ctx))
	require.NoError(t, on.Shutdown(ctx), "a second Shutdown does nothing")
	rec = httptest.NewRecorder()
	on.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	on.Inc(ctx, "after.stop") // a no-op, not a panic
}

func TestStartRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	cfg := metrics.Config{}.Defaults()
	cfg.Buckets = []float64{1, 0.1}
	_, err := metrics.New(ctx, cfg)
	require.True(t, errors.Is(err, lifecycle.ErrValidation), "%v", err)

	p := start(t, metrics.Config{}.Defaults())
	err = p.Start(ctx, metrics.Config{}.Defaults())
	require.True(t, errors.Is(err, lifecycle.ErrInternal), "a second Start: %v", err)
}

func TestReconfigure(t *testing.T) {
	log, logs := clogtest.New()
	p := start(t, metrics.Config{}.Defaults(), metrics.WithLogger(log))
	logs.Require(t, "metrics started")

	cfg := metrics.Config{}.Defaults()
	cfg.Tracing.SampleRatio = 0.1
	p.Reconfigure(cfg)
	e := logs.Require(t, "trace sampling ratio applied")
	assert.Equal(t, zapcore.InfoLevel, e.Level)
	assert.Equal(t, 0.0, scrape(t, p.Handler()).value("metrics_config_restart_pending", nil), "a live change")

	cfg.Prefix = "im"
	cfg.Tracing.Headers = map[string]config.Secret{"authorization": "Bearer t0p-s3cret"}
	p.Reconfigure(cfg)
	p.Reconfigure(cfg) // the same pending change is not warned about twice
	e = logs.Require(t, "apply at the next restart")
	assert.Equal(t, zapcore.WarnLevel, e.Level)
	assert.Equal(t, []any{"prefix", "tracing.headers"}, e.ContextMap()["fields"])
	assert.Equal(t, 1.0, scrape(t, p.Handler()).value("metrics_config_restart_pending", nil))
	logs.AssertNoSecret(t, "t0p-s3cret")

	p.Reconfigure(metrics.Config{}.Defaults()) // back to what it started with
	assert.Equal(t, 0.0, scrape(t, p.Handler()).value("metrics_config_restart_pending", nil))
}
