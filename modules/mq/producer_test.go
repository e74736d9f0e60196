package mq_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/mq"
)

// notLeader answers a produce request with NOT_LEADER_FOR_PARTITION for
// every partition, without appending anything.
func notLeader(req kmsg.Request) kmsg.Response {
	r := req.(*kmsg.ProduceRequest)
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	for _, t := range r.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = t.Topic, t.TopicID
		for _, p := range t.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = p.Partition
			sp.ErrorCode = kerr.NotLeaderForPartition.Code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// controlProduce makes the first n produce requests go through fn.
func controlProduce(cluster *kfake.Cluster, n int32, fn func(kmsg.Request) (kmsg.Response, error, bool)) *atomic.Int32 {
	var hits atomic.Int32
	cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if hits.Load() >= n {
			cluster.DropControl()
			return nil, nil, false
		}
		hits.Add(1)
		return fn(req)
	})
	return &hits
}

// TestProduceSurvivesInjectedBrokerErrors sends 2,000 records while the
// broker fails produce requests, then reads the topic back: every record
// is there exactly once. The last row shows the test can fail: without
// idempotence, a request that timed out after the broker appended it is
// appended again.
func TestProduceSurvivesInjectedBrokerErrors(t *testing.T) {
	tests := []struct {
		name       string
		idempotent bool
		inject     func(c *kfake.Cluster, topic string) func() int
		wantDups   bool
	}{
		{
			name: "NOT_LEADER_FOR_PARTITION", idempotent: true,
			inject: func(c *kfake.Cluster, _ string) func() int {
				hits := controlProduce(c, 6, func(req kmsg.Request) (kmsg.Response, error, bool) { return notLeader(req), nil, true })
				return func() int { return int(hits.Load()) }
			},
		},
		{
			name: "connection dropped mid-request", idempotent: true,
			inject: func(c *kfake.Cluster, _ string) func() int {
				hits := controlProduce(c, 4, func(kmsg.Request) (kmsg.Response, error, bool) {
					return nil, errors.New("injected: connection dropped"), true
				})
				return func() int { return int(hits.Load()) }
			},
		},
		{
			name: "REQUEST_TIMED_OUT after the append", idempotent: true,
			inject: func(c *kfake.Cluster, topic string) func() int {
				h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.RequestTimedOut, Count: 6})
				return h.Hits
			},
		},
		{
			name: "REQUEST_TIMED_OUT after the append, not idempotent", idempotent: false,
			inject: func(c *kfake.Cluster, topic string) func() int {
				h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.RequestTimedOut, Count: 6})
				return h.Hits
			},
			wantDups: true,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := startKafka(t, devstack.KafkaOptions{})
			topic := "faults-" + strconv.Itoa(i)
			cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 3})
			cfg.Producer.Idempotent = tt.idempotent
			if !tt.idempotent {
				cfg.Producer.Acks = "leader"
			}
			c := newTestClient(t, cfg)
			hits := tt.inject(k.Cluster(), topic)

			const n = 2000
			produce(t, c, topic, 0, n, 50) // fails the test on any send error
			require.Positive(t, hits(), "no fault was injected")

			seen := map[int]int{}
			for _, r := range readAll(t, k.Addrs(), topic) {
				v, err := strconv.Atoi(string(r.Value))
				require.NoError(t, err)
				seen[v]++
			}
			dups := 0
			for v := range n {
				require.Positive(t, seen[v], "record %d lost", v)
				dups += seen[v] - 1
			}
			t.Logf("%d faults injected; %d records stored twice", hits(), dups)
			if tt.wantDups {
				assert.Positive(t, dups)
			} else {
				assert.Zero(t, dups)
			}
		})
	}
}

