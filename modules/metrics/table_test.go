package metrics_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/gochat/im-infra/modules/metrics"
)

// TestTableNamesAreWhatPrometheusShows creates the instruments of the rows
// that other modules emit (lifecycle, cache, db, mq) exactly as the table
// says (instrument name, unit, kind, attributes) and checks that the
// exporter shows them under the table's name, type and labels. The
// metrics module's own rows are checked by the tests that emit them.
func TestTableNamesAreWhatPrometheusShows(t *testing.T) {
	ctx := context.Background()
	p := start(t, metrics.Config{}.Defaults())
	m := p.MeterProvider().Meter("table-test")
	table := readmeTable(t)
	checked := 0
	for _, r := range table {
		if strings.HasPrefix(r.Module, "metrics") {
			continue
		}
		require.NotEmpty(t, r.Instrument, "row %s names no instrument", r.Name)
		var attrs []attribute.KeyValue
		for _, l := range r.Labels {
			attrs = append(attrs, attribute.String(l, "x"))
		}
		opt := metric.WithAttributes(attrs...)
		switch r.Type {
		case "counter":
			c, err := m.Float64Counter(r.Instrument, metric.WithUnit(r.Unit))
			require.NoError(t, err, r.Name)
			c.Add(ctx, 1, opt)
		case "gauge":
			g, err := m.Float64Gauge(r.Instrument, metric.WithUnit(r.Unit))
			require.NoError(t, err, r.Name)
			g.Record(ctx, 1, opt)
		case "histogram":
			h, err := m.Float64Histogram(r.Instrument, metric.WithUnit(r.Unit))
			require.NoError(t, err, r.Name)
			h.Record(ctx, 0.01, opt)
		}
		checked++
	}
	require.Greater(t, checked, 20)

	fams := scrape(t, p.Handler())
	for _, r := range table {
		if strings.HasPrefix(r.Module, "metrics") {
			continue
		}
		fam := fams[r.Name]
		if !assert.NotNil(t, fam, "instrument %s (unit %q) is not shown as %s", r.Instrument, r.Unit, r.Name) {
			continue
		}
		assert.Equal(t, r.Type, strings.ToLower(fam.GetType().String()), r.Name)
		var got []string
		for _, l := range labelNames(fam) {
			if l != "le" {
				got = append(got, l)
			}
		}
		assert.ElementsMatch(t, r.Labels, got, r.Name)
	}
}
