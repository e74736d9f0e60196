package coord

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
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
// (value). During the value burst a goroutine calls Get in a loop, so the
// figure is taken with readers on the Value, as in a service; the reads
// are load, not a check (Get is one atomic load of a published config).
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

		var reads atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			var sink int
			for {
				select {
				case <-stop:
					_ = sink
					return
				default:
				}
				for range 1024 {
					sink += v.Get().N
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

// BenchmarkConfigReconvergeAfterOutage measures how soon after a long etcd
// outage every config.Value of a service has applied what etcd holds. Each
// iteration stops etcd for a random 2-10s; two Values watch throughout (their
// watches resume when the connection does) and two more start during the
// outage, degraded, so they wait in their retry backoff (50ms doubling to
// 1s). etcd then restarts with the clients still cut off, a new document is
// written for each of the 4 components, and the clients are let in ("etcd
// answers"): value-max-ms is the worst time, over all iterations, until the
// last of the 4 Values applied its document (target: under 100ms over 20
// outages). raw is a clientv3 Watch on the same documents with clientv3's
// default reconnect, in the same run. Run with -benchtime=20x; it takes
// about two and a half minutes.
func BenchmarkConfigReconvergeAfterOutage(b *testing.B) {
	const components = 4
	e := coordtest.StartEtcd(b)
	direct := coordtest.RawClient(b, e.DirectEndpoint())
	ctx := context.Background()

	c := cliNew(b, cliConfig(e))
	_ = c.Start(ctx)
	src := NewSource(c)
	type seen struct {
		i, n int
	}
	applied := make(chan seen, 64)
	keys := make([]string, components)
	start := func(i int) (stop func()) {
		v := config.NewValue[cfgSchema](fmt.Sprintf("outage%d", i), src, cfgIdentity)
		if err := v.Start(ctx); err != nil {
			b.Fatal(err)
		}
		unsubscribe := v.Subscribe(func(_, n cfgSchema) { applied <- seen{i, n.N} })
		return func() { unsubscribe(); _ = v.Stop(ctx) }
	}
	for i := range components {
		keys[i] = config.Key("dev", "svc", fmt.Sprintf("outage%d", i))
		if i < components/2 {
			defer start(i)()
		}
	}
	rawSeen := make(chan seen, 64)
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	rawWatcher := coordtest.RawClient(b, e.Endpoints()...)
	for i, key := range keys {
		wch := rawWatcher.Watch(wctx, key)
		wg.Go(func() {
			for resp := range wch {
				for _, ev := range resp.Events {
					var n int
					_, _ = fmt.Sscanf(string(ev.Kv.Value), `{"n":%d}`, &n)
					rawSeen <- seen{i, n}
				}
			}
		})
	}

	var valueLat, rawLat []time.Duration
	b.ResetTimer()
	for iter := range b.N {
		b.StopTimer()
		e.Stop()
		var stops []func()
		for i := components / 2; i < components; i++ {
			stops = append(stops, start(i))
		}
		time.Sleep(2*time.Second + rand.N(8*time.Second))
		if err := e.RestartDisconnected(); err != nil {
			b.Fatal(err)
		}
		n := iter + 2
		for _, key := range keys {
			if _, err := direct.Put(ctx, key, fmt.Sprintf(`{"n":%d}`, n)); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := e.Reconnect(); err != nil {
			b.Fatal(err)
		}
		back := time.Now()
		var valueLast, rawLast time.Time
		valueGot, rawGot := map[int]bool{}, map[int]bool{}
		for len(valueGot) < components || len(rawGot) < components {
			select {
			case s := <-applied:
				if s.n == n && !valueGot[s.i] {
					valueGot[s.i], valueLast = true, time.Now()
				}
			case s := <-rawSeen:
				if s.n == n && !rawGot[s.i] {
					rawGot[s.i], rawLast = true, time.Now()
				}
			case <-time.After(30 * time.Second):
				b.Fatalf("outage %d: not applied within 30s (value %d/%d, raw %d/%d)", iter, len(valueGot), components, len(rawGot), components)
			}
		}
		valueLat = append(valueLat, valueLast.Sub(back))
		rawLat = append(rawLat, rawLast.Sub(back))
		b.StopTimer()
		for _, stop := range stops {
			stop()
		}
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(valueLat)
	slices.Sort(rawLat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(valueLat[len(valueLat)/2]), "value-p50-ms")
	b.ReportMetric(ms(valueLat[len(valueLat)-1]), "value-max-ms")
	b.ReportMetric(ms(rawLat[len(rawLat)/2]), "raw-p50-ms")
	b.ReportMetric(ms(rawLat[len(rawLat)-1]), "raw-max-ms")
}

// BenchmarkBootWithEtcdDown measures how long an app with coord.Module and
// four config Values takes to start (ready, degraded, on defaults) when
// etcd refuses connections, and, for contrast, when it is blackholed (the
// probe then waits out probeTimeout, 300ms here). Each iteration builds and
// starts a fresh app; start-ms is the figure.
func BenchmarkBootWithEtcdDown(b *testing.B) {
	for _, mode := range []string{"refused", "blackholed"} {
		b.Run(mode, func(b *testing.B) {
			e := coordtest.StartEtcd(b)
			if mode == "refused" {
				e.Stop()
			} else {
				e.Blackhole()
				defer func() { _ = e.Reconnect() }()
			}
			env := lifecycle.MapEnviron(map[string]string{EnvEndpoints: e.Endpoint(), EnvProbeTimeout: "300ms"})
			var took []time.Duration
			b.ReportAllocs()
			for b.Loop() {
				var values [4]*config.Value[cfgSchema]
				app := fx.New(Module, withHealth, fx.NopLogger,
					fx.Supply(zap.NewNop(), testIdentity, env),
					fx.Provide(
						fx.Annotate(config.ProvideValue[cfgSchema]("boot0"), fx.ResultTags(`name:"boot0"`)),
						fx.Annotate(config.ProvideValue[cfgSchema]("boot1"), fx.ResultTags(`name:"boot1"`)),
						fx.Annotate(config.ProvideValue[cfgSchema]("boot2"), fx.ResultTags(`name:"boot2"`)),
						fx.Annotate(config.ProvideValue[cfgSchema]("boot3"), fx.ResultTags(`name:"boot3"`)),
					),
					fx.Invoke(fx.Annotate(func(a, b, c, d *config.Value[cfgSchema]) { values = [4]*config.Value[cfgSchema]{a, b, c, d} },
						fx.ParamTags(`name:"boot0"`, `name:"boot1"`, `name:"boot2"`, `name:"boot3"`))),
				)
				start := time.Now()
				if err := app.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
				for _, v := range values {
					if !v.Degraded() {
						b.Fatal("a Value is not degraded with etcd down")
					}
				}
				if err := app.Stop(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "start-p50-ms")
			b.ReportMetric(float64(took[len(took)-1])/float64(time.Millisecond), "start-max-ms")
		})
	}
}
