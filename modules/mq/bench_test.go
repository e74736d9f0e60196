package mq_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/mq"
)

// Benchmarks run the module and raw franz-go side by side on one kfake
// cluster, with the same producer settings (the module's defaults: acks=all,
// idempotent, lz4, 5ms linger) and 100-byte values with 16-byte keys:
//
//	go test -run '^$' -bench . -benchmem -count 3 ./modules/mq/

const benchValueSize = 100

var benchValue = func() []byte {
	v := make([]byte, benchValueSize)
	for i := range v {
		v[i] = byte('a' + i%26)
	}
	return v
}()

// cpuTime is the CPU time this process has used (user + system). On a
// shared machine wall-clock throughput swings with other load; CPU time
// per record is the steadier comparison, since client and kfake run in
// this one process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchKey(i int) []byte { return fmt.Appendf(nil, "conversation-%03d", i%1000) }

func benchCluster(b *testing.B) (*devstack.Kafka, mq.Config) {
	b.Helper()
	k := startKafka(b, devstack.KafkaOptions{})
	cfg := mq.Config{}.Defaults()
	cfg.Brokers = k.Addrs()
	return k, cfg
}

func createTopic(b *testing.B, c *mq.Client, name string, partitions int) {
	b.Helper()
	require.NoError(b, c.Admin().CreateTopics(context.Background(), mq.TopicConfig{Name: name, Partitions: partitions}))
}

// rawProducer is franz-go configured like the module's producer.
func rawProducer(b *testing.B, cfg mq.Config, extra ...kgo.Opt) *kgo.Client {
	b.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerLinger(cfg.Producer.Linger.Std()),
		kgo.ProducerBatchMaxBytes(int32(cfg.Producer.MaxRecordBytes + 4<<10)),
		kgo.MaxBufferedRecords(cfg.Producer.MaxBufferedRecords),
		kgo.MaxBufferedBytes(cfg.Producer.MaxBufferedBytes),
		kgo.MetadataMinAge(cfg.MetadataMinAge.Std()),
	}, extra...)...)
	require.NoError(b, err)
	return cl
}

// BenchmarkProduce: asynchronous sends with a callback per record, b.N
// records, waiting for the last acknowledgement.
func BenchmarkProduce(b *testing.B) {
	k, cfg := benchCluster(b)
	c := newTestClient(b, cfg, mq.WithLogger(testLogger(b)))
	_ = k
	for _, impl := range []string{"raw", "module"} {
		b.Run(impl, func(b *testing.B) {
			topic := fmt.Sprintf("bench-produce-%s-%d", impl, b.N)
			createTopic(b, c, topic, 12)
			var raw *kgo.Client
			if impl == "raw" {
				raw = rawProducer(b, cfg)
				defer raw.Close()
			}
			var wg sync.WaitGroup
			var failed atomic.Int64
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			began, cpu := time.Now(), cpuTime()
			for i := range b.N {
				wg.Add(1)
				if raw != nil {
					raw.Produce(ctx, &kgo.Record{Topic: topic, Key: benchKey(i), Value: benchValue}, func(_ *kgo.Record, err error) {
						if err != nil {
							failed.Add(1)
						}
						wg.Done()
					})
					continue
				}
				c.Send(ctx, &mq.Message{Topic: topic, Key: benchKey(i), Value: benchValue}, func(_ *mq.Message, err error) {
					if err != nil {
						failed.Add(1)
					}
					wg.Done()
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/msg")
			require.Zero(b, failed.Load())
			b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "msg/s")
		})
	}
}

// BenchmarkProduceInterleaved measures the same thing as BenchmarkProduce
// in alternating blocks of 100,000 records (raw, module, raw, module, ...),
// so that load from other processes hits both alike; it reports each
// side's CPU time and wall time per record and module/raw throughput.
// b.N is the number of block pairs.
func BenchmarkProduceInterleaved(b *testing.B) {
	_, cfg := benchCluster(b)
	c := newTestClient(b, cfg, mq.WithLogger(testLogger(b)))
	raw := rawProducer(b, cfg)
	defer raw.Close()
	topic := "bench-interleaved-" + fmt.Sprint(b.N)
	createTopic(b, c, topic, 12)
	const block = 100_000
	var rawCPU, modCPU, rawWall, modWall time.Duration
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, module := range []bool{false, true} {
			var wg sync.WaitGroup
			wg.Add(block)
			began, cpu := time.Now(), cpuTime()
			for i := range block {
				if module {
					c.Send(ctx, &mq.Message{Topic: topic, Key: benchKey(i), Value: benchValue}, func(_ *mq.Message, err error) {
						if err != nil {
							b.Error(err)
						}
						wg.Done()
					})
					continue
				}
				raw.Produce(ctx, &kgo.Record{Topic: topic, Key: benchKey(i), Value: benchValue}, func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
					wg.Done()
				})
			}
			wg.Wait()
			wall, used := time.Since(began), cpuTime()-cpu
			if module {
				modCPU, modWall = modCPU+used, modWall+wall
			} else {
				rawCPU, rawWall = rawCPU+used, rawWall+wall
			}
		}
	}
	b.StopTimer()
	n := float64(b.N * block)
	b.ReportMetric(float64(rawCPU.Nanoseconds())/n, "raw-cpu-ns/msg")
	b.ReportMetric(float64(modCPU.Nanoseconds())/n, "module-cpu-ns/msg")
	b.ReportMetric(n/rawWall.Seconds(), "raw-msg/s")
	b.ReportMetric(n/modWall.Seconds(), "module-msg/s")
	b.ReportMetric(100*rawWall.Seconds()/modWall.Seconds(), "module/raw-%")
}

