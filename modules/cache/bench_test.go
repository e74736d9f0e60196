package cache

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
)

// The benchmarks run side by side against the same Redis (IMINFRA_TEST_REDIS
// or 127.0.0.1:6379): this module, raw rueidis with the same options, and
// go-redis/v9 with its defaults. Each op is one GET (or SET) of a 64-byte
// value on one of 64 keys; "goroutines" is the exact number of goroutines
// issuing calls. ops/s is the figure to compare.
//
//	go test -run '^$' -bench . -benchmem -count 3 ./modules/cache/

const benchKeys = 64

var benchValue = strings.Repeat("v", 64)

type benchClients struct {
	module  *Client
	raw     rueidis.Client
	goredis *redis.Client
	prefix  string
	keys    []string // full keys, for raw rueidis and go-redis
}

func newBenchClients(b *testing.B) *benchClients {
	b.Helper()
	addr, _ := testRedis(b)
	cfg := testConfig(b, addr)
	m, err := New(context.Background(), cfg)
	require.NoError(b, err)
	raw, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true,
		CacheSizeEachConn: cfg.ClientCache.SizePerConn, DisableCache: !m.sess.Load().tracking})
	require.NoError(b, err)
	gr := redis.NewClient(&redis.Options{Addr: addr})
	bc := &benchClients{module: m, raw: raw, goredis: gr, prefix: cfg.KeyPrefix}
	for i := range benchKeys {
		bc.keys = append(bc.keys, cfg.KeyPrefix+"k"+strconv.Itoa(i))
		require.NoError(b, m.Set(context.Background(), "k"+strconv.Itoa(i), benchValue, 10*time.Minute))
	}
	b.Cleanup(func() {
		deleteKeys(b, raw, cfg.KeyPrefix)
		_ = gr.Close()
		raw.Close()
		_ = m.Close()
	})
	return bc
}

// userKeys are the module's keys (without the prefix), precomputed so the
// benchmark loop does not allocate them.
func userKeys() []string {
	out := make([]string, benchKeys)
	for i := range out {
		out[i] = "k" + strconv.Itoa(i)
	}
	return out
}

