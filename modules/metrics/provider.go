package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/runtime"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// meterName is the instrumentation scope of this module's own instruments
// and of the helper API's.
const meterName = "github.com/gochat/im-infra/modules/metrics"

// Provider is the metrics module: the OTel MeterProvider (Prometheus
// exporter on a private registry), the TracerProvider, the W3C propagator,
// the helper API (Inc, Add, Observe, Set), HTTP and gRPC instrumentation,
// and the Prometheus handler. Its providers exist from construction and
// start working at Start; see the package documentation.
type Provider struct {
	log    *zap.Logger
	health *lifecycle.Aggregator
	values *config.Values
	stdout io.Writer
	res    *resource.Resource

	meters  deferredMeterProvider
	tracers deferredTracerProvider
	prop    propagation.TextMapPropagator
	sampler ratioSampler
	helper  helper
	healthy healthCache

	serve atomic.Pointer[serveState]

	mu       sync.Mutex // the fields below
	state    runState
	started  Config
	restart  atomic.Bool
	warned   string // restart-only fields last warned about
	sdkMeter *sdkmetric.MeterProvider
	sdkTrace *sdktrace.TracerProvider
	exporter *watchedExporter
}

type runState uint8

const (
	unstarted runState = iota
	running
	stopped
)

// serveState is what the Prometheus handler serves now.
type serveState struct {
	handler http.Handler // nil: answer code with msg
	code    int
	msg     string
}

// Option configures New and the fx constructor.
type Option func(*options)

type options struct {
	log    *zap.Logger
	id     lifecycle.Identity
	health *lifecycle.Aggregator
	values *config.Values
	stdout io.Writer
}

// WithLogger sets the logger (default: none).
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.log = l } }

// WithIdentity names the process in the resource: service.name,
// deployment.environment.name, service.instance.id and service.version.
// Without it the SDK's defaults apply (service.name unknown_service:<exe>).
func WithIdentity(id lifecycle.Identity) Option { return func(o *options) { o.id = id } }

// WithHealth exports agg's checks as health_status and adds the module's
// own "metrics" checker to it.
func WithHealth(agg *lifecycle.Aggregator) Option { return func(o *options) { o.health = agg } }

// WithConfigValues exports the applied and refused changes of every
// component's config.
func WithConfigValues(vs *config.Values) Option { return func(o *options) { o.values = vs } }

// WithStdout sets where the stdout trace exporter writes (default os.Stdout).
func WithStdout(w io.Writer) Option { return func(o *options) { o.stdout = w } }

// New builds the Provider and starts it with cfg at once. Stop it with
// Shutdown. It fails with a VALIDATION error for a bad cfg and a CONFIG
// error when the trace exporter cannot be built; it never dials.
func New(ctx context.Context, cfg Config, opts ...Option) (*Provider, error) {
	p, err := newProvider(opts...)
	if err != nil {
		return nil, err
	}
	if err := p.Start(ctx, cfg); err != nil {
		return nil, err
	}
	return p, nil
}

// newProvider builds an unstarted Provider; it does no I/O.
func newProvider(opts ...Option) (*Provider, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = zap.NewNop()
	}
	if o.stdout == nil {
		o.stdout = os.Stdout
	}
	res, err := newResource(o.id)
	if err != nil {
		return nil, err
	}
	p := &Provider{
		log:    o.log,
		health: o.health,
		values: o.values,
		stdout: o.stdout,
		res:    res,
		prop:   propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	p.helper.init(&p.meters, p.log)
	p.serve.Store(&serveState{code: http.StatusServiceUnavailable, msg: "metrics: not started yet\n"})
	if p.health != nil {
		p.healthy.agg = p.health
		p.health.Add(lifecycle.CheckerFunc(ModuleName, p.check))
	}
	return p, nil
}

// MeterProvider is the OTel MeterProvider every module records through.
func (p *Provider) MeterProvider() metric.MeterProvider { return &p.meters }

// TracerProvider is the OTel TracerProvider every module starts spans with.
// A no-op (that keeps incoming trace context) unless tracing.exporter is set.
func (p *Provider) TracerProvider() trace.TracerProvider { return &p.tracers }

// Propagator carries W3C trace context and baggage across process
// boundaries; the HTTP and gRPC instrumentation use it.
func (p *Provider) Propagator() propagation.TextMapPropagator { return p.prop }

// Handler serves the Prometheus text format: 503 before Start and after
// Shutdown, 404 when metrics are disabled.
func (p *Provider) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := p.serve.Load()
		if s.handler != nil {
			s.handler.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(s.code)
		_, _ = io.WriteString(w, s.msg)
	})
}

