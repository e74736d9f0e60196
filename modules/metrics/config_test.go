package metrics_test

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/metrics"
)

func TestConfigDefaults(t *testing.T) {
	d := metrics.Config{}.Defaults()
	require.NoError(t, d.Validate())
	assert.True(t, d.Enabled)
	assert.Equal(t, "/metrics", d.Path)
	assert.Equal(t, metrics.ExporterNone, d.Tracing.Exporter)
	assert.Equal(t, 0.001, d.Buckets[0], "latency buckets start at 1 ms")
	assert.Equal(t, 10.0, d.Buckets[len(d.Buckets)-1], "and end at 10 s")
	assert.Contains(t, d.Buckets, 0.2, "200 ms is a bound, as the response-time alert reads it")

	d.Buckets[0] = 99
	assert.Equal(t, 0.001, metrics.Config{}.Defaults().Buckets[0], "Defaults returns a fresh slice")
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(c *metrics.Config)
		field string // "" = valid
	}{
		{"defaults", func(*metrics.Config) {}, ""},
		{"custom path", func(c *metrics.Config) { c.Path = "/internal/prom" }, ""},
		{"empty path", func(c *metrics.Config) { c.Path = "" }, "path"},
		{"relative path", func(c *metrics.Config) { c.Path = "metrics" }, "path"},
		{"root path", func(c *metrics.Config) { c.Path = "/" }, "path"},
		{"wildcard path", func(c *metrics.Config) { c.Path = "/m/{x}" }, "path"},
		{"space in path", func(c *metrics.Config) { c.Path = "/a b" }, "path"},
		{"healthz", func(c *metrics.Config) { c.Path = "/healthz" }, "path"},
		{"under pprof", func(c *metrics.Config) { c.Path = "/debug/pprof/metrics" }, "path"},
		{"parent of pprof", func(c *metrics.Config) { c.Path = "/debug" }, "path"},
		{"prefix ok", func(c *metrics.Config) { c.Prefix = "gochat_im" }, ""},
		{"prefix digit first", func(c *metrics.Config) { c.Prefix = "1im" }, "prefix"},
		{"prefix dash", func(c *metrics.Config) { c.Prefix = "go-chat" }, "prefix"},
		{"prefix colon", func(c *metrics.Config) { c.Prefix = "a:b" }, "prefix"},
		{"no buckets", func(c *metrics.Config) { c.Buckets = nil }, "buckets"},
		{"zero bucket", func(c *metrics.Config) { c.Buckets = []float64{0, 1} }, "buckets"},
		{"negative bucket", func(c *metrics.Config) { c.Buckets = []float64{-1, 1} }, "buckets"},
		{"NaN bucket", func(c *metrics.Config) { c.Buckets = []float64{math.NaN()} }, "buckets"},
		{"infinite bucket", func(c *metrics.Config) { c.Buckets = []float64{1, math.Inf(1)} }, "buckets"},
		{"equal buckets", func(c *metrics.Config) { c.Buckets = []float64{0.1, 0.1} }, "buckets"},
		{"decreasing buckets", func(c *metrics.Config) { c.Buckets = []float64{1, 0.5} }, "buckets"},
		{"too many buckets", func(c *metrics.Config) {
			c.Buckets = make([]float64, 41)
			for i := range c.Buckets {
				c.Buckets[i] = float64(i + 1)
			}
		}, "buckets"},
		{"one bucket", func(c *metrics.Config) { c.Buckets = []float64{0.5} }, ""},
		{"unknown exporter", func(c *metrics.Config) { c.Tracing.Exporter = "jaeger" }, "tracing.exporter"},
		{"empty exporter", func(c *metrics.Config) { c.Tracing.Exporter = "" }, "tracing.exporter"},
		{"stdout", func(c *metrics.Config) { c.Tracing.Exporter = metrics.ExporterStdout }, ""},
		{"otlp-grpc", func(c *metrics.Config) {
			c.Tracing.Exporter, c.Tracing.Endpoint = metrics.ExporterOTLPGRPC, "otel-collector:4317"
		}, ""},
		{"otlp without endpoint", func(c *metrics.Config) { c.Tracing.Exporter = metrics.ExporterOTLPHTTP }, "tracing.endpoint"},
		{"endpoint with scheme", func(c *metrics.Config) {
			c.Tracing.Exporter, c.Tracing.Endpoint = metrics.ExporterOTLPHTTP, "http://otel-collector:4318"
		}, "tracing.endpoint"},
		{"endpoint without port", func(c *metrics.Config) {
			c.Tracing.Exporter, c.Tracing.Endpoint = metrics.ExporterOTLPGRPC, "otel-collector"
		}, "tracing.endpoint"},
		{"bad header name", func(c *metrics.Config) {
			c.Tracing.Headers = map[string]config.Secret{"bad header": "x"}
		}, "tracing.headers"},
		{"content-type header", func(c *metrics.Config) {
			c.Tracing.Headers = map[string]config.Secret{"Content-Type": "x"}
		}, "tracing.headers"},
		{"zero timeout", func(c *metrics.Config) { c.Tracing.Timeout = 0 }, "tracing.timeout"},
		{"huge timeout", func(c *metrics.Config) { c.Tracing.Timeout = config.Duration(2 * 60e9) }, "tracing.timeout"},
		{"ratio below 0", func(c *metrics.Config) { c.Tracing.SampleRatio = -0.1 }, "tracing.sampleRatio"},
		{"ratio above 1", func(c *metrics.Config) { c.Tracing.SampleRatio = 1.5 }, "tracing.sampleRatio"},
		{"ratio NaN", func(c *metrics.Config) { c.Tracing.SampleRatio = math.NaN() }, "tracing.sampleRatio"},
		{"ratio 0", func(c *metrics.Config) { c.Tracing.SampleRatio = 0 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := metrics.Config{}.Defaults()
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			var ie *lifecycle.InfraError
			require.True(t, errors.As(err, &ie), "want an InfraError, got %v", err)
			assert.Equal(t, lifecycle.TypeValidation, ie.Type)
			assert.Equal(t, metrics.ModuleName, ie.Component)
			assert.Equal(t, tt.field, ie.Field, err.Error())
		})
	}
}

