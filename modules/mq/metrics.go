package mq

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// meterName is the package import path, as the metrics module expects.
const meterName = "github.com/gochat/im-infra/modules/mq"

// metrics holds the module's instruments. Attribute sets are built once
// per topic (producer) or per group and topic (consumer), so recording
// allocates nothing.
type metrics struct {
	client  *Client
	meter   metric.Meter
	enabled bool // a MeterProvider was given

	producedRecords metric.Int64Counter
	produceFailures metric.Int64Counter
	consumed        metric.Int64Counter
	consumeFailures metric.Int64Counter
	retried         metric.Int64Counter
	deadLettered    metric.Int64Counter
	handlerDuration metric.Float64Histogram
	lag             metric.Int64ObservableGauge

	topics sync.Map // topic -> metric.MeasurementOption

	mu  sync.Mutex
	reg metric.Registration
}

func newMetrics(mp metric.MeterProvider, c *Client) *metrics {
	m := &metrics{client: c, enabled: mp != nil}
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m.meter = mp.Meter(meterName)
	// Instrument errors only come from invalid names or units, which are
	// constants here; the returned instrument is then a no-op one.
	m.producedRecords, _ = m.meter.Int64Counter("mq.produced", metric.WithUnit("{record}"),
		metric.WithDescription("Records the brokers acknowledged."))
	m.produceFailures, _ = m.meter.Int64Counter("mq.produce.failed", metric.WithUnit("{record}"),
		metric.WithDescription("Records that could not be sent (refused, timed out, or still waiting at close)."))
	m.consumed, _ = m.meter.Int64Counter("mq.consumed", metric.WithUnit("{record}"),
		metric.WithDescription("Records whose handler returned nil."))
	m.consumeFailures, _ = m.meter.Int64Counter("mq.consume.failed", metric.WithUnit("{record}"),
		metric.WithDescription("Handler calls that returned an error or panicked."))
	m.retried, _ = m.meter.Int64Counter("mq.consume.retried", metric.WithUnit("{record}"),
		metric.WithDescription("Handler calls repeated after a failure."))
	m.deadLettered, _ = m.meter.Int64Counter("mq.consume.dead_lettered", metric.WithUnit("{record}"),
		metric.WithDescription("Records sent to their dead-letter topic after the last retry failed."))
	m.handlerDuration, _ = m.meter.Float64Histogram("mq.handler.duration", metric.WithUnit("s"),
		metric.WithDescription("Time spent in one handler call."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	m.lag, _ = m.meter.Int64ObservableGauge("mq.consumer.lag", metric.WithUnit("{record}"),
		metric.WithDescription("Records between a group's committed offset and the partition's high watermark, summed over the partitions this process owns."))
	return m
}

func (m *metrics) topic(topic string) metric.MeasurementOption {
	if o, ok := m.topics.Load(topic); ok {
		return o.(metric.MeasurementOption)
	}
	o, _ := m.topics.LoadOrStore(topic, metric.WithAttributeSet(attribute.NewSet(attribute.String("topic", topic))))
	return o.(metric.MeasurementOption)
}

// produced and produceFailed are small enough to be inlined: without a
// MeterProvider a record costs one check.
func (m *metrics) produced(ctx context.Context, topic string) {
	if m.enabled {
		m.countRecord(ctx, m.producedRecords, topic)
	}
}

func (m *metrics) produceFailed(ctx context.Context, topic string) {
	if m.enabled {
		m.countRecord(ctx, m.produceFailures, topic)
	}
}

func (m *metrics) countRecord(ctx context.Context, counter metric.Int64Counter, topic string) {
	counter.Add(ctx, 1, m.topic(topic))
}

// consumerAttrs is the attribute set of one group and topic.
func consumerAttrs(group, topic string) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String("group", group), attribute.String("topic", topic)))
}

func (m *metrics) handled(ctx context.Context, attrs metric.MeasurementOption, took time.Duration, err error) {
	m.handlerDuration.Record(ctx, took.Seconds(), attrs)
	if err != nil {
		m.consumeFailures.Add(ctx, 1, attrs)
		return
	}
	m.consumed.Add(ctx, 1, attrs)
}

// observe registers the lag callback; stop unregisters it.
func (m *metrics) observe() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reg != nil {
		return nil
	}
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, s := range m.client.snapshotConsumers() {
			for topic, lag := range s.lag() {
				o.ObserveInt64(m.lag, lag, consumerAttrs(s.group, topic))
			}
		}
		return nil
	}, m.lag)
	if err != nil {
		return err
	}
	m.reg = reg
	return nil
}

func (m *metrics) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reg != nil {
		_ = m.reg.Unregister()
		m.reg = nil
	}
}
