package mq_test

import (
	"context"
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

// TestRebalanceJoinAndLeaveDuring10k: a second member joins while 10,000
// records are being handled and leaves before the end. Nothing is lost,
// no commit goes beyond what was handled, and no member commits a
// partition after it was revoked from it.
func TestRebalanceJoinAndLeaveDuring10k(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic, group, n = "rebalance", "g-rebalance", 10_000
	l := newLedger()
	check := newCommitCheck(group, l)
	check.watch(k.Cluster())
	log := loggerWith(testLogger(t), check.core())

	cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 6})
	a := newTestClient(t, cfg, mq.WithLogger(log.Named("a")))
	check.knowTopics(t, a, topic)
	produce(t, a, topic, 0, n, 500)

	var byB atomic.Int64
	slow := func(b bool) mq.Handler {
		return func(ctx context.Context, m *mq.Message) error {
			time.Sleep(time.Millisecond)
			if b {
				byB.Add(1)
			}
			return l.handler(ctx, m)
		}
	}
	sa, err := a.Subscribe(group, []string{topic}, slow(false))
	require.NoError(t, err)

	l.waitFor(t, 2_000, 30*time.Second)
	b := newTestClient(t, cfg, mq.WithLogger(log.Named("b")))
	sb, err := b.Subscribe(group, []string{topic}, slow(true))
	require.NoError(t, err)

	l.waitFor(t, 6_000, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, sb.Stop(ctx))

	l.waitFor(t, n, 30*time.Second)
	require.NoError(t, sa.Stop(ctx))

	assert.Empty(t, l.missing(n), "records lost")
	assert.Positive(t, byB.Load(), "the second member never got a partition: no rebalance was tested")
	commits, violations := check.result()
	assert.Empty(t, violations)
	assert.Positive(t, commits)
	got := committed(t, a, group)
	var sum int64
	for _, off := range got {
		sum += off
	}
	assert.EqualValues(t, n, sum, "everything committed at the end")
	t.Logf("10k records: %d handled by the joining member, %d handler calls in all, %d duplicates, %d commits checked",
		byB.Load(), l.total, l.duplicates(), commits)
}

// TestLostPartitions: the coordinator forgets the member (a heartbeat
// answered UNKNOWN_MEMBER_ID, as after a session expiry), so its
// partitions are lost: nothing of them is committed by the old member,
// it rejoins, and every record is still handled.
func TestLostPartitions(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic, group, n = "lost", "g-lost", 2000
	l := newLedger()
	check := newCommitCheck(group, l)
	check.watch(k.Cluster())
	log := loggerWith(testLogger(t), check.core())
	c := newTestClient(t, testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 4}), mq.WithLogger(log))
	check.knowTopics(t, c, topic)
	produce(t, c, topic, 0, n, 100)

	s, err := c.Subscribe(group, []string{topic}, func(ctx context.Context, m *mq.Message) error {
		time.Sleep(500 * time.Microsecond)
		return l.handler(ctx, m)
	})
	require.NoError(t, err)
	l.waitFor(t, 300, 20*time.Second)
	fault := k.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Group: group, Err: kerr.UnknownMemberID, TopLevel: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, fault.Wait(ctx, 1))
	l.waitFor(t, n, 30*time.Second)
	require.NoError(t, s.Stop(ctx))

	assert.Empty(t, l.missing(n))
	commits, violations := check.result()
	assert.Empty(t, violations)
	assert.Positive(t, commits)
	t.Logf("%d handler calls for %d records after losing the partitions", l.total, n)
}
