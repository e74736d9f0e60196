package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/fxinfratest"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/cache"
	"github.com/gochat/im-infra/modules/db"
	"github.com/gochat/im-infra/modules/metrics"
	"github.com/gochat/im-infra/modules/mq"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestScrapeThroughFxinfra is the scrape test: an app built by fxinfra
// (etcd, config, health, admin server) exercises what has landed — errors
// through the ErrorHandler, health checks, config applied and refused, the
// db module on SQLite, the HTTP middleware — then GETs /metrics from the admin server and parses it
// with the Prometheus text parser: names, labels and values are what the
// README table says.
func TestScrapeThroughFxinfra(t *testing.T) {
	ctx := context.Background()
	var (
		prov   *metrics.Provider
		errs   *lifecycle.ErrorHandler
		values *config.Values
		mp     metric.MeterProvider
		tp     trace.TracerProvider
		prop   propagation.TextMapPropagator
		sqlDB  *db.DB
		kv     cache.Cache
		broker *mq.Client
	)
	const topic = "scrape.orders"
	app := fxinfratest.New(t,
		fxinfratest.WithDB(fxinfratest.SQLite),
		fxinfratest.WithRedis(),
		fxinfratest.WithKafka(fxinfratest.KafkaConfig(map[string]any{"topics": []map[string]any{{"name": topic, "partitions": 1}}})),
		fxinfratest.WithFx(
			fx.Populate(&prov, &errs, &values, &mp, &tp, &prop, &sqlDB, &kv, &broker),
			fx.Invoke(func(agg *lifecycle.Aggregator) {
				agg.Add(lifecycle.CheckerFunc("orders", func(context.Context) lifecycle.Status {
					return lifecycle.Status{State: lifecycle.Degraded, Message: "replica lagging"}
				}))
			}),
		))
	assert.Same(t, prov.MeterProvider(), mp, "the graph's MeterProvider is the module's")
	assert.Same(t, prov.TracerProvider(), tp)
	assert.ElementsMatch(t, []string{"traceparent", "tracestate", "baggage"}, prop.Fields(), "W3C trace context and baggage")
	app.Logs.Require(t, "metrics started")

	// Errors, through the ErrorHandler built in phase 1 (before the SDK).
	for range 2 {
		_ = errs.Handle(ctx, lifecycle.ConnectionError("cache", "get", io.ErrUnexpectedEOF))
	}
	_ = errs.Handle(ctx, lifecycle.TimeoutError("mq", "send", context.DeadlineExceeded))

	// Config: one change applied, one refused.
	app.Put(t, metrics.ModuleName, `{"tracing":{"sampleRatio":0.5}}`)
	app.Logs.Require(t, "trace sampling ratio applied")
	err := app.TryPut(metrics.ModuleName, `{"tracing":{"sampleRatio":2}}`)
	require.True(t, errors.Is(err, lifecycle.ErrValidation), "%v", err)

	// Statements through the db module (SQLite), one of them failing.
	var n int
	require.NoError(t, sqlDB.WithContext(ctx).Raw("SELECT 1").Scan(&n).Error)
	require.NoError(t, sqlDB.WithContext(ctx).Raw("SELECT 2").Scan(&n).Error)
	require.Error(t, sqlDB.WithContext(ctx).Exec("INSERT INTO no_such_table VALUES (1)").Error)

	// Commands through the cache module: a write, a hit, a miss.
	require.NoError(t, kv.Set(ctx, "scrape", "v", time.Minute))
	_, err = kv.Get(ctx, "scrape")
	require.NoError(t, err)
	_, err = kv.Get(ctx, "scrape-missing")
	require.ErrorIs(t, err, cache.ErrMiss)

	// One record produced and handled through the mq module.
	handled := make(chan struct{}, 1)
	_, err = broker.Subscribe("scrape", []string{topic}, func(context.Context, *mq.Message) error {
		handled <- struct{}{}
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, broker.SendSync(ctx, &mq.Message{Topic: topic, Value: []byte("o-1")}))
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("the record was not handled")
	}

	// Requests through the middleware.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "bad" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	srv := httptest.NewServer(prov.HTTPMiddleware(mux, "orders"))
	defer srv.Close()
	for _, id := range []string{"1", "2", "3", "bad"} {
		code, _ := get(t, srv.URL+"/orders/"+id)
		require.NotZero(t, code)
	}

	fams := scrapeURL(t, "http://"+app.AdminAddr()+"/metrics")
	assert.Equal(t, 2.0, fams.value("infra_errors_total", map[string]string{"type": "CONNECTION", "component": "cache"}))
	assert.Equal(t, 1.0, fams.value("infra_errors_total", map[string]string{"type": "TIMEOUT", "component": "mq"}))

	for component, state := range map[string]string{"coord": "healthy", "config": "degraded", "metrics": "healthy", "orders": "degraded"} {
		assert.Equal(t, 1.0, fams.value("health_status", map[string]string{"component": component, "state": state}), "%s %s", component, state)
		assert.Equal(t, 0.0, fams.value("health_status", map[string]string{"component": component, "state": "unhealthy"}), component)
	}

	for _, st := range values.Statuses() {
		c := map[string]string{"component": st.Component}
		assert.Equal(t, float64(st.Applied), fams.value("config_applied_total", c), st.Component)
		assert.Equal(t, float64(st.Rejected), fams.value("config_refused_total", c), st.Component)
	}
	assert.Equal(t, 1.0, fams.value("config_applied_total", map[string]string{"component": metrics.ModuleName}), "the Put")
	assert.Equal(t, 1.0, fams.value("config_refused_total", map[string]string{"component": metrics.ModuleName}))
	assert.Equal(t, 1.0, fams.value("config_applied_total", map[string]string{"component": "admin"}), "the seeded document")
	assert.Equal(t, 0.0, fams.value("config_applied_total", map[string]string{"component": "clog"}), "defaults only")

	const dur = "http_server_request_duration_seconds"
	assert.Equal(t, 3.0, fams.value(dur, map[string]string{"http_route": "/orders/{id}", "http_response_status_class": "2xx"}))
	assert.Equal(t, 1.0, fams.value(dur, map[string]string{"http_route": "/orders/{id}", "http_response_status_class": "5xx", "http_response_status_code": "500"}))

	assert.Equal(t, 2.0, fams.value("db_query_duration_seconds", map[string]string{"operation": "row"}), "Raw+Scan runs gorm's row processor")
	assert.Equal(t, 1.0, fams.value("db_query_duration_seconds", map[string]string{"operation": "raw"}), "Exec runs raw")
	assert.Equal(t, 1.0, fams.value("db_query_errors_total", map[string]string{"operation": "raw"}))
	assert.Equal(t, -1.0, fams.value("db_query_errors_total", map[string]string{"operation": "row"}), "no failed row statement")
	assert.Equal(t, float64(sqlDB.Stats().MaxOpenConnections), fams.value("db_pool_max_open", nil))
	assert.GreaterOrEqual(t, fams.value("db_pool_open", nil), 1.0)
	assert.Equal(t, 0.0, fams.value("db_pool_in_use", nil))
	assert.Equal(t, 0.0, fams.value("db_config_restart_pending", nil))
	assert.Equal(t, 1.0, fams.value("health_status", map[string]string{"component": "db", "state": "healthy"}))

	assert.Equal(t, 1.0, fams.value("cache_commands_total", map[string]string{"command": "set", "status": "ok"}))
	assert.Equal(t, 1.0, fams.value("cache_commands_total", map[string]string{"command": "get", "status": "ok"}))
	assert.Equal(t, 1.0, fams.value("cache_commands_total", map[string]string{"command": "get", "status": "miss"}))
	assert.Equal(t, 1.0, fams.value("health_status", map[string]string{"component": "cache", "state": "healthy"}))
	assert.Equal(t, 1.0, fams.value("mq_produced_total", map[string]string{"topic": topic}))
	require.Eventually(t, func() bool {
		return scrapeURL(t, "http://"+app.AdminAddr()+"/metrics").value("mq_consumed_total", map[string]string{"group": "scrape", "topic": topic}) == 1
	}, 5*time.Second, 20*time.Millisecond, "the handled record is counted")
	assert.Equal(t, 1.0, fams.value("health_status", map[string]string{"component": "mq", "state": "healthy"}))

	info := labelMap(fams["target_info"].GetMetric()[0])
	assert.Equal(t, app.Identity().Service, info["service_name"])
	assert.Equal(t, app.Identity().Instance, info["service_instance_id"])
	assert.Equal(t, "test", info["deployment_environment_name"])
	assert.NotNil(t, fams["go_goroutine_count"])
	assert.Equal(t, 0.0, fams.value("metrics_config_restart_pending", nil))

	checkAgainstTable(t, readmeTable(t), fams)
}