// runConcurrent spreads b.N calls of op over exactly n goroutines and
// reports ops/s.
func runConcurrent(b *testing.B, n int, op func(i int) error) {
	b.ReportAllocs()
	var (
		next   atomic.Int64
		failed atomic.Pointer[error]
		wg     sync.WaitGroup
	)
	b.ResetTimer()
	for range n {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := op(int(i)); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if e := failed.Load(); e != nil {
		b.Fatal(*e)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func benchGoroutines() []int { return []int{1, 16, 64, 256} }

func BenchmarkGet(b *testing.B) {
	bc := newBenchClients(b)
	ctx := context.Background()
	uk := userKeys()
	clients := []struct {
		name string
		op   func(i int) error
	}{
		{"module", func(i int) error { _, err := bc.module.Get(ctx, uk[i%benchKeys]); return err }},
		{"rueidis", func(i int) error {
			return bc.raw.Do(ctx, bc.raw.B().Get().Key(bc.keys[i%benchKeys]).Build()).Error()
		}},
		{"go-redis", func(i int) error { return bc.goredis.Get(ctx, bc.keys[i%benchKeys]).Err() }},
	}
	for _, n := range benchGoroutines() {
		for _, c := range clients {
			b.Run(fmt.Sprintf("goroutines=%d/%s", n, c.name), func(b *testing.B) { runConcurrent(b, n, c.op) })
		}
	}
}

func BenchmarkSet(b *testing.B) {
	bc := newBenchClients(b)
	ctx := context.Background()
	uk := userKeys()
	clients := []struct {
		name string
		op   func(i int) error
	}{
		{"module", func(i int) error { return bc.module.Set(ctx, uk[i%benchKeys], benchValue, 10*time.Minute) }},
		{"rueidis", func(i int) error {
			return bc.raw.Do(ctx, bc.raw.B().Set().Key(bc.keys[i%benchKeys]).Value(benchValue).PxMilliseconds(600000).Build()).Error()
		}},
		{"go-redis", func(i int) error { return bc.goredis.Set(ctx, bc.keys[i%benchKeys], benchValue, 10*time.Minute).Err() }},
	}
	for _, n := range benchGoroutines() {
		for _, c := range clients {
			b.Run(fmt.Sprintf("goroutines=%d/%s", n, c.name), func(b *testing.B) { runConcurrent(b, n, c.op) })
		}
	}
}

// A client-side cached GET that hits: no round trip. Target: under 1µs.
func BenchmarkGetCachedHit(b *testing.B) {
	bc := newBenchClients(b)
	if !bc.module.sess.Load().tracking {
		b.Skip("the server has no CLIENT TRACKING")
	}
	ctx := context.Background()
	uk := userKeys()
	for i := range benchKeys { // warm both caches
		_, err := bc.module.GetCached(ctx, uk[i], time.Minute)
		require.NoError(b, err)
		require.NoError(b, bc.raw.DoCache(ctx, bc.raw.B().Get().Key(bc.keys[i]).Cache(), time.Minute).Error())
	}
	b.Run("module", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := bc.module.GetCached(ctx, uk[i%benchKeys], time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rueidis", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := bc.raw.DoCache(ctx, bc.raw.B().Get().Key(bc.keys[i%benchKeys]).Cache(), time.Minute).Error(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPaired runs the module, raw rueidis and go-redis in alternating
// slices of 100ms (20 rounds, the order rotated every round), so all three
// see the same background load on a shared machine. It reports each one's
// throughput, the median over rounds of the paired ratios (overhead-% =
// rueidis ÷ module − 1; x-go-redis = module ÷ go-redis), and the process
// CPU time (user+sys: this client's own cost, whatever else runs on the
// machine) per call. Run it once: -benchtime 1x.
func BenchmarkPaired(b *testing.B) {
	bc := newBenchClients(b)
	ctx := context.Background()
	uk := userKeys()
	names := [3]string{"module", "rueidis", "go-redis"}
	ops := map[string][3]func(i int) error{
		"get": {
			func(i int) error { _, err := bc.module.Get(ctx, uk[i%benchKeys]); return err },
			func(i int) error { return bc.raw.Do(ctx, bc.raw.B().Get().Key(bc.keys[i%benchKeys]).Build()).Error() },
			func(i int) error { return bc.goredis.Get(ctx, bc.keys[i%benchKeys]).Err() },
		},
		"set": {
			func(i int) error { return bc.module.Set(ctx, uk[i%benchKeys], benchValue, 10*time.Minute) },
			func(i int) error {
				return bc.raw.Do(ctx, bc.raw.B().Set().Key(bc.keys[i%benchKeys]).Value(benchValue).PxMilliseconds(600000).Build()).Error()
			},
			func(i int) error { return bc.goredis.Set(ctx, bc.keys[i%benchKeys], benchValue, 10*time.Minute).Err() },
		},
	}
	for _, name := range []string{"get", "set"} {
		for _, n := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", name, n), func(b *testing.B) {
				const rounds, slice = 20, 100 * time.Millisecond
				var (
					rate      [3]float64
					calls     [3]int64
					cpu       [3]time.Duration
					overheads []float64
					vsGoRedis []float64
				)
				for range b.N {
					for r := range rounds {
						var round [3]float64
						for k := range 3 {
							which := (k + r) % 3
							before := processCPU()
							done, err := runFor(n, slice, ops[name][which])
							require.NoError(b, err)
							cpu[which] += processCPU() - before
							calls[which] += done
							round[which] = float64(done) / slice.Seconds()
							rate[which] += round[which]
						}
						overheads = append(overheads, (round[1]/round[0]-1)*100)
						vsGoRedis = append(vsGoRedis, round[0]/round[2])
					}
				}
				slices.Sort(overheads)
				slices.Sort(vsGoRedis)
				runs := float64(rounds * b.N)
				for i, who := range names {
					b.ReportMetric(rate[i]/runs, who+"-ops/s")
					b.ReportMetric(float64(cpu[i].Nanoseconds())/float64(calls[i]), who+"-cpu-ns/op")
				}
				b.ReportMetric(overheads[len(overheads)/2], "overhead-%")
				b.ReportMetric(vsGoRedis[len(vsGoRedis)/2], "x-go-redis")
			})
		}
	}
}

// processCPU is the user+sys CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runFor runs op on n goroutines for d and returns how many calls ended.
func runFor(n int, d time.Duration, op func(i int) error) (int64, error) {
	var (
		count  atomic.Int64
		failed atomic.Pointer[error]
		stop   atomic.Bool
		wg     sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			for !stop.Load() {
				if err := op(int(count.Add(1))); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	if e := failed.Load(); e != nil {
		return 0, *e
	}
	return count.Load(), nil
}