// Start builds the SDK from cfg and binds the providers to it. It is
// called once; New and the fx hook call it.
func (p *Provider) Start(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != unstarted {
		return lifecycle.InternalError(ModuleName, "start", "the metrics provider was already started", nil)
	}
	began := time.Now()

	// The exporter first: it is the only step that can refuse cfg, and
	// nothing is bound yet if it does.
	var spanExp sdktrace.SpanExporter
	if cfg.Tracing.Exporter != ExporterNone {
		var err error
		if spanExp, err = newSpanExporter(ctx, cfg.Tracing, p.stdout); err != nil {
			return err
		}
	}

	var mp metric.MeterProvider = metricnoop.NewMeterProvider()
	serve := &serveState{code: http.StatusNotFound, msg: "metrics: disabled by config (metrics.enabled=false)\n"}
	if cfg.Enabled {
		sdkMP, handler, err := p.newMeterProvider(cfg)
		if err != nil {
			if spanExp != nil {
				_ = spanExp.Shutdown(ctx)
			}
			return err
		}
		p.sdkMeter, mp, serve = sdkMP, sdkMP, &serveState{handler: handler}
	}
	if err := p.meters.bind(mp); err != nil {
		p.log.Warn("some instruments created before start were refused by the SDK and record nothing", zap.Error(err))
	}

	p.sampler.set(cfg.Tracing.SampleRatio)
	if spanExp != nil {
		spans, _ := mp.Meter(meterName).Int64Counter("metrics.trace.spans", metric.WithUnit("{span}"),
			metric.WithDescription("Spans handed to the trace exporter, by status (exported, failed)."))
		p.exporter = newWatchedExporter(spanExp, cfg.Tracing, p.log, spans)
		p.sdkTrace = sdktrace.NewTracerProvider(
			sdktrace.WithResource(p.res),
			sdktrace.WithSampler(sdktrace.ParentBased(&p.sampler)),
			sdktrace.WithBatcher(p.exporter, sdktrace.WithExportTimeout(cfg.Tracing.Timeout.Std())),
		)
		p.tracers.bind(p.sdkTrace)
	} else {
		p.tracers.bind(tracenoop.NewTracerProvider())
	}

	p.serve.Store(serve)
	p.started, p.state = cfg, running
	p.log.Info("metrics started",
		zap.Bool("enabled", cfg.Enabled), zap.String("path", cfg.Path), zap.String("prefix", cfg.Prefix),
		zap.Float64s("buckets", cfg.Buckets), zap.String("trace_exporter", cfg.Tracing.Exporter),
		zap.String("trace_endpoint", cfg.Tracing.Endpoint), zap.Float64("sample_ratio", cfg.Tracing.SampleRatio),
		zap.Duration("took", time.Since(began).Round(time.Microsecond)))
	return nil
}

// newMeterProvider builds the SDK MeterProvider with its Prometheus
// exporter on a registry of its own, the views, Go runtime metrics and the
// module's observable instruments.
func (p *Provider) newMeterProvider(cfg Config) (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	// Naming rule (see README): units and the counter suffix stay, as
	// Prometheus conventions want (_seconds, _bytes, _total; "{...}"
	// annotations add nothing); scope labels go, since every im-infra
	// instrument name already starts with its module.
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithoutScopeInfo(),
		otelprom.WithNamespace(cfg.Prefix),
	)
	if err != nil {
		return nil, nil, lifecycle.InternalError(ModuleName, "start", "cannot create the Prometheus exporter", err)
	}
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(p.res),
		sdkmetric.WithReader(exp),
		sdkmetric.WithView(newView(cfg.Buckets)),
		// Exemplars only show in the OpenMetrics format, which /metrics
		// does not serve; recording them would cost every sampled request.
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter),
	)
	fail := func(op string, err error) (*sdkmetric.MeterProvider, http.Handler, error) {
		_ = mp.Shutdown(context.Background())
		return nil, nil, lifecycle.InternalError(ModuleName, op, "cannot register instruments", err)
	}
	if err := runtime.Start(runtime.WithMeterProvider(mp)); err != nil {
		return fail("runtime", err)
	}
	if err := p.observe(mp.Meter(meterName)); err != nil {
		return fail("observe", err)
	}
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      zapPrintln{p.log},
		ErrorHandling: promhttp.ContinueOnError,
	})
	return mp, handler, nil
}

// zapPrintln adapts the logger to promhttp's error log.
type zapPrintln struct{ log *zap.Logger }