// TestModuleConfigAtStart: path and prefix come from the config loaded at
// start; a later change to them waits for a restart, says so at warn and
// in metrics_config_restart_pending.
func TestModuleConfigAtStart(t *testing.T) {
	app := fxinfratest.New(t, fxinfratest.WithConfig(metrics.ModuleName, `{"path":"/internal/prom","prefix":"im"}`))
	base := "http://" + app.AdminAddr()
	code, _ := get(t, base+"/metrics")
	assert.Equal(t, http.StatusNotFound, code)
	fams := scrapeURL(t, base+"/internal/prom")
	assert.NotNil(t, fams["im_go_goroutine_count"])
	assert.NotNil(t, fams["target_info"])

	app.Put(t, metrics.ModuleName, `{"path":"/metrics","prefix":"im"}`)
	e := app.Logs.Require(t, "metrics config changes apply at the next restart")
	assert.Equal(t, zapcore.WarnLevel, e.Level)
	assert.Equal(t, []any{"path"}, e.ContextMap()["fields"])
	assert.Equal(t, 1.0, scrapeURL(t, base+"/internal/prom").value("im_metrics_config_restart_pending", nil))
	code, _ = get(t, base+"/metrics")
	assert.Equal(t, http.StatusNotFound, code, "the path changes at the next restart")
}

func TestModuleDisabled(t *testing.T) {
	var errs *lifecycle.ErrorHandler
	app := fxinfratest.New(t,
		fxinfratest.WithConfig(metrics.ModuleName, `{"enabled":false}`),
		fxinfratest.WithFx(fx.Populate(&errs)))
	_ = errs.Handle(context.Background(), lifecycle.ConnectionError("cache", "get", io.EOF)) // a no-op counter
	code, body := get(t, "http://"+app.AdminAddr()+"/metrics")
	assert.Equal(t, http.StatusNotFound, code)
	assert.Contains(t, body, "disabled")
}
