package metrics_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/modules/clog/clogtest"
	"github.com/gochat/im-infra/modules/metrics"
)

func TestHelperRecords(t *testing.T) {
	ctx := context.Background()
	p := start(t, metrics.Config{}.Defaults())
	app := attribute.String("channel", "app")
	for range 3 {
		p.Inc(ctx, "orders.placed", app)
	}
	p.Inc(ctx, "orders.placed", attribute.String("channel", "web"))
	p.Add(ctx, "orders.items", 5)
	p.Add(ctx, "orders.items", 2)
	p.Observe(ctx, "orders.place.duration", 0.15, app)
	p.Observe(ctx, "orders.place.duration", 3, app)
	p.Set(ctx, "orders.queue.depth", 7)
	p.Set(ctx, "orders.queue.depth", 9)

	fams := scrape(t, p.Handler())
	assert.Equal(t, 3.0, fams.value("orders_placed_total", map[string]string{"channel": "app"}))
	assert.Equal(t, 1.0, fams.value("orders_placed_total", map[string]string{"channel": "web"}))
	assert.Equal(t, 7.0, fams.value("orders_items_total", nil))
	assert.Equal(t, 9.0, fams.value("orders_queue_depth", nil), "a gauge keeps the last value")

	h := fams.sample("orders_place_duration_seconds", map[string]string{"channel": "app"}).GetHistogram()
	assert.Equal(t, uint64(2), h.GetSampleCount())
	assert.InDelta(t, 3.15, h.GetSampleSum(), 1e-9)
	for _, b := range h.GetBucket() {
		switch b.GetUpperBound() {
		case 0.1:
			assert.Equal(t, uint64(0), b.GetCumulativeCount())
		case 0.2, 2.5:
			assert.Equal(t, uint64(1), b.GetCumulativeCount(), "le=%v: the latency buckets", b.GetUpperBound())
		case 5:
			assert.Equal(t, uint64(2), b.GetCumulativeCount())
		}
	}
}

// TestHelperRefusesBadNamesOnce: an invalid name, or one name used as two
// kinds, records nothing and logs one error however often it is called.
func TestHelperRefusesBadNamesOnce(t *testing.T) {
	ctx := context.Background()
	log, logs := clogtest.New()
	p := start(t, metrics.Config{}.Defaults(), metrics.WithLogger(log))
	for range 3 {
		p.Inc(ctx, "1orders")
		p.Observe(ctx, "orders placed", 1)
		p.Inc(ctx, strings.Repeat("a", 256))
	}
	p.Inc(ctx, "orders.placed")
	for range 3 {
		p.Set(ctx, "orders.placed", 1)
	}
	p.Inc(ctx, "orders.placed")

	refused := logs.FilterMessage("metric not recorded").All()
	require.Len(t, refused, 4, "one line per bad name and kind: %q", logs.Messages())
	for _, e := range refused {
		assert.Equal(t, zapcore.ErrorLevel, e.Level)
		assert.Contains(t, e.ContextMap()["error"], "metrics: validate [VALIDATION] field \"name\"")
	}
	assert.Contains(t, refused[0].ContextMap()["error"], `"1orders" is invalid`)
	assert.Contains(t, refused[3].ContextMap()["error"], `"orders.placed" is a counter (Inc, Add); it cannot be used as a gauge (Set)`)

	fams := scrape(t, p.Handler())
	assert.Equal(t, 2.0, fams.value("orders_placed_total", nil), "the counter still counts")
	assert.Nil(t, fams["1orders_total"])
}

func TestHelperConcurrentUse(t *testing.T) {
	ctx := context.Background()
	p := start(t, metrics.Config{}.Defaults())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				p.Inc(ctx, "jobs.done")
				p.Observe(ctx, "jobs.duration", float64(i%10)/100, attribute.Int("worker", g%2))
			}
		})
	}
	wg.Wait()
	fams := scrape(t, p.Handler())
	assert.Equal(t, 4000.0, fams.value("jobs_done_total", nil))
	assert.Equal(t, 2000.0, fams.value("jobs_duration_seconds", map[string]string{"worker": "0"}))
	assert.Equal(t, 2000.0, fams.value("jobs_duration_seconds", map[string]string{"worker": "1"}))
}
