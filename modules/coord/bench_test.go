package coord

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// BenchmarkConfigPropagation measures put → seen: for raw, a clientv3 Watch
// event received; for value, a typed, validated config.Value applied and its
// subscriber called. Both run in the same process against the same embedded
// etcd, one after the other.
func BenchmarkConfigPropagation(b *testing.B) {
	e := coordtest.StartEtcd(b)
	writer := coordtest.RawClient(b, e.Endpoints()...)
	ctx := context.Background()

	b.Run("raw", func(b *testing.B) {
		key := "/config/dev/bench/raw"
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wch := coordtest.RawClient(b, e.Endpoints()...).Watch(wctx, key)
		lat := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			start := time.Now()
			if _, err := writer.Put(ctx, key, `{"n":`+strconv.Itoa(i+1)+`}`); err != nil {
				b.Fatal(err)
			}
			<-wch
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		coordtest.ReportLatency(b, lat)
	})

	b.Run("value", func(b *testing.B) {
		c := cliNew(b, cliConfig(e))
		v := config.NewValue[cfgSchema]("bench", NewSource(c), cfgIdentity)
		if err := v.Start(ctx); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = v.Stop(ctx) }()
		applied := make(chan int, 1)
		defer v.Subscribe(func(_, n cfgSchema) { applied <- n.N })()
		key := config.Key("dev", "svc", "bench")
		lat := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			start := time.Now()
			if _, err := writer.Put(ctx, key, `{"n":`+strconv.Itoa(i+1)+`}`); err != nil {
				b.Fatal(err)
			}
			for n := range applied {
				if n == i+1 {
					break
				}
			}
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		coordtest.ReportLatency(b, lat)
	})
}

// BenchmarkConfigBurst writes 500 documents back to back and reports how long
// after the last put returned the final one was seen (raw) or applied
// (value). During the value burst a reader calls Get in a loop and counts
// reads that see an empty, zero or torn config (fail-reads, target 0): each
// document sets m = 2n, so a reader seeing m != 2n saw half of an update.
func BenchmarkConfigBurst(b *testing.B) {
	const burst = 500
	e := coordtest.StartEtcd(b)
	writer := coordtest.RawClient(b, e.Endpoints()...)
	ctx := context.Background()
	seq := 0

	b.Run("raw", func(b *testing.B) {
		key := "/config/dev/bench/burst-raw"
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wch := coordtest.RawClient(b, e.Endpoints()...).Watch(wctx, key)
		// Consumed while the burst runs, as config.Value's watch is, so
		// that both measure the tail and not a backlog.
		var final atomic.Value
		final.Store("")
		seen := make(chan time.Time, 1)
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		wg.Go(func() {
			for resp := range wch {
				for _, ev := range resp.Events {
					if string(ev.Kv.Value) == final.Load().(string) {
						seen <- time.Now()
					}
				}
			}
		})
		var tail []time.Duration
		b.ReportAllocs()
		for range b.N {
			seq++
			final.Store(fmt.Sprintf(`{"n":%d}`, seq*burst))
			for j := 1; j <= burst; j++ {
				if _, err := writer.Put(ctx, key, fmt.Sprintf(`{"n":%d}`, (seq-1)*burst+j)); err != nil {
					b.Fatal(err)
				}
			}
			putDone := time.Now()
			at := <-seen
			tail = append(tail, max(at.Sub(putDone), 0))
		}
		b.StopTimer()
		coordtest.ReportLatency(b, tail)
	})

	b.Run("value", func(b *testing.B) {
		c := cliNew(b, cliConfig(e))
		v := config.NewValue[cfgSchema]("burst", NewSource(c), cfgIdentity)
		if err := v.Start(ctx); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = v.Stop(ctx) }()
		var final atomic.Int64
		done := make(chan time.Time, 1)
		defer v.Subscribe(func(_, n cfgSchema) {
			if int64(n.N) == final.Load() {
				done <- time.Now()
			}
		})()
		key := config.Key("dev", "svc", "burst")

		var reads, fails atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for range 1024 {
					got := v.Get()
					if got.N <= 0 || got.Level == "" || got.M != 2*got.N {
						fails.Add(1)
					}
				}
				reads.Add(1024)
			}
		})
		var tail []time.Duration
		b.ReportAllocs()
		for range b.N {
			seq++
			final.Store(int64(seq * burst))
			for j := 1; j <= burst; j++ {
				n := (seq-1)*burst + j
				if _, err := writer.Put(ctx, key, fmt.Sprintf(`{"n":%d,"m":%d}`, n, 2*n)); err != nil {
					b.Fatal(err)
				}
			}
			putDone := time.Now()
			at := <-done
			// Negative when the value was applied before the last Put's
			// response reached the writer; that counts as 0.
			tail = append(tail, max(at.Sub(putDone), 0))
		}
		b.StopTimer()
		close(stop)
		wg.Wait()
		coordtest.ReportLatency(b, tail)
		b.ReportMetric(float64(reads.Load()), "reads")
		b.ReportMetric(float64(fails.Load()), "fail-reads")
	})
}

