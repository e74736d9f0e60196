package mq_test

import (
	"context"
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

	"github.com/gochat/im-infra/devstack"
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
// counted as failed, never silently dropped.
func TestSendCallbackReportsUndeliveredOnClose(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic = "undelivered"
	cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 1})
	c, err := mq.New(context.Background(), cfg)
	require.NoError(t, err)
	// The broker stops answering produce requests.
	k.Cluster().ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.Cluster().KeepControl()
		return nil, nil, true
	})
	const n = 20
	results := make(chan error, n)
	for i := range n {
		c.Send(context.Background(), &mq.Message{Topic: topic, Value: []byte(strconv.Itoa(i))},
			func(_ *mq.Message, err error) { results <- err })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.Error(t, c.Close(ctx), "flush could not finish")
	for range n {
		select {
		case err := <-results:
			require.ErrorIs(t, err, mq.ErrClosed)
		case <-time.After(10 * time.Second):
			t.Fatal("a record's callback was never called")
		}
	}
}
