package mq_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/mq"
)

// The kill test runs its first consumer in a child process (this test
// binary again) so that it can be killed with SIGKILL: no deferred
// function, no final commit, no LeaveGroup, exactly like a crash.
const (
	envChildBrokers = "MQ_TEST_CHILD_BROKERS"
	envChildTopic   = "MQ_TEST_CHILD_TOPIC"
	envChildGroup   = "MQ_TEST_CHILD_GROUP"
)

// runChildConsumer runs the child's consumer when this process is one and
// reports whether it was (it never returns then: it is killed).
func runChildConsumer() bool {
	brokers := os.Getenv(envChildBrokers)
	if brokers == "" {
		return false
	}
	cfg := testConfig(strings.Split(brokers, ","))
	c, err := mq.New(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	_, err = c.Subscribe(os.Getenv(envChildGroup), []string{os.Getenv(envChildTopic)}, func(_ context.Context, m *mq.Message) error {
		time.Sleep(3 * time.Millisecond)
		mu.Lock()
		fmt.Fprintf(os.Stdout, "H %s %d %d\n", m.Value, m.Partition, m.Offset)
		mu.Unlock()
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	select {}
}

// TestAtLeastOnceAfterKill: a consumer is killed mid-batch; after a new
// member takes over, every record has been handled at least once, nothing
// committed was unhandled, and the duplicates are exactly the records
// handled after the last commit.
func TestAtLeastOnceAfterKill(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	const topic, group, n = "killed", "g-killed", 600
	c := newTestClient(t, testConfig(k.Addrs(), mq.TopicConfig{Name: topic, Partitions: 3}))
	produce(t, c, topic, 0, n, 30)

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(),
		envChildBrokers+"="+strings.Join(k.Addrs(), ","), envChildTopic+"="+topic, envChildGroup+"="+group)
	out, err := child.StdoutPipe()
	require.NoError(t, err)
	child.Stderr = os.Stderr
	require.NoError(t, child.Start())
	killed := false
	defer func() {
		if !killed {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	}()

	type rec struct {
		partition int32
		offset    int64
	}
	childHandled := map[int]rec{}
	sc := bufio.NewScanner(out)
	for len(childHandled) < 250 && sc.Scan() {
		var v int
		var r rec
		_, err := fmt.Sscanf(sc.Text(), "H %d %d %d", &v, &r.partition, &r.offset)
		require.NoError(t, err, sc.Text())
		childHandled[v] = r
	}
	require.Len(t, childHandled, 250, "child stopped early")
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	killed = true
	// Lines already written before the kill are records it handled too.
	for sc.Scan() {
		var v int
		var r rec
		if _, err := fmt.Sscanf(sc.Text(), "H %d %d %d", &v, &r.partition, &r.offset); err == nil {
			childHandled[v] = r
		}
	}
	_ = child.Wait()

	// Nothing committed that the child had not handled.
	prefix := map[int32]int64{}
	byPartition := map[int32]map[int64]bool{}
	for _, r := range childHandled {
		if byPartition[r.partition] == nil {
			byPartition[r.partition] = map[int64]bool{}
		}
		byPartition[r.partition][r.offset] = true
	}
	for p, offs := range byPartition {
		for offs[prefix[p]] {
			prefix[p]++
		}
	}
	atKill := committed(t, c, group)
	for p := range int32(3) {
		assert.LessOrEqual(t, atKill[tp{topic, p}], prefix[p], "partition %d: committed beyond what was handled", p)
	}

	l := newLedger()
	s, err := c.Subscribe(group, []string{topic}, l.handler)
	require.NoError(t, err)
	deadline := time.Now().Add(30 * time.Second)
	for {
		covered := 0
		for i := range n {
			if _, ok := childHandled[i]; ok || l.times(i) > 0 {
				covered++
			}
		}
		if covered == n {
			break
		}
		require.True(t, time.Now().Before(deadline), "only %d of %d records handled after the restart", covered, n)
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))

	duplicates := 0
	for v := range childHandled {
		if l.times(v) > 0 {
			duplicates++
		}
	}
	uncommitted := 0
	for p := range int32(3) {
		uncommitted += int(prefix[p] - atKill[tp{topic, p}])
	}
	t.Logf("killed after %d records handled; committed at kill: %v; handled again after restart (duplicates): %d",
		len(childHandled), atKill, duplicates)
	assert.Equal(t, uncommitted, duplicates, "duplicates are exactly the records handled after the last commit")
	assert.Zero(t, l.duplicates(), "the new member handles each record once")
}
