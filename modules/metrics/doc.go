// Package metrics is im-infra's telemetry: the OpenTelemetry MeterProvider
// and TracerProvider every module records through, exported to Prometheus
// at /metrics on the admin server, and to an OTLP collector for traces.
//
// # What it provides
//
// Provider holds the OTel SDK MeterProvider, whose Prometheus exporter
// writes to a registry of its own (never the process-wide default one),
// with Go runtime metrics, one explicit-bucket layout for every latency
// histogram, and the resource (service.name, deployment.environment.name,
// service.instance.id, service.version merged into the SDK's defaults). It
// observes the app's health checks (health_status) and config changes
// (config_applied_total, config_refused_total), so every module's health
// and config show up in Prometheus without code of their own. On top of
// the standard API sit a small helper API (Inc, Add, Observe, Set by name),
// HTTP middleware and transport (otelhttp) and gRPC server and dial options
// (otelgrpc) that record RED metrics and spans with the module's providers
// and the W3C propagator. The OTel globals are never set.
//
// # Why the providers are deferred
//
// fx builds every module in phase 1, and modules create their instruments
// and tracers in their constructors; but the buckets, the name prefix and
// the trace exporter come from config, which is loaded in phase 2. So the
// providers handed out are placeholders until the module's start hook has
// built the SDK from the loaded config: then every instrument, callback and
// tracer made so far is bound to the SDK's, and later ones come from the
// SDK directly. Measurements and spans before start are dropped. Only the
// trace sampling ratio can change while the process runs; other changes are
// logged and wait for a restart.
//
// # How it fails
//
// Nothing here dials at start. Spans leave through a batch processor on
// its own goroutine: a collector that refuses or never answers costs each
// batch at most tracing.timeout, drops spans when the queue is full, turns
// the "metrics" health check degraded and is logged once; a request never
// waits. Shutdown is bounded by its ctx, and aborts exports still in
// flight when ctx ends. A scrape never waits long on a hung health check:
// it shows the aggregator's last report. Bad config is a VALIDATION error
// naming the field; a bad metric name given to the helper API is logged
// once and records nothing.
package metrics
