package mq_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/mq"
)

// eventually polls cond until it holds or within passes.
func eventually(t *testing.T, within time.Duration, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, within, 10*time.Millisecond, msg)
}

func TestPauseAndResume(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic = "pausable"
	cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 2})
	c := newTestClient(t, cfg)
	l := newLedger()
	s, err := c.Subscribe("g-pause", []string{topic}, l.handler)
	require.NoError(t, err)
	produce(t, c, topic, 0, 10, 4)
	l.waitFor(t, 10, 20*time.Second)

	steps := []struct {
		name          string
		pause, resume func()
	}{
		{"Pause/Resume", func() { s.Pause() }, func() { s.Resume() }},
		{"consumer.pausedTopics, live", func() {
			next := cfg
			next.Consumer.PausedTopics = []string{topic}
			require.NoError(t, c.Update(next))
		}, func() { require.NoError(t, c.Update(cfg)) }},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.pause()
			assert.Equal(t, []string{topic}, s.Paused())
			first := 10 + i*10
			produce(t, c, topic, first, 10, 4)
			time.Sleep(500 * time.Millisecond) // several fetch waits
			assert.Equal(t, first, l.distinct(), "nothing handled while paused")
			st.resume()
			assert.Empty(t, s.Paused())
			l.waitFor(t, first+10, 10*time.Second)
		})
	}
}

// TestDeadLetterOffBlocksThenLiveChangeMovesOn: with dead-lettering off a
// failing record is retried and its partition waits (nothing is skipped);
// turning dead-lettering on live sends it to the DLQ and the partition
// moves on.
func TestDeadLetterOffBlocksThenLiveChangeMovesOn(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic = "stubborn"
	cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 1})
	cfg.Consumer.DeadLetter = false
	cfg.Consumer.MaxRetries = 1
	core, logs := observer.New(zap.InfoLevel)
	c := newTestClient(t, cfg, mq.WithLogger(zap.New(core)))
	produce(t, c, topic, 0, 5, 1)

	l := newLedger()
	var calls atomic.Int32
	s, err := c.Subscribe("g-stubborn", []string{topic}, func(ctx context.Context, m *mq.Message) error {
		if string(m.Value) == "2" {
			calls.Add(1)
			return errors.New("downstream refuses")
		}
		return l.handler(ctx, m)
	})
	require.NoError(t, err)
	eventually(t, 10*time.Second, func() bool { return calls.Load() > 5 }, "retried past maxRetries")
	assert.Equal(t, 2, l.distinct(), "the partition waits behind the failing record")
	assert.Equal(t, []int{2, 3, 4}, l.missing(5))

	next := cfg
	next.Consumer.DeadLetter = true
	require.NoError(t, c.Update(next))
	l.waitFor(t, 4, 10*time.Second)
	assert.Equal(t, []int{2}, l.missing(5))
	eventually(t, 5*time.Second, func() bool { return len(readAll(t, k.Addrs(), mq.DeadLetterTopic(topic))) == 1 }, "dead-lettered")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	assert.Positive(t, logs.FilterMessage("mq: config change applied").FilterField(zap.String("field", "consumer.deadLetter")).Len())
}

func TestHandlerPanicIsAFailure(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic = "panicky"
	cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 1})
	cfg.Consumer.MaxRetries = 0
	c := newTestClient(t, cfg)
	produce(t, c, topic, 0, 3, 1)
	l := newLedger()
	_, err := c.Subscribe("g-panic", []string{topic}, func(ctx context.Context, m *mq.Message) error {
		if string(m.Value) == "1" {
			panic("boom")
		}
		return l.handler(ctx, m)
	})
	require.NoError(t, err)
	l.waitFor(t, 2, 10*time.Second)
	var dead []string
	eventually(t, 5*time.Second, func() bool {
		dead = nil
		for _, r := range readAll(t, k.Addrs(), mq.DeadLetterTopic(topic)) {
			for _, h := range r.Headers {
				if h.Key == mq.HeaderDLQError {
					dead = append(dead, string(h.Value))
				}
			}
		}
		return len(dead) == 1
	}, "the panicking record is dead-lettered")
	assert.Equal(t, "mq: handler panicked: boom", dead[0])
}

func TestUpdateLogsRestartOnlyChanges(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	cfg := testConfig(k.Addrs())
	core, logs := observer.New(zap.InfoLevel)
	c := newTestClient(t, cfg, mq.WithLogger(zap.New(core)))

	next := cfg
	next.Brokers = append([]string{"other:9092"}, cfg.Brokers...)
	next.Producer.Linger = next.Producer.Linger * 2
	next.Consumer.MaxRetries = 7
	require.NoError(t, c.Update(next))
	warn := logs.FilterMessage("mq: config changed in fields that apply only after a restart").All()
	require.Len(t, warn, 1)
	assert.Equal(t, zap.WarnLevel, warn[0].Level)
	assert.ElementsMatch(t, []any{"brokers", "producer"}, warn[0].ContextMap()["fields"])
	applied := logs.FilterMessage("mq: config change applied").All()
	require.Len(t, applied, 1)
	assert.Equal(t, "consumer.maxRetries", applied[0].ContextMap()["field"])

	bad := next
	bad.Consumer.MaxRetries = -1
	requireInfraError(t, c.Update(bad), lifecycle.TypeValidation, "consumer.maxRetries")
}

