package metrics

import (
	"slices"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Attributes kept on the HTTP metrics of otelhttp. The others it records
// (server.address from the Host header, url.scheme, network.protocol.*)
// multiply the series without helping an alert, and the Host header is
// whatever the client sends.
var (
	httpServerKeys = []attribute.Key{"http.request.method", "http.response.status_code", statusClassKey, "http.route"}
	httpClientKeys = []attribute.Key{"http.request.method", "http.response.status_code", "server.address", "server.port", "error.type"}
)

// droppedInstruments are otelhttp's body-size histograms: RED needs none
// of them, and each would add a histogram per route, method and status.
var droppedInstruments = []string{
	"http.server.request.body.size", "http.server.response.body.size",
	"http.client.request.body.size", "http.client.response.body.size",
}

// newView is the module's one view. Every histogram in seconds gets
// buckets, overriding the instrument's own advice so that all latencies
// share one layout; the HTTP instruments keep low-cardinality attributes.
// It is one function rather than several views because two views that
// match one instrument make two streams of the same name.
func newView(buckets []float64) sdkmetric.View {
	latency := sdkmetric.AggregationExplicitBucketHistogram{Boundaries: slices.Clone(buckets)}
	return func(in sdkmetric.Instrument) (sdkmetric.Stream, bool) {
		s := sdkmetric.Stream{Name: in.Name, Description: in.Description, Unit: in.Unit}
		if slices.Contains(droppedInstruments, in.Name) {
			s.Aggregation = sdkmetric.AggregationDrop{}
			return s, true
		}
		matched := false
		switch in.Name {
		case "http.server.request.duration":
			s.AttributeFilter, matched = attribute.NewAllowKeysFilter(httpServerKeys...), true
		case "http.client.request.duration":
			s.AttributeFilter, matched = attribute.NewAllowKeysFilter(httpClientKeys...), true
		}
		if in.Kind == sdkmetric.InstrumentKindHistogram && in.Unit == "s" {
			s.Aggregation, matched = latency, true
		}
		return s, matched
	}
}