// TestConfigDocuments decodes documents as they sit in etcd: field names,
// merging, unknown fields and wrong types.
func TestConfigDocuments(t *testing.T) {
	t.Setenv("OTLP_TOKEN", "s3cr3t-token")
	key := config.Key("test", "svc", metrics.ModuleName)
	c, err := config.Parse[metrics.Config](metrics.ModuleName, config.Layer{Key: key, Data: []byte(`{
		"enabled": true, "path": "/prom", "prefix": "im", "buckets": [0.01, 0.1, 1],
		"tracing": {"exporter": "otlp-grpc", "endpoint": "collector:4317", "insecure": true,
			"headers": {"authorization": "${OTLP_TOKEN}"}, "timeout": "2s", "sampleRatio": 0.25}}`)})
	require.NoError(t, err)
	assert.Equal(t, "/prom", c.Path)
	assert.Equal(t, []float64{0.01, 0.1, 1}, c.Buckets)
	assert.Equal(t, "s3cr3t-token", c.Tracing.Headers["authorization"].Reveal())
	assert.Equal(t, 0.25, c.Tracing.SampleRatio)
	assert.NotContains(t, fmt.Sprintf("%v %+v", c, c), "s3cr3t-token", "headers never print")

	bad := []struct {
		doc      string
		typ      lifecycle.ErrorType
		field    string
		contains string
	}{
		{`{"tracing":{"sampleRate":0.5}}`, lifecycle.TypeConfig, "", "tracing.sampleRate"},
		{`{"buckets":"1,2"}`, lifecycle.TypeConfig, "", "buckets"},
		{`{"tracing":{"timeout":5}}`, lifecycle.TypeConfig, "", "timeout"},
		{`{"tracing":{"exporter":"otlp-http"}}`, lifecycle.TypeValidation, "tracing.endpoint", "otel-collector:4318"},
	}
	for _, b := range bad {
		_, err := config.Parse[metrics.Config](metrics.ModuleName, config.Layer{Key: key, Data: []byte(b.doc)})
		require.Error(t, err, b.doc)
		var ie *lifecycle.InfraError
		require.True(t, errors.As(err, &ie), b.doc)
		assert.Equal(t, b.typ, ie.Type, b.doc)
		assert.Equal(t, metrics.ModuleName, ie.Component, b.doc)
		if b.field != "" {
			assert.Equal(t, b.field, ie.Field, b.doc)
		}
		assert.Contains(t, err.Error(), b.contains, b.doc)
	}
}
