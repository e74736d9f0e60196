package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/gochat/im-infra/modules/metrics"
)

// The helper API against the raw OTel API on the same SDK, side by side:
// the helper adds a lookup by name (sync.Map) per call. Both build the
// attribute set per call, as code that passes attributes inline does;
// "raw-precomputed" is the floor, with the set built once.
//
//	go test -run '^$' -bench 'Helper|Middleware' -benchmem -count 6 ./modules/metrics/

func benchProvider(b *testing.B, cfg metrics.Config, opts ...metrics.Option) *metrics.Provider {
	b.Helper()
	p, err := metrics.New(context.Background(), cfg, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

var benchAttrs = []attribute.KeyValue{attribute.String("channel", "app"), attribute.String("region", "eu")}

func BenchmarkHelperCounter(b *testing.B) {
	ctx := context.Background()
	p := benchProvider(b, metrics.Config{}.Defaults())
	c, err := p.MeterProvider().Meter("bench").Int64Counter("orders.raw")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Add(ctx, 1, metric.WithAttributes(benchAttrs...))
		}
	})
	b.Run("helper", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.Inc(ctx, "orders.helper", benchAttrs...)
		}
	})
	set := metric.WithAttributeSet(attribute.NewSet(benchAttrs...))
	b.Run("raw-precomputed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Add(ctx, 1, set)
		}
	})
	b.Run("raw-no-attributes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Add(ctx, 1)
		}
	})
	b.Run("helper-no-attributes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.Inc(ctx, "orders.helper.bare")
		}
	})
}

func BenchmarkHelperHistogram(b *testing.B) {
	ctx := context.Background()
	p := benchProvider(b, metrics.Config{}.Defaults())
	h, err := p.MeterProvider().Meter("bench").Float64Histogram("orders.raw.duration", metric.WithUnit("s"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.Record(ctx, 0.042, metric.WithAttributes(benchAttrs...))
		}
	})
	b.Run("helper", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.Observe(ctx, "orders.helper.duration", 0.042, benchAttrs...)
		}
	})
}

// The HTTP middleware against the bare handler, served in process (no
// network), with tracing off (the default) and with every request
// sampled into a batch processor (the stdout exporter writing to
// io.Discard, off the request path).
func BenchmarkMiddleware(b *testing.B) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	serve := func(b *testing.B, h http.Handler) {
		req := httptest.NewRequest(http.MethodGet, "/users/42", nil)
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
	}
	b.Run("bare", func(b *testing.B) { serve(b, mux) })
	b.Run("middleware", func(b *testing.B) {
		p := benchProvider(b, metrics.Config{}.Defaults())
		serve(b, p.HTTPMiddleware(mux, "api"))
	})
	b.Run("middleware+tracing", func(b *testing.B) {
		cfg := metrics.Config{}.Defaults()
		cfg.Tracing.Exporter = metrics.ExporterStdout
		p := benchProvider(b, cfg, metrics.WithStdout(io.Discard))
		serve(b, p.HTTPMiddleware(mux, "api"))
	})
}
