package metrics_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog/clogtest"
	"github.com/gochat/im-infra/modules/metrics"
)

// blackhole accepts TCP connections and never answers, like a collector
// whose process hangs or a firewall that swallows packets after the
// handshake. It returns the address.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// refusing returns an address where nothing listens: connections are refused.
func refusing(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// TestDownCollectorNeverBlocks: with an OTLP collector that black-holes or
// refuses, over gRPC and HTTP, start-up stays fast, requests are not
// slowed (spans are dropped when the queue is full), the module reports
// degraded and says so once at warn, and Shutdown is bounded by its ctx.
func TestDownCollectorNeverBlocks(t *testing.T) {
	for _, exporter := range []string{metrics.ExporterOTLPGRPC, metrics.ExporterOTLPHTTP} {
		for _, down := range []struct {
			name string
			addr func(*testing.T) string
		}{{"blackhole", blackhole}, {"refused", refusing}} {
			t.Run(exporter+"/"+down.name, func(t *testing.T) {
				// Registered first, so it runs after the collector's cleanup.
				before := goleak.IgnoreCurrent()
				t.Cleanup(func() { goleak.VerifyNone(t, before) })
				ctx := context.Background()
				cfg := metrics.Config{}.Defaults()
				cfg.Tracing = metrics.TracingConfig{
					Exporter: exporter, Endpoint: down.addr(t), Insecure: true,
					Timeout: config.Duration(time.Second), SampleRatio: 1,
				}
				agg := lifecycle.NewAggregator(nil, lifecycle.AggregatorOptions{CacheTTL: -1})
				log, logs := clogtest.New()

				began := time.Now()
				p, err := metrics.New(ctx, cfg, metrics.WithHealth(agg), metrics.WithLogger(log))
				require.NoError(t, err)
				assert.Less(t, time.Since(began), 250*time.Millisecond, "start does not wait for the collector")

				// More requests than the span queue holds (2048), so exports
				// run and the queue fills while the collector does not answer.
				h := p.HTTPMiddleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), "/ping")
				lat := make([]time.Duration, 5000)
				for i := range lat {
					t0 := time.Now()
					h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/ping", nil))
					lat[i] = time.Since(t0)
				}
				slices.Sort(lat)
				p99, worst := lat[len(lat)*99/100], lat[len(lat)-1]
				t.Logf("request latency with the collector %s: p50 %s p99 %s max %s", down.name, lat[len(lat)/2], p99, worst)
				// An export against this collector takes the whole 1 s
				// timeout (the black hole never answers; refused connections
				// are retried until then): a request that waited for one
				// would take at least that. The margin is for a shared,
				// loaded machine under -race.
				assert.Less(t, p99, 20*time.Millisecond, "requests are not slowed")
				assert.Less(t, worst, time.Second, "no request waits for an export")

				var st lifecycle.Status
				require.Eventually(t, func() bool {
					st = agg.Check(ctx).Checks[metrics.ModuleName]
					return st.State == lifecycle.Degraded
				}, 5*time.Second, 20*time.Millisecond, "the module reports the failing exporter")
				assert.Contains(t, st.Message, "spans are dropped")
				assert.Equal(t, 1, logs.Count("trace exporter failing"), "one warning per outage, not one per batch")

				stopCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				began = time.Now()
				err = p.Shutdown(stopCtx)
				took := time.Since(began)
				assert.Less(t, took, time.Second, "Shutdown is bounded by its ctx")
				if err != nil {
					assert.True(t, errors.Is(err, lifecycle.ErrTimeout), "%v", err)
				}
				t.Logf("shutdown took %s (err %v)", took, err)
			})
		}
	}
}

// TestCollectorRecovers: an OTLP/HTTP collector that answers 503 and then
// 200. The module turns degraded, then healthy again, and logs both.
func TestCollectorRecovers(t *testing.T) {
	ctx := context.Background()
	var healthy atomic.Bool
	var received atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		received.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()

	cfg := metrics.Config{}.Defaults()
	cfg.Tracing = metrics.TracingConfig{
		Exporter: metrics.ExporterOTLPHTTP, Endpoint: collector.Listener.Addr().String(), Insecure: true,
		Timeout: config.Duration(300 * time.Millisecond), SampleRatio: 1,
		Headers: map[string]config.Secret{"authorization": "Bearer very-secret"},
	}
	agg := lifecycle.NewAggregator(nil, lifecycle.AggregatorOptions{CacheTTL: -1})
	log, logs := clogtest.New()
	p := start(t, cfg, metrics.WithHealth(agg), metrics.WithLogger(log))
	_, span := p.TracerProvider().Tracer("test").Start(ctx, "one")
	span.End()
	require.NoError(t, p.Flush(ctx))
	state := func() lifecycle.State { return agg.Check(ctx).Checks[metrics.ModuleName].State }
	// Eventually: the aggregator reports a check whose previous call's
	// goroutine has not quite finished as unhealthy.
	require.Eventually(t, func() bool { return state() == lifecycle.Degraded }, 2*time.Second, 10*time.Millisecond)

	healthy.Store(true)
	_, span = p.TracerProvider().Tracer("test").Start(ctx, "two")
	span.End()
	require.NoError(t, p.Flush(ctx))
	require.Eventually(t, func() bool { return state() == lifecycle.Healthy }, 2*time.Second, 10*time.Millisecond)
	// At least span "two": a retry of the failed batch that the exporter
	// had already given up on can still reach the collector after it
	// recovered. The exporter's own counts below are exact.
	assert.GreaterOrEqual(t, received.Load(), int64(1))
	logs.Require(t, "trace exporter failing")
	logs.Require(t, "trace exporter recovered")
	logs.AssertNoSecret(t, "very-secret")

	fams := scrape(t, p.Handler())
	assert.Equal(t, 1.0, fams.value("metrics_trace_spans_total", map[string]string{"status": "failed"}))
	assert.Equal(t, 1.0, fams.value("metrics_trace_spans_total", map[string]string{"status": "exported"}))
	checkAgainstTable(t, readmeTable(t), fams)
}
