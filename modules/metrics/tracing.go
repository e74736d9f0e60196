package metrics

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// newSpanExporter builds the exporter cfg names. Nothing here dials: gRPC
// connects lazily and HTTP per export, so a collector that is down costs
// start-up nothing.
func newSpanExporter(ctx context.Context, cfg TracingConfig, stdout io.Writer) (sdktrace.SpanExporter, error) {
	timeout := cfg.Timeout.Std()
	headers := make(map[string]string, len(cfg.Headers))
	for k, v := range cfg.Headers {
		headers[k] = v.Reveal()
	}
	// Retries stay inside one export's time budget, so a batch never holds
	// the exporter goroutine longer than timeout.
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch cfg.Exporter {
	case ExporterOTLPGRPC:
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpoint(cfg.Endpoint),
			otlptracegrpc.WithTimeout(timeout),
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second, MaxElapsedTime: timeout}),
			otlptracegrpc.WithHeaders(headers),
		}
		if cfg.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	case ExporterOTLPHTTP:
		opts := []otlptracehttp.Option{
			otlptracehttp.WithEndpoint(cfg.Endpoint),
			otlptracehttp.WithTimeout(timeout),
			otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second, MaxElapsedTime: timeout}),
			otlptracehttp.WithHeaders(headers),
		}
		if cfg.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	case ExporterStdout:
		exp, err = stdouttrace.New(stdouttrace.WithWriter(stdout))
	default:
		return nil, lifecycle.ValidationError(ModuleName, "tracing.exporter", "no exporter for "+cfg.Exporter)
	}
	if err != nil {
		// The cause comes from the exporter's option parsing; headers are
		// not part of it.
		return nil, lifecycle.ConfigError(ModuleName, "tracing.endpoint", "cannot build the "+cfg.Exporter+" exporter for "+cfg.Endpoint, err)
	}
	return exp, nil
}

// ratioSampler is the root sampler, a trace-ID ratio that can change live.
type ratioSampler struct {
	cur atomic.Pointer[ratio]
}

type ratio struct {
	value   float64
	sampler sdktrace.Sampler
}

func (s *ratioSampler) set(r float64) {
	s.cur.Store(&ratio{value: r, sampler: sdktrace.TraceIDRatioBased(r)})
}

func (s *ratioSampler) get() float64 {
	if r := s.cur.Load(); r != nil {
		return r.value
	}
	return 0
}

func (s *ratioSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	return s.cur.Load().sampler.ShouldSample(p)
}

func (s *ratioSampler) Description() string {
	return "live(" + s.cur.Load().sampler.Description() + ")"
}

// watchedExporter reports how exports go: a counter, a health status and
// one log line per transition between working and failing. It owns export
// errors (the SDK would print each to stderr through OTel's global
// handler) and can abort exports in flight, so that a collector that takes
// but never answers cannot hold the stop past its deadline.
type watchedExporter struct {
	next     sdktrace.SpanExporter
	log      *zap.Logger
	exporter string
	endpoint string

	abortCtx context.Context
	abort    context.CancelFunc

	spans    metric.Int64Counter
	exported metric.AddOption
	failed   metric.AddOption

	mu           sync.Mutex
	lastErr      error
	failingSince time.Time
	nExported    int64
	nFailed      int64
}

func newWatchedExporter(next sdktrace.SpanExporter, cfg TracingConfig, log *zap.Logger, spans metric.Int64Counter) *watchedExporter {
	w := &watchedExporter{
		next:     next,
		log:      log,
		exporter: cfg.Exporter,
		endpoint: cfg.Endpoint,
		spans:    spans,
		exported: metric.WithAttributeSet(attribute.NewSet(attribute.String("status", "exported"))),
		failed:   metric.WithAttributeSet(attribute.NewSet(attribute.String("status", "failed"))),
	}
	w.abortCtx, w.abort = context.WithCancel(context.Background())
	return w
}

func (w *watchedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(w.abortCtx, cancel)
	err := w.next.ExportSpans(ctx, spans)
	stop()
	cancel()
	w.record(len(spans), err)
	return nil // recorded and logged above
}

func (w *watchedExporter) record(n int, err error) {
	ctx := context.Background()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.spans.Add(ctx, int64(n), w.exported)
		w.nExported += int64(n)
		if w.lastErr != nil {
			w.log.Info("trace exporter recovered", zap.String("exporter", w.exporter), zap.String("endpoint", w.endpoint),
				zap.Duration("failed_for", time.Since(w.failingSince).Round(time.Millisecond)))
		}
		w.lastErr = nil
		return
	}
	w.spans.Add(ctx, int64(n), w.failed)
	w.nFailed += int64(n)
	if w.abortCtx.Err() != nil {
		w.log.Warn("spans dropped at stop: the trace exporter did not take them within the stop timeout",
			zap.String("exporter", w.exporter), zap.String("endpoint", w.endpoint), zap.Int("spans", n))
	} else if w.lastErr == nil {
		w.failingSince = time.Now()
		w.log.Warn("trace exporter failing; spans are dropped until it recovers (requests are not affected)",
			zap.String("exporter", w.exporter), zap.String("endpoint", w.endpoint), zap.Int("spans", n), zap.Error(err))
	}
	w.lastErr = err
}

func (w *watchedExporter) Shutdown(ctx context.Context) error { return w.next.Shutdown(ctx) }

// exportStatus is the exporter's part of the module's health.
type exportStatus struct {
	failing  error // the last export's error; nil when it worked
	since    time.Time
	exported int64
	failed   int64
}

func (w *watchedExporter) status() exportStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return exportStatus{failing: w.lastErr, since: w.failingSince, exported: w.nExported, failed: w.nFailed}
}