// fill writes n records to a new topic with a raw producer.
func fill(b *testing.B, cfg mq.Config, c *mq.Client, topic string, n int) {
	b.Helper()
	createTopic(b, c, topic, 12)
	raw := rawProducer(b, cfg)
	defer raw.Close()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		raw.Produce(context.Background(), &kgo.Record{Topic: topic, Key: benchKey(i), Value: benchValue}, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Error(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
}

// BenchmarkConsume: a group member handles b.N records that are already in
// the topic (12 partitions) and commits them. raw is franz-go's own
// at-least-once loop: poll, mark every record, autocommit marks.
func BenchmarkConsume(b *testing.B) {
	_, cfg := benchCluster(b)
	c := newTestClient(b, cfg, mq.WithLogger(testLogger(b)))
	for _, impl := range []string{"raw", "module"} {
		b.Run(impl, func(b *testing.B) {
			topic := fmt.Sprintf("bench-consume-%s-%d", impl, b.N)
			fill(b, cfg, c, topic, b.N)
			group := "g-" + topic
			// The clock starts at the first record, so the group join
			// (a few hundred ms, and noisy) is not part of the figure.
			var (
				handled atomic.Int64
				began   time.Time
				cpu     time.Duration
			)
			first := make(chan struct{})
			done := make(chan struct{})
			count := func() {
				n := handled.Add(1)
				if n == 1 {
					began, cpu = time.Now(), cpuTime()
					close(first)
				}
				if n == int64(b.N) {
					close(done)
				}
			}
			b.ReportAllocs()
			var stop func()
			if impl == "raw" {
				cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
					kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AutoCommitMarks(),
					kgo.AutoCommitInterval(cfg.Consumer.CommitInterval.Std()), kgo.FetchMaxWait(cfg.Consumer.FetchMaxWait.Std()),
					kgo.MetadataMinAge(cfg.MetadataMinAge.Std()))
				require.NoError(b, err)
				ctx, cancel := context.WithCancel(context.Background())
				polled := make(chan struct{})
				go func() {
					defer close(polled)
					for {
						fs := cl.PollRecords(ctx, cfg.Consumer.MaxPollRecords)
						if ctx.Err() != nil {
							return
						}
						fs.EachRecord(func(r *kgo.Record) {
							count()
							cl.MarkCommitRecords(r)
						})
					}
				}()
				stop = func() { cancel(); <-polled; cl.Close() }
			} else {
				s, err := c.Subscribe(group, []string{topic}, func(context.Context, *mq.Message) error { count(); return nil })
				require.NoError(b, err)
				stop = func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					require.NoError(b, s.Stop(ctx))
				}
			}
			<-first
			b.ResetTimer()
			<-done
			b.StopTimer()
			took, used := time.Since(began), cpuTime()-cpu
			stop()
			b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/msg")
			b.ReportMetric(float64(b.N)/took.Seconds(), "msg/s")
		})
	}
}

