package metrics_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/gochat/im-infra/modules/clog"
	"github.com/gochat/im-infra/modules/metrics"
)

// spanSink collects what the stdout exporter writes.
type spanSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *spanSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(b)
}

// exportedSpan is the part of stdouttrace's JSON the tests read.
type exportedSpan struct {
	Name        string
	SpanKind    int
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ TraceID, SpanID string }
	Status      struct{ Code string }
}

func (s *spanSink) spans(t testing.TB) []exportedSpan {
	t.Helper()
	s.mu.Lock()
	data := bytes.Clone(s.buf.Bytes())
	s.mu.Unlock()
	var out []exportedSpan
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var sp exportedSpan
		err := dec.Decode(&sp)
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out = append(out, sp)
	}
}

func byName(spans []exportedSpan, name string) []exportedSpan {
	var out []exportedSpan
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// tracing starts a Provider whose spans go to the returned sink.
func tracing(t *testing.T) (*metrics.Provider, *spanSink) {
	t.Helper()
	sink := &spanSink{}
	cfg := metrics.Config{}.Defaults()
	cfg.Tracing.Exporter = metrics.ExporterStdout
	return start(t, cfg, metrics.WithStdout(sink)), sink
}

const (
	spanKindServer = 2
	spanKindClient = 3
)

// TestHTTPMiddlewareREDAndSpans drives a ServeMux behind the middleware
// with an instrumented client: request counts and latency by route,
// method, status and class, a client and a server span per request in one
// trace, and the trace ID in the handler's log fields.
func TestHTTPMiddlewareREDAndSpans(t *testing.T) {
	p, sink := tracing(t)
	var (
		mu       sync.Mutex
		traceIDs []string
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		for _, f := range clog.TraceFields(r.Context()) {
			if f.Key == "trace_id" {
				mu.Lock()
				traceIDs = append(traceIDs, f.String)
				mu.Unlock()
			}
		}
		code, _ := strconv.Atoi(r.PathValue("id"))
		w.WriteHeader(code)
	})
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok")) // no WriteHeader: 200
	})
	srv := httptest.NewServer(p.HTTPMiddleware(mux, "api"))
	defer srv.Close()
	plain := httptest.NewServer(p.HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "nope", http.StatusBadRequest)
	}), "/legacy"))
	defer plain.Close()

	client := &http.Client{Transport: p.HTTPTransport(nil)}
	do := func(method, url string) int {
		req, err := http.NewRequest(method, url, bytes.NewReader([]byte("{}")))
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, code := range []int{200, 200, 200, 404, 500, 503} {
		require.Equal(t, code, do(http.MethodGet, srv.URL+"/users/"+strconv.Itoa(code)))
	}
	require.Equal(t, 200, do(http.MethodPost, srv.URL+"/orders"))
	require.Equal(t, 400, do(http.MethodGet, plain.URL+"/anything"))

	fams := scrape(t, p.Handler())
	const server = "http_server_request_duration_seconds"
	route := func(r, method, code, class string) map[string]string {
		return map[string]string{"http_route": r, "http_request_method": method, "http_response_status_code": code, "http_response_status_class": class}
	}
	assert.Equal(t, 3.0, fams.value(server, route("/users/{id}", "GET", "200", "2xx")))
	assert.Equal(t, 1.0, fams.value(server, route("/users/{id}", "GET", "404", "4xx")))
	assert.Equal(t, 1.0, fams.value(server, route("/users/{id}", "GET", "500", "5xx")))
	assert.Equal(t, 1.0, fams.value(server, route("/users/{id}", "GET", "503", "5xx")))
	assert.Equal(t, 1.0, fams.value(server, route("/orders", "POST", "200", "2xx")))
	assert.Equal(t, 1.0, fams.value(server, route("/legacy", "GET", "400", "4xx")), "the route given when no pattern matched")
	for _, l := range labelNames(fams[server]) {
		assert.NotContains(t, []string{"server_address", "server_port", "url_scheme", "network_protocol_version"}, l, "filtered out")
	}
	assert.Nil(t, fams["http_server_request_body_size_bytes"], "body sizes are dropped")
	assert.Equal(t, 3.0, fams.value("http_client_request_duration_seconds",
		map[string]string{"http_request_method": "GET", "http_response_status_code": "200", "server_address": "127.0.0.1"}))
	checkAgainstTable(t, readmeTable(t), fams)

	require.NoError(t, p.Flush(context.Background()))
	spans := sink.spans(t)
	servers := byName(spans, "GET /users/{id}")
	require.Len(t, servers, 6)
	clients := map[string]exportedSpan{}
	for _, s := range spans {
		if s.SpanKind == spanKindClient {
			clients[s.SpanContext.SpanID] = s
		}
	}
	for _, s := range servers {
		assert.Equal(t, spanKindServer, s.SpanKind)
		parent, ok := clients[s.Parent.SpanID]
		require.True(t, ok, "the server span's parent is the client's span (W3C traceparent)")
		assert.Equal(t, parent.SpanContext.TraceID, s.SpanContext.TraceID)
	}
	assert.Equal(t, "Error", byName(spans, "GET /users/{id}")[4].Status.Code, "a 500 is a server span error")
	assert.Len(t, byName(spans, "GET /legacy"), 1)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, traceIDs, 6)
	assert.Equal(t, servers[0].SpanContext.TraceID, traceIDs[0], "clog.TraceFields sees the span")
}

// TestHTTPTraceContextWithTracingOff: with no exporter nothing is
// recorded, but an incoming traceparent still reaches the handler's logs.
func TestHTTPTraceContextWithTracingOff(t *testing.T) {
	p := start(t, metrics.Config{}.Defaults())
	var got string
	h := p.HTTPMiddleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		for _, f := range clog.TraceFields(r.Context()) {
			if f.Key == "trace_id" {
				got = f.String
			}
		}
	}), "/x")
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", got)
}

// TestSamplingIsParentBasedAndLive: with ratio 0 no new trace is
// recorded but a sampled caller's is; the ratio changes live.
func TestSamplingIsParentBasedAndLive(t *testing.T) {
	ctx := context.Background()
	sink := &spanSink{}
	cfg := metrics.Config{}.Defaults()
	cfg.Tracing.Exporter = metrics.ExporterStdout
	cfg.Tracing.SampleRatio = 0
	p := start(t, cfg, metrics.WithStdout(sink))
	tr := p.TracerProvider().Tracer("test")

	_, root := tr.Start(ctx, "root")
	assert.False(t, root.IsRecording(), "ratio 0: new traces are not recorded")
	root.End()

	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0xab}, SpanID: trace.SpanID{0xcd}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	_, child := tr.Start(trace.ContextWithRemoteSpanContext(ctx, parent), "child")
	assert.True(t, child.IsRecording(), "a sampled caller's trace is followed")
	child.End()

	cfg.Tracing.SampleRatio = 1
	p.Reconfigure(cfg)
	_, root = tr.Start(ctx, "root-after")
	assert.True(t, root.IsRecording(), "the new ratio applies at once")
	root.End()

	require.NoError(t, p.Flush(ctx))
	var names []string
	for _, s := range sink.spans(t) {
		names = append(names, s.Name)
	}
	assert.Equal(t, []string{"child", "root-after"}, names)
}
