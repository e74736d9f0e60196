package mq_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/mq"
)

// TestThreeBrokersLeadersAndCoordinatorsMove runs a producer and a
// consumer group on three brokers while the cluster moves under them:
// every partition leader is re-elected, one partition is moved, the group
// coordinator moves, and a broker dies (its connections drop) and comes
// back. Nothing is lost, and no offset is ever committed for a record that
// was not handled.
func TestThreeBrokersLeadersAndCoordinatorsMove(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{Brokers: 3})
	const topic, group, n = "moving", "g-moving", 3000
	l := newLedger()
	check := newCommitCheck(group, l)
	check.watch(k.Cluster())
	log := loggerWith(testLogger(t), check.core())
	c := newTestClient(t, testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 6}), mq.WithLogger(log))
	check.knowTopics(t, c, topic)

	s, err := c.Subscribe(group, []string{topic}, func(ctx context.Context, m *mq.Message) error {
		time.Sleep(200 * time.Microsecond)
		return l.handler(ctx, m)
	})
	require.NoError(t, err)

	// The producer sends throughout, a slice at a time.
	var (
		wg       sync.WaitGroup
		sendErrs []error
		mu       sync.Mutex
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for i := range n {
			c.Send(ctx, &mq.Message{Topic: topic, Key: []byte("k" + strconv.Itoa(i%60)), Value: []byte(strconv.Itoa(i))},
				func(_ *mq.Message, err error) {
					if err != nil {
						mu.Lock()
						sendErrs = append(sendErrs, err)
						mu.Unlock()
					}
				})
			if i%100 == 99 {
				time.Sleep(40 * time.Millisecond)
			}
		}
		// Send returns before delivery, and cancelling ctx would fail the
		// records still waiting (a leader move can hold them for a
		// metadata refresh): keep ctx until every callback ran.
		if err := c.Flush(ctx); err != nil {
			mu.Lock()
			sendErrs = append(sendErrs, err)
			mu.Unlock()
		}
	}()

	cluster := k.Cluster()
	step := func(name string, fn func() error) {
		time.Sleep(150 * time.Millisecond)
		require.NoError(t, fn(), name)
		t.Logf("%s at %d handled", name, l.distinct())
	}
	l.waitFor(t, 200, 20*time.Second)
	step("ShufflePartitionLeaders", func() error { cluster.ShufflePartitionLeaders(); return nil })
	step("MoveTopicPartition", func() error {
		return cluster.MoveTopicPartition(topic, 0, (cluster.LeaderFor(topic, 0)+1)%3)
	})
	step("RehashCoordinators", func() error {
		before := cluster.CoordinatorFor(group)
		for range 20 {
			cluster.RehashCoordinators()
			if cluster.CoordinatorFor(group) != before {
				return nil
			}
		}
		t.Log("coordinator rehashed onto the same broker")
		return nil
	})
	step("RemoveNode(1)", func() error { return cluster.RemoveNode(1) })
	port, err := strconv.Atoi(k.Addrs()[1][len("127.0.0.1:"):])
	require.NoError(t, err)
	step("AddNode(1)", func() error {
		// The removed broker's port can linger for a moment; rebinding it
		// is retried briefly, as an operator restarting a broker would.
		var err error
		for range 100 {
			if _, _, err = cluster.AddNode(1, port); err == nil || !strings.Contains(err.Error(), "address already in use") {
				return err
			}
			time.Sleep(20 * time.Millisecond)
		}
		return err
	})
	step("ShufflePartitionLeaders", func() error { cluster.ShufflePartitionLeaders(); return nil })

	wg.Wait()
	require.NoError(t, c.Flush(context.Background()))
	require.Empty(t, sendErrs)
	l.waitFor(t, n, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))

	assert.Empty(t, l.missing(n))
	commits, violations := check.result()
	assert.Empty(t, violations)
	assert.Positive(t, commits)
	var sum int64
	for _, off := range committed(t, c, group) {
		sum += off
	}
	assert.EqualValues(t, n, sum, "everything committed at the end")
	t.Logf("%d records, %d handler calls (%d duplicates), %d commits checked", n, l.total, l.duplicates(), commits)
}

// TestRestartedClusterKeepsCommittedOffsets: a kfake with a data directory
// is stopped and started again; the group's committed offsets survive, a
// new member resumes exactly where the last one stopped, and the Client
// that stayed open across the restart produces again.
func TestRestartedClusterKeepsCommittedOffsets(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{Persist: true})
	const topic, group = "durable", "g-durable"
	c := newTestClient(t, testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 3}))
	produce(t, c, topic, 0, 100, 10)

	first := newLedger()
	s, err := c.Subscribe(group, []string{topic}, first.handler)
	require.NoError(t, err)
	first.waitFor(t, 100, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	before := committed(t, c, group)

	k.Stop()
	require.NoError(t, k.Restart())

	assert.Equal(t, before, committed(t, c, group), "committed offsets survive the restart")
	produce(t, c, topic, 100, 100, 10) // the same Client, reconnected
	second := newLedger()
	s2, err := c.Subscribe(group, []string{topic}, second.handler)
	require.NoError(t, err)
	second.waitFor(t, 100, 20*time.Second)
	time.Sleep(300 * time.Millisecond) // room for anything handled twice to show
	require.NoError(t, s2.Stop(ctx))
	for v := range 200 {
		want := 0
		if v >= 100 {
			want = 1
		}
		assert.Equal(t, want, second.times(v), "record %d after the restart", v)
	}
}