func TestTopicAddedLiveIsCreated(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	cfg := testConfig(k.Addrs())
	c := newTestClient(t, cfg)
	next := cfg
	next.Topics = []mq.TopicConfig{{Name: "added.live", Partitions: 5}}
	require.NoError(t, c.Update(next))
	eventually(t, 5*time.Second, func() bool {
		ts, err := c.Admin().DescribeTopics(context.Background(), "added.live")
		return err == nil && len(ts) == 1 && len(ts[0].Partitions) == 5
	}, "topic created")
}

func TestAdmin(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{Brokers: 3})
	c := newTestClient(t, testConfig(k.Addrs(), mq.TopicConfig{Name: mq.TopicMessagesUpstream, Partitions: 6, Configs: map[string]string{"retention.ms": "3600000"}}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adm := c.Admin()

	// Idempotent: the topic from the config exists; asking again is fine.
	require.NoError(t, adm.CreateTopics(ctx, mq.TopicConfig{Name: mq.TopicMessagesUpstream, Partitions: 6}, mq.TopicConfig{Name: mq.DownstreamTopic("gw-1"), Partitions: 2}))
	require.NoError(t, adm.CreateTopics(ctx, mq.TopicConfig{Name: mq.DownstreamTopic("gw-1"), Partitions: 2}))
	requireInfraError(t, adm.CreateTopics(ctx, mq.TopicConfig{Name: "bad name"}), lifecycle.TypeValidation, "topics[0].name")

	all, err := adm.ListTopics(ctx)
	require.NoError(t, err)
	var names []string
	for _, ti := range all {
		names = append(names, ti.Name)
	}
	assert.Subset(t, names, []string{mq.TopicMessagesUpstream, "gochat.messages.downstream.gw-1"})
	ts, err := adm.DescribeTopics(ctx, mq.TopicMessagesUpstream)
	require.NoError(t, err)
	require.Len(t, ts[0].Partitions, 6)
	for _, p := range ts[0].Partitions {
		assert.Contains(t, []int32{0, 1, 2}, p.Leader)
	}
	_, err = adm.DescribeTopics(ctx, "no.such.topic")
	requireInfraError(t, err, lifecycle.TypeConfig, "topic")

	// Lag: 30 records, 10 handled and committed.
	produce(t, c, mq.TopicMessagesUpstream, 0, 30, 30)
	l := newLedger()
	var handled atomic.Int32
	block := make(chan struct{})
	s, err := c.Subscribe("g-lag", []string{mq.TopicMessagesUpstream}, func(ctx context.Context, m *mq.Message) error {
		if handled.Add(1) > 10 {
			<-block
			return errors.New("stopping")
		}
		return l.handler(ctx, m)
	})
	require.NoError(t, err)
	l.waitFor(t, 10, 10*time.Second)
	stopped := make(chan error)
	go func() { stopped <- s.Stop(ctx) }()
	time.Sleep(100 * time.Millisecond) // Stop has asked the workers to stop
	close(block)                       // the blocked handlers fail; not retried, not committed
	require.NoError(t, <-stopped)
	lag, err := adm.Lag(ctx, "g-lag")
	require.NoError(t, err)
	assert.Equal(t, "Empty", lag.State)
	assert.EqualValues(t, 20, lag.Total)
}

func TestHealth(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	c, err := mq.New(context.Background(), testConfig(k.Addrs(), mq.TopicConfig{Name: "h", Partitions: 1}))
	require.NoError(t, err)
	s, err := c.Subscribe("g-health", []string{"h"}, func(context.Context, *mq.Message) error { return nil })
	require.NoError(t, err)
	s.Pause()
	checker := c.Checker()
	assert.Equal(t, mq.ModuleName, checker.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st := checker.Check(ctx)
	assert.Equal(t, lifecycle.Healthy, st.State, st.Message)
	assert.Equal(t, 1, st.Details["brokers"])
	assert.Equal(t, []string{"g-health"}, st.Details["consumer_groups"])
	assert.Equal(t, []string{"h"}, st.Details["paused_topics"])

	k.Stop()
	short, cancelShort := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancelShort()
	began := time.Now()
	st = checker.Check(short)
	assert.Equal(t, lifecycle.Unhealthy, st.State)
	assert.Less(t, time.Since(began), time.Second, "the check honours its ctx")

	stop, cancelStop := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancelStop()
	_ = c.Close(stop)
	st = checker.Check(ctx)
	assert.Equal(t, lifecycle.Unhealthy, st.State)
	assert.True(t, slices.Contains([]string{mq.ErrClosed.Error()}, st.Message), st.Message)
}