// BenchmarkConfigAfterRestart stops and restarts etcd each iteration, then
// writes one update as soon as etcd answers (through a fresh client, which
// has no reconnect backoff) and reports how long after that moment it was
// seen by a raw clientv3 Watch with default gRPC backoff and applied by a
// config.Value on coord's client. Both watch the same etcd in the same run.
// Run with -benchtime=Nx: each iteration restarts etcd.
func BenchmarkConfigAfterRestart(b *testing.B) {
	e := coordtest.StartEtcd(b)
	ctx := context.Background()
	key := config.Key("dev", "svc", "restart")

	rawWatcher := coordtest.RawClient(b, e.Endpoints()...)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rawSeen := make(chan int, 16)
	wch := rawWatcher.Watch(wctx, key)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		for resp := range wch {
			for _, ev := range resp.Events {
				var n int
				_, _ = fmt.Sscanf(string(ev.Kv.Value), `{"n":%d}`, &n)
				rawSeen <- n
			}
		}
	})

	c := cliNew(b, cliConfig(e))
	_ = c.Start(ctx)
	v := config.NewValue[cfgSchema]("restart", NewSource(c), cfgIdentity)
	if err := v.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = v.Stop(ctx) }()
	applied := make(chan int, 16)
	defer v.Subscribe(func(_, n cfgSchema) { applied <- n.N })()

	var rawLat, valueLat []time.Duration
	for i := range b.N {
		b.StopTimer()
		e.Stop()
		if err := e.Restart(); err != nil {
			b.Fatal(err)
		}
		writer := coordtest.RawClient(b, e.Endpoints()...) // answers only once etcd does
		back := time.Now()
		n := i + 1
		b.StartTimer()
		if _, err := writer.Put(ctx, key, fmt.Sprintf(`{"n":%d}`, n)); err != nil {
			b.Fatal(err)
		}
		var rawAt, valueAt time.Time
		for rawAt.IsZero() || valueAt.IsZero() {
			select {
			case got := <-rawSeen:
				if got == n {
					rawAt = time.Now()
				}
			case got := <-applied:
				if got == n {
					valueAt = time.Now()
				}
			}
		}
		rawLat = append(rawLat, rawAt.Sub(back))
		valueLat = append(valueLat, valueAt.Sub(back))
		_ = writer.Close()
	}
	b.StopTimer()
	slices.Sort(rawLat)
	slices.Sort(valueLat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(rawLat[len(rawLat)/2]), "raw-p50-ms")
	b.ReportMetric(ms(rawLat[len(rawLat)-1]), "raw-max-ms")
	b.ReportMetric(ms(valueLat[len(valueLat)/2]), "value-p50-ms")
	b.ReportMetric(ms(valueLat[len(valueLat)-1]), "value-max-ms")
}
