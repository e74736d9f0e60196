package metrics

import (
	"net/http"
	"strings"

	"github.com/felixge/httpsnoop"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
)

// statusClassKey is the status class ("2xx" ... "5xx") the middleware adds
// to http.server.request.duration, so an error rate needs no regex.
const statusClassKey = attribute.Key("http.response.status_class")

// HTTPMiddleware instruments next: a server span per request (continuing
// the caller's W3C trace context) and http.server.request.duration by
// method, route, status code and status class. The route is the
// ServeMux pattern that matched when next is (or wraps) a ServeMux, else
// route. clog.TraceFields(r.Context()) inside next gives the trace ID.
func (p *Provider) HTTPMiddleware(next http.Handler, route string) http.Handler {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusOK
		wrote := false
		w = httpsnoop.Wrap(w, httpsnoop.Hooks{
			WriteHeader: func(write httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
				return func(c int) {
					if !wrote && c >= 200 {
						code, wrote = c, true
					}
					write(c)
				}
			},
			Write: func(write httpsnoop.WriteFunc) httpsnoop.WriteFunc {
				return func(b []byte) (int, error) {
					wrote = true
					return write(b)
				}
			},
		})
		next.ServeHTTP(w, r)
		labeler, _ := otelhttp.LabelerFromContext(r.Context())
		labeler.Add(statusClassKey.String(statusClass(code)))
		if r.Pattern == "" && route != "" {
			labeler.Add(attribute.String("http.route", route))
		}
	})
	return otelhttp.NewHandler(inner, route,
		otelhttp.WithMeterProvider(&p.meters),
		otelhttp.WithTracerProvider(&p.tracers),
		otelhttp.WithPropagators(p.prop),
		otelhttp.WithSpanNameFormatter(spanName),
	)
}

// HTTPTransport instruments an HTTP client: a client span per request,
// the W3C trace context in the request headers, and
// http.client.request.duration by method, status code and server. A nil
// base is http.DefaultTransport.
func (p *Provider) HTTPTransport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return otelhttp.NewTransport(base,
		otelhttp.WithMeterProvider(&p.meters),
		otelhttp.WithTracerProvider(&p.tracers),
		otelhttp.WithPropagators(p.prop),
	)
}

// spanName is "METHOD route": the matched pattern's path, else the route
// given to HTTPMiddleware.
func spanName(route string, r *http.Request) string {
	if pattern := patternPath(r.Pattern); pattern != "" {
		return r.Method + " " + pattern
	}
	if route != "" {
		return r.Method + " " + route
	}
	return r.Method
}

// patternPath is the path of a ServeMux pattern ("GET example.com/a/{id}"
// gives "/a/{id}").
func patternPath(pattern string) string {
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = pattern[i+1:]
	}
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		return pattern[i:]
	}
	return ""
}

func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return string(rune('0'+code/100)) + "xx"
}
