package metrics_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/fx"

	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/metrics"
)

// printMetrics prints the lines of the Prometheus text that start with one
// of prefixes.
func printMetrics(h http.Handler, prefixes ...string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				fmt.Println(line)
			}
		}
	}
}

// The helper API records by name on top of the standard OTel API.
func ExampleProvider_Inc() {
	ctx := context.Background()
	p, err := metrics.New(ctx, metrics.Config{}.Defaults())
	if err != nil {
		panic(err)
	}
	defer p.Shutdown(ctx)

	p.Inc(ctx, "orders.placed", attribute.String("channel", "app"))
	p.Inc(ctx, "orders.placed", attribute.String("channel", "app"))
	p.Set(ctx, "orders.queue.depth", 12)
	p.Observe(ctx, "orders.place.duration", (150 * time.Millisecond).Seconds())

	printMetrics(p.Handler(), "orders_placed_total", "orders_queue_depth", "orders_place_duration_seconds_count")
	// Output:
	// orders_place_duration_seconds_count 1
	// orders_placed_total{channel="app"} 2
	// orders_queue_depth 12
}

// Instruments of your own come from the MeterProvider; every one in
// seconds gets the configured latency buckets.
func ExampleProvider_MeterProvider() {
	ctx := context.Background()
	cfg := metrics.Config{}.Defaults()
	cfg.Buckets = []float64{0.1, 1}
	p, err := metrics.New(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer p.Shutdown(ctx)

	meter := p.MeterProvider().Meter("github.com/acme/orders")
	latency, _ := meter.Float64Histogram("orders.store.duration", metric.WithUnit("s"))
	latency.Record(ctx, 0.25, metric.WithAttributes(attribute.String("table", "orders")))

	printMetrics(p.Handler(), "orders_store_duration_seconds_bucket")
	// Output:
	// orders_store_duration_seconds_bucket{table="orders",le="0.1"} 0
	// orders_store_duration_seconds_bucket{table="orders",le="1"} 1
	// orders_store_duration_seconds_bucket{table="orders",le="+Inf"} 1
}

// InfraErrors passed through the ErrorHandler become infra_errors_total.
func ExampleProvider_errors() {
	ctx := context.Background()
	p, err := metrics.New(ctx, metrics.Config{}.Defaults())
	if err != nil {
		panic(err)
	}
	defer p.Shutdown(ctx)

	errs := lifecycle.NewErrorHandler(p.MeterProvider())
	_ = errs.Handle(ctx, lifecycle.TimeoutError("cache", "get", context.DeadlineExceeded))

	printMetrics(p.Handler(), "infra_errors_total")
	// Output:
	// infra_errors_total{component="cache",type="TIMEOUT"} 1
}

// In an fx app (fxinfra.Module includes metrics.Module) a service takes
// *metrics.Provider for the helper API and the middleware, and the other
// modules take metric.MeterProvider and trace.TracerProvider.
func Example_fx() {
	orders := fx.Module("orders",
		fx.Provide(
			http.NewServeMux,
			func(p *metrics.Provider, mux *http.ServeMux) http.Handler { return p.HTTPMiddleware(mux, "orders") },
		),
	)
	_ = orders // fx.New(fxinfra.Module, orders).Run()
}
