package mq_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/mq"
)

func TestConsumeEverythingAndCommit(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic, n = "basic", 300
	c := newTestClient(t, testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 4}))
	produce(t, c, topic, 0, n, 16)

	l := newLedger()
	s, err := c.Subscribe("g-basic", []string{topic}, l.handler)
	require.NoError(t, err)
	l.waitFor(t, n, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))

	assert.Empty(t, l.missing(n))
	assert.Zero(t, l.duplicates())
	got := committed(t, c, "g-basic")
	var sum int64
	for k, off := range got {
		assert.Equal(t, l.handledPrefix(k.topic, k.partition), off, "partition %d", k.partition)
		sum += off
	}
	assert.EqualValues(t, n, sum, "every handled record committed")
}

func TestPoisonRecordGoesToDeadLetterTopicAndPartitionMovesOn(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic = "poison"
	cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 1})
	cfg.Consumer.MaxRetries = 2
	c := newTestClient(t, cfg)
	produce(t, c, topic, 0, 10, 1) // one partition, offsets 0..9

	l := newLedger()
	var poisonCalls atomic.Int32
	s, err := c.Subscribe("g-poison", []string{topic}, func(ctx context.Context, m *mq.Message) error {
		if string(m.Value) == "4" {
			poisonCalls.Add(1)
			return errors.New("cannot parse record 4")
		}
		return l.handler(ctx, m)
	})
	require.NoError(t, err)
	l.waitFor(t, 9, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))

	assert.EqualValues(t, 3, poisonCalls.Load(), "1 call + maxRetries retries")
	assert.Equal(t, []int{4}, l.missing(10))
	assert.EqualValues(t, 10, committed(t, c, "g-poison")[tp{topic, 0}], "committed past the poison record")

	dead := readAll(t, k.Addrs(), mq.DeadLetterTopic(topic))
	require.Len(t, dead, 1)
	d := dead[0]
	assert.Equal(t, "4", string(d.Value))
	assert.Equal(t, "k0", string(d.Key))
	h := map[string]string{}
	for _, k := range []string{mq.HeaderDLQError, mq.HeaderDLQAttempts, mq.HeaderDLQTopic, mq.HeaderDLQPartition, mq.HeaderDLQOffset, mq.HeaderDLQGroup} {
		v, ok := mq.HeaderValue(d, k)
		require.True(t, ok, k)
		h[k] = string(v)
	}
	assert.Equal(t, "cannot parse record 4", h[mq.HeaderDLQError])
	assert.Equal(t, "3", h[mq.HeaderDLQAttempts])
	assert.Equal(t, topic, h[mq.HeaderDLQTopic])
	assert.Equal(t, "0", h[mq.HeaderDLQPartition])
	assert.Equal(t, "4", h[mq.HeaderDLQOffset])
	assert.Equal(t, "g-poison", h[mq.HeaderDLQGroup])
}

// TestGracefulStopDrains stops a consumer while handlers are busy and
// records wait in its queues: the record in a handler finishes and is
// committed, waiting records stay uncommitted, and the next member takes
// over exactly where the first stopped.
func TestGracefulStopDrains(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic, n, group = "drain", 400, "g-drain"
	c := newTestClient(t, testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 4}))
	produce(t, c, topic, 0, n, 40)

	first := newLedger()
	stopping := make(chan struct{})
	var inFlight atomic.Int64
	inFlight.Store(-1)
	s, err := c.Subscribe(group, []string{topic}, func(ctx context.Context, m *mq.Message) error {
		time.Sleep(2 * time.Millisecond)
		if first.distinct() == 100 && inFlight.CompareAndSwap(-1, int64(m.Partition)<<32|m.Offset) {
			<-stopping // still running when Stop begins
			time.Sleep(200 * time.Millisecond)
		}
		return first.handler(ctx, m)
	})
	require.NoError(t, err)
	first.waitFor(t, 100, 20*time.Second)
	for inFlight.Load() == -1 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	close(stopping)
	began := time.Now()
	require.NoError(t, s.Stop(ctx))
	assert.Less(t, time.Since(began), 8*time.Second)

	assert.Zero(t, first.duplicates(), "none handled twice within one run")
	handled := first.distinct()
	assert.Less(t, handled, n, "some records were left for the next member")
	got := committed(t, c, group)
	var sum int64
	for p := range int32(4) {
		assert.Equal(t, first.handledPrefix(topic, p), got[tp{topic, p}], "partition %d: committed == handled", p)
		sum += got[tp{topic, p}]
	}
	assert.EqualValues(t, handled, sum)
	stuck := inFlight.Load()
	assert.Greater(t, got[tp{topic, int32(stuck >> 32)}], stuck&(1<<32-1), "the record in flight at Stop was finished and committed")

	second := newLedger()
	s2, err := c.Subscribe(group, []string{topic}, second.handler)
	require.NoError(t, err)
	second.waitFor(t, n-handled, 20*time.Second)
	require.NoError(t, s2.Stop(ctx))
	for i := range n {
		assert.Equal(t, 1, first.times(i)+second.times(i), "record %d handled once across both runs", i)
	}
}

// TestStopWithStuckHandlerKeepsItsDeadline: a handler that ignores its ctx
// cannot hold Stop past its ctx, and its record is not committed.
func TestStopWithStuckHandlerKeepsItsDeadline(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic, group = "stuck", "g-stuck"
	c := newTestClient(t, testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 1}))
	produce(t, c, topic, 0, 5, 1)

	l := newLedger()
	release := make(chan struct{})
	handlerDone := make(chan struct{})
	s, err := c.Subscribe(group, []string{topic}, func(ctx context.Context, m *mq.Message) error {
		if string(m.Value) == "2" {
			defer close(handlerDone)
			<-release // ignores ctx
		}
		return l.handler(ctx, m)
	})
	require.NoError(t, err)
	l.waitFor(t, 2, 20*time.Second)
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	began := time.Now()
	_ = s.Stop(ctx)
	assert.Less(t, time.Since(began), 2500*time.Millisecond)
	close(release)
	<-handlerDone
	assert.EqualValues(t, 2, committed(t, c, group)[tp{topic, 0}], "offsets 0 and 1 committed; 2 was not finished in time")
}
