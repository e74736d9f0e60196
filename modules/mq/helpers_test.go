package mq_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/mq"
)

// startKafka starts a devstack cluster that accepts short group sessions,
// so that a dead member expires in a couple of seconds.
func startKafka(t testing.TB, opts devstack.KafkaOptions) *devstack.Kafka {
	t.Helper()
	if opts.GroupMinSessionTimeout == 0 {
		opts.GroupMinSessionTimeout = 200 * time.Millisecond
	}
	k, err := devstack.StartKafka(opts)
	require.NoError(t, err)
	t.Cleanup(k.Close)
	return k
}

// testConfig is the default config with timings scaled down for tests.
func testConfig(brokers []string, topics ...mq.TopicConfig) mq.Config {
	cfg := mq.Config{}.Defaults()
	cfg.Brokers = brokers
	cfg.ConnectTimeout = config.Duration(5 * time.Second)
	cfg.MetadataMinAge = config.Duration(100 * time.Millisecond)
	cfg.Topics = topics
	cfg.Consumer.SessionTimeout = config.Duration(2 * time.Second)
	cfg.Consumer.HeartbeatInterval = config.Duration(200 * time.Millisecond)
	cfg.Consumer.RebalanceTimeout = config.Duration(6 * time.Second)
	cfg.Consumer.CommitInterval = config.Duration(200 * time.Millisecond)
	cfg.Consumer.FetchMaxWait = config.Duration(100 * time.Millisecond)
	cfg.Consumer.RetryBackoff = config.Duration(5 * time.Millisecond)
	cfg.Consumer.RetryBackoffMax = config.Duration(20 * time.Millisecond)
	return cfg
}

func newTestClient(t testing.TB, cfg mq.Config, opts ...mq.Option) *mq.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if len(opts) == 0 {
		opts = append(opts, mq.WithLogger(testLogger(t)))
	}
	c, err := mq.New(ctx, cfg, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// testLogger shows warnings and errors in the test output.
func testLogger(t testing.TB) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
}

// produce sends n records numbered from first, values "<i>", keys cycling
// over keys distinct keys, and waits for all of them.
func produce(t testing.TB, c *mq.Client, topic string, first, n, keys int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i := first; i < first+n; i++ {
		wg.Add(1)
		m := &mq.Message{Topic: topic, Key: []byte("k" + strconv.Itoa(i%keys)), Value: []byte(strconv.Itoa(i))}
		c.Send(ctx, m, func(_ *mq.Message, err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d sends failed; first: %v", len(errs), n, errs[0])
	}
}

// ledger records every handled record, to count losses and duplicates
// and to check commits against what was handled.
type ledger struct {
	mu       sync.Mutex
	count    map[int]int           // value -> times handled
	handled  map[tp]map[int64]bool // offsets handled per partition
	prefix   map[tp]int64          // every offset below prefix is handled
	total    int
	notify   chan struct{}
	onHandle func(v int)
}

type tp struct {
	topic     string
	partition int32
}

func newLedger() *ledger {
	return &ledger{count: map[int]int{}, handled: map[tp]map[int64]bool{}, prefix: map[tp]int64{}, notify: make(chan struct{}, 1)}
}

func (l *ledger) record(m *mq.Message) {
	v, err := strconv.Atoi(string(m.Value))
	if err != nil {
		panic(fmt.Sprintf("value %q", m.Value))
	}
	l.mu.Lock()
	l.count[v]++
	l.total++
	k := tp{m.Topic, m.Partition}
	if l.handled[k] == nil {
		l.handled[k] = map[int64]bool{}
	}
	l.handled[k][m.Offset] = true
	for l.handled[k][l.prefix[k]] {
		l.prefix[k]++
	}
	hook := l.onHandle
	l.mu.Unlock()
	if hook != nil {
		hook(v)
	}
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

func (l *ledger) handler(ctx context.Context, m *mq.Message) error {
	l.record(m)
	return nil
}

// times is how often value v was handled.
func (l *ledger) times(v int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count[v]
}

// distinct is how many different values were handled.
func (l *ledger) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.count)
}

// handledPrefix is the offset below which every record of the partition
// was handled.
func (l *ledger) handledPrefix(topic string, partition int32) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.prefix[tp{topic, partition}]
}

// duplicates is how many handler calls repeated a value.
func (l *ledger) duplicates() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := 0
	for _, n := range l.count {
		d += n - 1
	}
	return d
}

// missing lists the values of [0,n) never handled.
func (l *ledger) missing(n int) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for i := range n {
		if l.count[i] == 0 {
			out = append(out, i)
		}
	}
	return out
}

// waitFor waits until at least n distinct values were handled.
func (l *ledger) waitFor(t testing.TB, n int, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for l.distinct() < n {
		select {
		case <-l.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("handled %d distinct records of %d within %s", l.distinct(), n, within)
		}
	}
}

// committed reads group's committed offsets. The read is retried until
// it succeeds or 10 s pass: after a test removed a broker, the admin
// request can meet a connection the removal cut (EOF).
func committed(t testing.TB, c *mq.Client, group string) map[tp]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := c.Admin().Raw().FetchOffsets(ctx, group)
	for err != nil && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		offs, err = c.Admin().Raw().FetchOffsets(ctx, group)
	}
	require.NoError(t, err)
	out := map[tp]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		out[tp{o.Topic, o.Partition}] = o.At
	})
	return out
}

// readAll reads every record of topic from the start to the current end,
// outside any group.
func readAll(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	require.NoError(t, err)
	want := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	var out []*kgo.Record
	for int64(len(out)) < want {
		fs := cl.PollFetches(ctx)
		require.NoError(t, fs.Err0())
		out = append(out, fs.Records()...)
	}
	return out
}