// BenchmarkEndToEnd: one record at a time (the next is sent once the last
// was handled), so the figure is latency, not queueing: send to handler.
func BenchmarkEndToEnd(b *testing.B) {
	_, cfg := benchCluster(b)
	cfg.Producer.Linger = 0 // a lone record should not wait for company
	c := newTestClient(b, cfg, mq.WithLogger(testLogger(b)))
	for _, impl := range []string{"raw", "module"} {
		b.Run(impl, func(b *testing.B) {
			topic := fmt.Sprintf("bench-e2e-%s-%d", impl, b.N)
			createTopic(b, c, topic, 12)
			group := "g-" + topic
			lat := make([]time.Duration, 0, b.N)
			arrived := make(chan time.Duration, 1)
			onRecord := func(v []byte) {
				sent := time.Unix(0, int64(binary.BigEndian.Uint64(v)))
				arrived <- time.Since(sent)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var send func(i int)
			if impl == "raw" {
				prod := rawProducer(b, cfg, kgo.ProducerLinger(0))
				defer prod.Close()
				cons, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
					kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.AutoCommitMarks(),
					kgo.FetchMaxWait(cfg.Consumer.FetchMaxWait.Std()))
				require.NoError(b, err)
				defer cons.Close()
				go func() {
					for {
						fs := cons.PollRecords(ctx, 500)
						if ctx.Err() != nil {
							return
						}
						fs.EachRecord(func(r *kgo.Record) { onRecord(r.Value); cons.MarkCommitRecords(r) })
					}
				}()
				send = func(i int) {
					prod.Produce(ctx, &kgo.Record{Topic: topic, Key: benchKey(i), Value: binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))}, nil)
				}
			} else {
				s, err := c.Subscribe(group, []string{topic}, func(_ context.Context, m *mq.Message) error { onRecord(m.Value); return nil })
				require.NoError(b, err)
				defer func() {
					stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					_ = s.Stop(stop)
				}()
				send = func(i int) {
					c.Send(ctx, &mq.Message{Topic: topic, Key: benchKey(i), Value: binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))}, nil)
				}
			}
			// Warm up until the member has its partitions.
			for i := 0; ; i++ {
				send(i)
				select {
				case <-arrived:
				case <-time.After(200 * time.Millisecond):
					continue
				}
				break
			}
			drain(arrived)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				send(i)
				lat = append(lat, <-arrived)
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

func drain(ch chan time.Duration) {
	for {
		select {
		case <-ch:
		case <-time.After(300 * time.Millisecond):
			return
		}
	}
}

// BenchmarkRate100k sends at a fixed 100,000 records/s for two seconds
// (the design target) while a consumer group handles them, and reports the
// rates achieved, the send-to-ack latency and the send-to-handler latency
// under that load. Module only: the question is whether the module keeps
// up. Run it with -benchtime 1x (each iteration is a 2 s window).
func BenchmarkRate100k(b *testing.B) {
	_, cfg := benchCluster(b)
	c := newTestClient(b, cfg, mq.WithLogger(testLogger(b)))
	const rate, window = 100_000, 2 * time.Second
	total := int(rate * window.Seconds())
	ctx := context.Background()
	for i := range b.N {
		topic := fmt.Sprintf("bench-rate-%d-%d", b.N, i)
		createTopic(b, c, topic, 12)
		var (
			mu       sync.Mutex
			acks     = make([]time.Duration, 0, total)
			e2e      = make([]time.Duration, 0, total)
			handled  atomic.Int64
			allAcked sync.WaitGroup
		)
		done := make(chan struct{})
		s, err := c.Subscribe("g-"+topic, []string{topic}, func(_ context.Context, m *mq.Message) error {
			d := time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(m.Value))))
			mu.Lock()
			e2e = append(e2e, d)
			mu.Unlock()
			if handled.Add(1) == int64(total) {
				close(done)
			}
			return nil
		})
		require.NoError(b, err)
		// Wait for the member to own its partitions.
		for {
			if lag, err := c.Admin().Lag(ctx, "g-"+topic); err == nil && lag.State == "Stable" {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		began := time.Now()
		tick := time.NewTicker(time.Millisecond)
		sent := 0
		for sent < total {
			<-tick.C
			due := min(int(time.Since(began).Seconds()*rate), total)
			for ; sent < due; sent++ {
				allAcked.Add(1)
				at := time.Now()
				v := make([]byte, benchValueSize)
				binary.BigEndian.PutUint64(v, uint64(at.UnixNano()))
				c.Send(ctx, &mq.Message{Topic: topic, Key: benchKey(sent), Value: v}, func(_ *mq.Message, err error) {
					if err != nil {
						b.Error(err)
					}
					mu.Lock()
					acks = append(acks, time.Since(at))
					mu.Unlock()
					allAcked.Done()
				})
			}
		}
		tick.Stop()
		allAcked.Wait()
		produced := time.Since(began)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			b.Fatalf("handled %d of %d", handled.Load(), total)
		}
		consumed := time.Since(began)
		stop, cancel := context.WithTimeout(ctx, 10*time.Second)
		require.NoError(b, s.Stop(stop))
		cancel()
		slices.Sort(acks)
		slices.Sort(e2e)
		b.ReportMetric(float64(total)/produced.Seconds(), "sent/s")
		b.ReportMetric(float64(total)/consumed.Seconds(), "handled/s")
		b.ReportMetric(float64(acks[len(acks)/2].Microseconds())/1000, "ack-p50-ms")
		b.ReportMetric(float64(acks[len(acks)*99/100].Microseconds())/1000, "ack-p99-ms")
		b.ReportMetric(float64(e2e[len(e2e)/2].Microseconds())/1000, "e2e-p50-ms")
		b.ReportMetric(float64(e2e[len(e2e)*99/100].Microseconds())/1000, "e2e-p99-ms")
	}
}