// TestSendCallbackReportsUndeliveredOnClose: records still waiting when
// Close's ctx ends are reported to their callbacks with ErrClosed and
// counted as failed, never silently dropped; records sent without a
// callback are counted too.
func TestSendCallbackReportsUndeliveredOnClose(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic = "undelivered"
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 1})
	c, err := mq.New(context.Background(), cfg, mq.WithMeterProvider(mp))
	require.NoError(t, err)
	// The broker stops answering produce requests.
	k.Cluster().ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.Cluster().KeepControl()
		return nil, nil, true
	})
	const n, uncalled = 20, 5
	results := make(chan error, n)
	for i := range n {
		c.Send(context.Background(), &mq.Message{Topic: topic, Value: []byte(strconv.Itoa(i))},
			func(_ *mq.Message, err error) { results <- err })
	}
	for i := range uncalled {
		c.Send(context.Background(), &mq.Message{Topic: topic, Value: []byte(strconv.Itoa(n + i))}, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.Error(t, c.Close(ctx), "flush could not finish")
	// Close returns once every callback has run and every record is
	// counted, so nothing is reported after the producer is gone.
	require.Len(t, results, n, "every callback ran before Close returned")
	failed, _ := metricValue(t, reader, "mq.produce.failed", attribute.String("topic", topic))
	assert.Equal(t, float64(n+uncalled), failed, "every undelivered record is counted, with a callback or without")
	for range n {
		select {
		case err := <-results:
			require.ErrorIs(t, err, mq.ErrClosed)
			requireInfraError(t, err, lifecycle.TypeInternal, "")
		case <-time.After(10 * time.Second):
			t.Fatal("a record's callback was never called")
		}
	}
}

// TestSendCallbackGetsTheModulesErrors: a record the broker refuses
// reaches its callback as the module's typed error and is counted, and a
// good one as nil, whatever the ctx and the record carry: a plain ctx, a
// ctx with a span (whose trace goes into the headers), a record whose
// Context the caller set, and no callback at all. After the callback the
// record's Context is as the caller left it or franz-go's own.
func TestSendCallbackGetsTheModulesErrors(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic = "typed"
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 1})
	cfg.Producer.MaxRecordBytes = 4 << 20 // above the broker's 1 MiB: the broker refuses
	c := newTestClient(t, cfg, mq.WithMeterProvider(mp), mq.WithLogger(testLogger(t)))
	big := make([]byte, 2<<20)
	_, _ = rand.Read(big) // incompressible

	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	spanCtx, span := tp.Tracer("test").Start(context.Background(), "send")
	defer span.End()
	type key struct{}
	own := context.WithValue(context.Background(), key{}, "mine")

	tests := []struct {
		name      string
		ctx       context.Context
		record    context.Context // the Message's Context before Send
		wantTrace bool
	}{
		{name: "plain ctx", ctx: context.Background()},
		{name: "ctx with a span", ctx: spanCtx, wantTrace: true},
		{name: "record Context set by the caller", ctx: context.Background(), record: own},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, value := range [][]byte{big, []byte("small")} {
				m := &mq.Message{Topic: topic, Value: value, Context: tt.record}
				got := make(chan error, 1)
				c.Send(tt.ctx, m, func(r *mq.Message, err error) {
					assert.Same(t, m, r)
					if tt.record != nil {
						assert.Equal(t, "mine", r.Context.Value(key{}), "the caller's Context is kept")
					} else {
						assert.True(t, r.Context == nil || r.Context == tt.ctx, "Context is the caller's nil or the send ctx, not the module's: %T", r.Context)
					}
					got <- err
				})
				var err error
				select {
				case err = <-got:
				case <-time.After(10 * time.Second):
					t.Fatal("callback never called")
				}
				_, traced := mq.HeaderValue(m, "traceparent")
				assert.Equal(t, tt.wantTrace, traced)
				if len(value) == len(big) {
					requireInfraError(t, err, lifecycle.TypeValidation, "value")
					assert.ErrorIs(t, err, kerr.MessageTooLarge)
					continue
				}
				require.NoError(t, err)
				assert.GreaterOrEqual(t, m.Offset, int64(0))
			}
		})
	}
	for _, value := range [][]byte{big, []byte("small")} { // one at a time: not in one batch
		c.Send(context.Background(), &mq.Message{Topic: topic, Value: value}, nil)
		require.NoError(t, c.Flush(context.Background()))
	}
	failed, _ := metricValue(t, reader, "mq.produce.failed", attribute.String("topic", topic))
	produced, _ := metricValue(t, reader, "mq.produced", attribute.String("topic", topic))
	assert.Equal(t, float64(len(tests)+1), failed)
	assert.Equal(t, float64(len(tests)+1), produced)
}

// TestSendGivesUpWhenCtxEnds: Send blocks while
// producer.maxBufferedRecords records wait, and a record that could not
// be buffered before its ctx ended fails to its callback with the ctx's
// error, and is counted.
func TestSendGivesUpWhenCtxEnds(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic = "full"
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 1})
	cfg.Producer.MaxBufferedRecords = 1
	c := newTestClient(t, cfg, mq.WithMeterProvider(mp), mq.WithLogger(testLogger(t)))
	release := make(chan struct{})
	k.Cluster().ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		<-release // hold the first produce request; kfake answers it afterwards
		return nil, nil, false
	})
	first := make(chan error, 1)
	c.Send(context.Background(), &mq.Message{Topic: topic, Value: []byte("first")}, func(_ *mq.Message, err error) { first <- err })

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	second := make(chan error, 1)
	began := time.Now()
	c.Send(ctx, &mq.Message{Topic: topic, Value: []byte("second")}, func(_ *mq.Message, err error) { second <- err })
	assert.GreaterOrEqual(t, time.Since(began), 150*time.Millisecond, "Send blocked while the buffer was full")
	select {
	case err := <-second:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(10 * time.Second):
		t.Fatal("the second record's callback was never called")
	}
	close(release)
	require.NoError(t, <-first)
	failed, _ := metricValue(t, reader, "mq.produce.failed", attribute.String("topic", topic))
	assert.Equal(t, float64(1), failed)
}
