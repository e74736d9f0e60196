package metrics

import (
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// Trace exporters accepted by TracingConfig.Exporter.
const (
	ExporterNone     = "none"
	ExporterOTLPGRPC = "otlp-grpc"
	ExporterOTLPHTTP = "otlp-http"
	ExporterStdout   = "stdout"
)

// DefaultBuckets are the upper bounds, in seconds, of every latency
// histogram: 1 ms to 10 s, roughly 1-2.5-5 per decade, with 0.2 s among them
// so that "slower than 200 ms" is read straight off a bucket.
var defaultBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10}

// Limits of Config.
const (
	// maxBuckets caps the series per histogram: each bucket is one series
	// per attribute set.
	maxBuckets        = 40
	maxExportTimeout  = time.Minute
	defaultTimeout    = 10 * time.Second
	defaultPath       = "/metrics"
	defaultSampleRate = 1.0
)

// Config is the metrics module's config, component "metrics". Only
// Tracing.SampleRatio applies live; every other field is read at start and
// a change is logged (warn) and shown by metrics_config_restart_pending
// until the next restart.
type Config struct {
	// Enabled turns metrics on: the OTel SDK MeterProvider, Go runtime
	// metrics and the Prometheus endpoint. Off, every instrument is a no-op
	// and the path answers 404. Default true.
	Enabled bool `json:"enabled"`
	// Path is where the admin server serves the Prometheus text format.
	// Default /metrics.
	Path string `json:"path"`
	// Prefix is put, with "_", in front of every metric name Prometheus
	// shows (target_info excepted), for a Prometheus shared by several
	// systems. Letters, digits and "_", not starting with a digit.
	// Default "" (none).
	Prefix string `json:"prefix"`
	// Buckets are the upper bounds, in seconds, of every histogram whose
	// unit is seconds, so latencies of all modules share one layout and can
	// be aggregated and compared. Positive and strictly increasing.
	// Default 0.001 ... 10.
	Buckets []float64 `json:"buckets"`
	// Tracing configures the TracerProvider.
	Tracing TracingConfig `json:"tracing"`
}

// TracingConfig chooses where spans go. With Exporter "none" (the default)
// the TracerProvider is a no-op that still carries incoming trace context,
// so log lines keep the caller's trace ID.
type TracingConfig struct {
	// Exporter is none, otlp-grpc, otlp-http or stdout (for development).
	// Default none.
	Exporter string `json:"exporter"`
	// Endpoint is the collector's host:port, e.g. otel-collector:4317 for
	// otlp-grpc or otel-collector:4318 for otlp-http. Required for OTLP.
	Endpoint string `json:"endpoint"`
	// Insecure sends spans in plaintext instead of TLS. Default false.
	Insecure bool `json:"insecure"`
	// Headers are sent with every export, e.g. an authorization token.
	// Values are secrets: never logged; "${ENV_VAR}" reads them from the
	// environment.
	Headers map[string]config.Secret `json:"headers,omitempty"`
	// Timeout bounds one export, retries included. A collector that does
	// not answer costs at most this much per batch, on the exporter's own
	// goroutine, never on a request. Default 10s.
	Timeout config.Duration `json:"timeout"`
	// SampleRatio is the share of new traces recorded, 0 to 1; a span with
	// a parent follows the parent's decision. Live. Default 1.
	SampleRatio float64 `json:"sampleRatio"`
}

// Defaults: metrics on at /metrics, no prefix, latency buckets 1 ms to
// 10 s, tracing off.
func (Config) Defaults() Config {
	return Config{
		Enabled: true,
		Path:    defaultPath,
		Buckets: slices.Clone(defaultBuckets),
		Tracing: TracingConfig{
			Exporter:    ExporterNone,
			Timeout:     config.Duration(defaultTimeout),
			SampleRatio: defaultSampleRate,
		},
	}
}

// prefixRe is the Prometheus metric-name charset without ":", which is
// reserved for recording rules.
var prefixRe = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// pathRe keeps the path a literal ServeMux path: no wildcards, no spaces.
var pathRe = regexp.MustCompile(`^/[A-Za-z0-9._~\-/]*$`)

// reservedPaths are served by the admin server itself.
var reservedPaths = []string{"/healthz", "/readyz", "/debug/pprof"}

