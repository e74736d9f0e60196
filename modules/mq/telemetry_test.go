package mq_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/mq"
)

// metricValue sums the data points of the named instrument whose
// attributes include want.
func metricValue(t *testing.T, r *sdkmetric.ManualReader, name string, want ...attribute.KeyValue) (float64, bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	matches := func(set attribute.Set) bool {
		for _, kv := range want {
			if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
				return false
			}
		}
		return true
	}
	var sum float64
	found := false
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes) {
						sum, found = sum+float64(p.Value), true
					}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes) {
						sum, found = sum+float64(p.Value), true
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes) {
						sum, found = sum+float64(p.Count), true
					}
				}
			}
		}
	}
	return sum, found
}

func TestMetrics(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic, group = "metered", "g-metered"
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 1})
	cfg.Consumer.MaxRetries = 2
	cfg.Producer.MaxRecordBytes = 100
	c := newTestClient(t, cfg, mq.WithMeterProvider(mp), mq.WithLogger(testLogger(t)))

	produce(t, c, topic, 0, 10, 1)
	require.Error(t, c.SendSync(context.Background(), &mq.Message{Topic: topic, Value: make([]byte, 101)}))

	l := newLedger()
	release := make(chan struct{})
	s, err := c.Subscribe(group, []string{topic}, func(ctx context.Context, m *mq.Message) error {
		switch string(m.Value) {
		case "0":
			<-release // holds the partition: nothing committed yet
		case "3":
			return errors.New("bad record")
		}
		return l.handler(ctx, m)
	})
	require.NoError(t, err)
	topicAttr := attribute.String("topic", topic)
	groupAttr := attribute.String("group", group)
	eventually(t, 10*time.Second, func() bool {
		v, ok := metricValue(t, reader, "mq.consumer.lag", topicAttr, groupAttr)
		return ok && v == 10
	}, "lag is the 10 records behind the uncommitted partition")
	close(release)
	l.waitFor(t, 9, 10*time.Second)
	eventually(t, 10*time.Second, func() bool {
		v, ok := metricValue(t, reader, "mq.consumer.lag", topicAttr, groupAttr)
		return ok && v == 0
	}, "lag drops to 0 once everything is committed")

	for _, m := range []struct {
		name  string
		attrs []attribute.KeyValue
		want  float64
	}{
		{"mq.produced", []attribute.KeyValue{topicAttr}, 10},
		{"mq.produced", []attribute.KeyValue{attribute.String("topic", mq.DeadLetterTopic(topic))}, 1},
		{"mq.produce.failed", []attribute.KeyValue{topicAttr}, 1},
		{"mq.consumed", []attribute.KeyValue{topicAttr, groupAttr}, 9},
		{"mq.consume.failed", []attribute.KeyValue{topicAttr, groupAttr}, 3},
		{"mq.consume.retried", []attribute.KeyValue{topicAttr, groupAttr}, 2},
		{"mq.consume.dead_lettered", []attribute.KeyValue{topicAttr, groupAttr}, 1},
		{"mq.handler.duration", []attribute.KeyValue{topicAttr, groupAttr}, 12}, // calls: 9 ok + 3 failed
	} {
		got, ok := metricValue(t, reader, m.name, m.attrs...)
		assert.True(t, ok, m.name)
		assert.Equal(t, m.want, got, "%s %v", m.name, m.attrs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
}

// TestTraceContextTravelsInHeaders: the sender's trace reaches the
// handler's ctx through a W3C traceparent header, with or without a
// TracerProvider given to the module.
func TestTraceContextTravelsInHeaders(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tests := []struct {
		name string
		opts []mq.Option
	}{
		{"no tracer provider", nil},
		{"with tracer provider", []mq.Option{mq.WithTracerProvider(tp)}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topic := "traced-" + string(rune('a'+i))
			c := newTestClient(t, testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 1}), append(tt.opts, mq.WithLogger(testLogger(t)))...)
			ctx, span := tp.Tracer("test").Start(context.Background(), "send")
			require.NoError(t, c.SendSync(ctx, &mq.Message{Topic: topic, Value: []byte("v")}))
			span.End()

			got := make(chan trace.SpanContext, 1)
			headers := make(chan []mq.Header, 1)
			s, err := c.Subscribe("g-"+topic, []string{topic}, func(ctx context.Context, m *mq.Message) error {
				got <- trace.SpanContextFromContext(ctx)
				headers <- m.Headers
				return nil
			})
			require.NoError(t, err)
			var sc trace.SpanContext
			select {
			case sc = <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("not consumed")
			}
			assert.Equal(t, span.SpanContext().TraceID(), sc.TraceID(), "the handler runs in the sender's trace")
			var names []string
			for _, h := range <-headers {
				names = append(names, h.Key)
			}
			assert.Contains(t, names, "traceparent")
			stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, s.Stop(stop))
		})
	}
	var kinds []string
	for _, s := range recorder.Ended() {
		kinds = append(kinds, s.Name())
	}
	assert.Contains(t, kinds, "traced-b publish")
	assert.Contains(t, kinds, "traced-b process")
}