func (z zapPrintln) Println(v ...any) {
	z.log.Warn("prometheus scrape error", zap.String("error", strings.TrimSpace(fmt.Sprintln(v...))))
}

// Reconfigure applies what can change live (tracing.sampleRatio) and logs
// once, at warn, the fields whose change needs a restart. fx calls it for
// every config change.
func (p *Provider) Reconfigure(cfg Config) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != running {
		return
	}
	if old := p.sampler.get(); old != cfg.Tracing.SampleRatio {
		p.sampler.set(cfg.Tracing.SampleRatio)
		p.log.Info("trace sampling ratio applied", zap.Float64("old", old), zap.Float64("new", cfg.Tracing.SampleRatio))
	}
	fields := restartFields(p.started, cfg)
	p.restart.Store(len(fields) > 0)
	key := strings.Join(fields, ",")
	if key != "" && key != p.warned {
		p.log.Warn("metrics config changes apply at the next restart", zap.Strings("fields", fields))
	}
	p.warned = key
}

// Flush exports the spans ended so far, bounded by ctx.
func (p *Provider) Flush(ctx context.Context) error {
	p.mu.Lock()
	tp := p.sdkTrace
	p.mu.Unlock()
	if tp == nil {
		return nil
	}
	return tp.ForceFlush(ctx)
}

// Shutdown flushes pending spans and stops the SDK, bounded by ctx: when
// ctx ends, exports in flight are aborted and their spans dropped (and
// counted). Instruments and tracers become no-ops; /metrics answers 503.
func (p *Provider) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.state != running {
		p.state = stopped
		p.mu.Unlock()
		return nil
	}
	p.state = stopped
	tp, mp, exp := p.sdkTrace, p.sdkMeter, p.exporter
	p.mu.Unlock() // the health check and Flush need not wait for the stop

	began := time.Now()
	p.serve.Store(&serveState{code: http.StatusServiceUnavailable, msg: "metrics: stopped\n"})
	var errs []error
	if tp != nil {
		stop := context.AfterFunc(ctx, exp.abort)
		errs = append(errs, tp.Shutdown(ctx))
		stop()
		// When ctx ended, the SDK returned without waiting for its export
		// goroutine, and stop may have kept the AfterFunc from running:
		// abort here so that goroutine ends now, not at the export timeout.
		exp.abort()
	}
	if mp != nil {
		errs = append(errs, mp.Shutdown(ctx))
	}
	fields := []zap.Field{zap.Duration("took", time.Since(began).Round(time.Microsecond))}
	if exp != nil {
		st := exp.status()
		fields = append(fields, zap.Int64("spans_exported", st.exported), zap.Int64("spans_failed", st.failed))
	}
	err := errors.Join(errs...)
	if err != nil {
		fields = append(fields, zap.Error(err))
		p.log.Warn("metrics stopped with errors", fields...)
		if ctx.Err() != nil {
			return lifecycle.TimeoutError(ModuleName, "stop", err)
		}
		return lifecycle.InternalError(ModuleName, "stop", "shutdown failed", err)
	}
	p.log.Info("metrics stopped", fields...)
	return nil
}

// check is the module's health: degraded while the trace exporter fails
// (spans are dropped; the service is not affected).
func (p *Provider) check(context.Context) lifecycle.Status {
	p.mu.Lock()
	cfg, state, exp := p.started, p.state, p.exporter
	p.mu.Unlock()
	if state != running {
		return lifecycle.Status{State: lifecycle.Healthy, Message: "not running"}
	}
	details := map[string]any{
		"enabled":         cfg.Enabled,
		"path":            cfg.Path,
		"trace_exporter":  cfg.Tracing.Exporter,
		"sample_ratio":    p.sampler.get(),
		"restart_pending": p.restart.Load(),
	}
	if exp == nil {
		return lifecycle.Status{State: lifecycle.Healthy, Details: details}
	}
	st := exp.status()
	details["trace_endpoint"] = cfg.Tracing.Endpoint
	details["spans_exported"] = st.exported
	details["spans_failed"] = st.failed
	if st.failing != nil {
		return lifecycle.Status{
			State: lifecycle.Degraded,
			Message: fmt.Sprintf("trace exporter %s %s failing since %s: %v; spans are dropped",
				cfg.Tracing.Exporter, cfg.Tracing.Endpoint, st.since.UTC().Format(time.RFC3339), st.failing),
			Details: details,
		}
	}
	return lifecycle.Status{State: lifecycle.Healthy, Details: details}
}