// Validate checks every field and names the first bad one.
func (c Config) Validate() error {
	invalid := func(field, msg string) error { return lifecycle.ValidationError(ModuleName, field, msg) }
	if !pathRe.MatchString(c.Path) {
		return invalid("path", fmt.Sprintf("%q is not an absolute URL path such as /metrics (letters, digits and ._~-/ only)", c.Path))
	}
	if c.Path == "/" {
		return invalid("path", `"/" would take every path of the admin server; use a path such as /metrics`)
	}
	for _, r := range reservedPaths {
		if c.Path == r || strings.HasPrefix(c.Path, r+"/") || strings.HasPrefix(r, c.Path+"/") {
			return invalid("path", fmt.Sprintf("%q clashes with the admin server's own %s", c.Path, r))
		}
	}
	if c.Prefix != "" && !prefixRe.MatchString(c.Prefix) {
		return invalid("prefix", fmt.Sprintf("%q is not a Prometheus name prefix: letters, digits and _, not starting with a digit", c.Prefix))
	}
	if err := validBuckets(c.Buckets); err != nil {
		return invalid("buckets", err.Error())
	}
	return c.Tracing.validate()
}

func validBuckets(b []float64) error {
	if len(b) == 0 {
		return fmt.Errorf("at least one bound is required (default %v)", defaultBuckets)
	}
	if len(b) > maxBuckets {
		return fmt.Errorf("%d bounds is more than %d: every bound is one more series per histogram and attribute set", len(b), maxBuckets)
	}
	for i, v := range b {
		if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
			return fmt.Errorf("bound %d is %v: bounds are positive numbers of seconds", i, v)
		}
		if i > 0 && v <= b[i-1] {
			return fmt.Errorf("bound %d (%v) is not greater than bound %d (%v): bounds must increase strictly", i, v, i-1, b[i-1])
		}
	}
	return nil
}

func (t TracingConfig) validate() error {
	invalid := func(field, msg string) error { return lifecycle.ValidationError(ModuleName, "tracing."+field, msg) }
	switch t.Exporter {
	case ExporterNone, ExporterStdout:
	case ExporterOTLPGRPC, ExporterOTLPHTTP:
		if t.Endpoint == "" {
			return invalid("endpoint", fmt.Sprintf("required for %s: the collector's host:port, e.g. otel-collector:%s", t.Exporter, otlpPort(t.Exporter)))
		}
		host, port, err := net.SplitHostPort(t.Endpoint)
		if err != nil || host == "" || port == "" {
			return invalid("endpoint", fmt.Sprintf("%q is not host:port, e.g. otel-collector:%s (no scheme, no path)", t.Endpoint, otlpPort(t.Exporter)))
		}
	default:
		return invalid("exporter", fmt.Sprintf("unknown exporter %q: want none, otlp-grpc, otlp-http or stdout", t.Exporter))
	}
	for k := range t.Headers {
		if !httpguts.ValidHeaderFieldName(k) {
			return invalid("headers", fmt.Sprintf("%q is not a valid header name", k))
		}
		if strings.EqualFold(k, "content-type") || strings.EqualFold(k, "content-length") {
			return invalid("headers", fmt.Sprintf("%q is set by the exporter itself", http.CanonicalHeaderKey(k)))
		}
	}
	if t.Timeout <= 0 || t.Timeout.Std() > maxExportTimeout {
		return invalid("timeout", fmt.Sprintf("%s is out of range: want more than 0 and at most %s", t.Timeout, maxExportTimeout))
	}
	if math.IsNaN(t.SampleRatio) || t.SampleRatio < 0 || t.SampleRatio > 1 {
		return invalid("sampleRatio", fmt.Sprintf("%v is out of range: want 0 (no new traces) to 1 (every trace)", t.SampleRatio))
	}
	return nil
}

func otlpPort(exporter string) string {
	if exporter == ExporterOTLPHTTP {
		return "4318"
	}
	return "4317"
}

// restartFields lists the fields that differ between the config the module
// started with and cur and that only a restart applies.
func restartFields(started, cur Config) []string {
	var out []string
	add := func(changed bool, field string) {
		if changed {
			out = append(out, field)
		}
	}
	add(started.Enabled != cur.Enabled, "enabled")
	add(started.Path != cur.Path, "path")
	add(started.Prefix != cur.Prefix, "prefix")
	add(!slices.Equal(started.Buckets, cur.Buckets), "buckets")
	st, ct := started.Tracing, cur.Tracing
	add(st.Exporter != ct.Exporter, "tracing.exporter")
	add(st.Endpoint != ct.Endpoint, "tracing.endpoint")
	add(st.Insecure != ct.Insecure, "tracing.insecure")
	add(!maps.Equal(st.Headers, ct.Headers), "tracing.headers")
	add(st.Timeout != ct.Timeout, "tracing.timeout")
	return out
}
