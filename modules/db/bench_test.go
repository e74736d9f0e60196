package db

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
	"gorm.io/gorm/schema"
)

// Benchmarks compare the module with raw gorm side by side in one run: the
// same driver, DSN, pool settings and table; the difference is the
// module's callbacks (metrics through an SDK MeterProvider, statement
// logging on a JSON zap logger at info) and its WithContext.
//
//	go test -run '^$' -bench . -benchmem -count 5 ./modules/db/

const benchRows = 1000

// benchPair opens the module and a raw gorm on tg, with a table of
// benchRows items, dropped at the end.
func benchPair(b *testing.B, tg target, maxOpen int) (mod *DB, raw *gorm.DB) {
	b.Helper()
	need(b, tg)
	cfg := tg.config(b)
	cfg.MaxOpenConns, cfg.MaxIdleConns = maxOpen, maxOpen
	prefix := randomPrefix()
	naming := schema.NamingStrategy{TablePrefix: prefix}
	_, mp := newMeter()
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
	mod, err := New(context.Background(), cfg, WithLogger(log), WithMeterProvider(mp),
		WithGormConfig(func(c *gorm.Config) { c.NamingStrategy = naming }))
	require.NoError(b, err)

	conn, err := cfg.connector()
	require.NoError(b, err)
	sqlDB, err := conn.open(nil)
	require.NoError(b, err)
	applyPool(sqlDB, cfg)
	raw, err = gorm.Open(conn.dialector(sqlDB), &gorm.Config{
		TranslateError: true, NamingStrategy: naming, Logger: gormlogger.Discard,
	})
	require.NoError(b, err)
	b.Cleanup(func() {
		dropPrefixed(b, mod, prefix)
		_ = sqlDB.Close()
		_ = mod.Close()
	})

	ctx := context.Background()
	require.NoError(b, mod.AutoMigrate(ctx, &Item{}))
	items := make([]Item, benchRows)
	for i := range items {
		items[i] = Item{Name: fmt.Sprint("seed-", i), Qty: i} // IDs 1..benchRows
	}
	require.NoError(b, mod.WithContext(ctx).CreateInBatches(items, 200).Error)
	// Warm both pools to the same size.
	holdAll(b, ctx, mod, min(maxOpen, 8))
	for range 8 {
		var it Item
		require.NoError(b, raw.WithContext(ctx).First(&it, 1).Error)
	}
	return mod, raw
}

// paired runs op on the module and on raw gorm alternately, in the same
// loop, so both see the same server, cache and machine load (this VM's
// load moves ns/op by ±25% between runs). It reports each side's mean
// latency and the module's overhead in percent.
func paired(b *testing.B, mod, raw func() error) {
	b.Helper()
	var modT, rawT time.Duration
	n := 0
	for b.Loop() {
		first, second := mod, raw
		if n%2 == 1 {
			first, second = raw, mod
		}
		t0 := time.Now()
		if err := first(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := second(); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if n%2 == 0 {
			modT, rawT = modT+t1.Sub(t0), rawT+t2.Sub(t1)
		} else {
			rawT, modT = rawT+t1.Sub(t0), modT+t2.Sub(t1)
		}
		n++
	}
	b.StopTimer()
	b.ReportMetric(float64(modT.Microseconds())/float64(n), "module-µs/op")
	b.ReportMetric(float64(rawT.Microseconds())/float64(n), "raw-µs/op")
	b.ReportMetric(100*(float64(modT)-float64(rawT))/float64(rawT), "overhead-%")
}

// sides runs "paired" (both, alternately, for time) and each side alone
// ("module", "raw-gorm": allocations, and instruction counts under
// callgrind, which do not move with the machine's load).
func sides(b *testing.B, mod, raw func() error) {
	b.Run("paired", func(b *testing.B) { paired(b, mod, raw) })
	for _, side := range []struct {
		name string
		op   func() error
	}{{"module", mod}, {"raw-gorm", raw}} {
		b.Run(side.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := side.op(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPointSelect(b *testing.B) {
	for _, tg := range []target{mysqlTarget(), postgresTarget(), sqliteTarget()} {
		b.Run(tg.driver, func(b *testing.B) {
			mod, raw := benchPair(b, tg, DefaultMaxOpenConns)
			ctx := context.Background()
			selectOn := func(session func() *gorm.DB) func() error {
				return func() error {
					var it Item // gorm adds a filled dest's key to the WHERE
					return session().First(&it, rand.IntN(benchRows)+1).Error
				}
			}
			sides(b, selectOn(func() *gorm.DB { return mod.WithContext(ctx) }),
				selectOn(func() *gorm.DB { return raw.WithContext(ctx) }))
		})
	}
}

func BenchmarkInsert(b *testing.B) {
	for _, tg := range []target{mysqlTarget(), postgresTarget(), sqliteTarget()} {
		b.Run(tg.driver, func(b *testing.B) {
			mod, raw := benchPair(b, tg, DefaultMaxOpenConns)
			ctx := context.Background()
			var seq atomic.Int64
			insertOn := func(session func() *gorm.DB) func() error {
				return func() error {
					return session().Create(&Item{Name: fmt.Sprint("n-", seq.Add(1)), Qty: 1}).Error
				}
			}
			sides(b, insertOn(func() *gorm.DB { return mod.WithContext(ctx) }),
				insertOn(func() *gorm.DB { return raw.WithContext(ctx) }))
		})
	}
}

// BenchmarkCallbackCost isolates the module's CPU cost per statement: gorm
// builds the statement and runs every callback but sends nothing
// (DryRun), so the database's time does not hide the difference.
func BenchmarkCallbackCost(b *testing.B) {
	mod, raw := benchPair(b, sqliteTarget(), DefaultMaxOpenConns)
	ctx := context.Background()
	for _, side := range []struct {
		name string
		g    *gorm.DB
	}{{"module", mod.GetDB()}, {"raw-gorm", raw}} {
		b.Run(side.name, func(b *testing.B) {
			b.ReportAllocs()
			dry := side.g.Session(&gorm.Session{DryRun: true})
			for b.Loop() {
				var it Item
				if err := dry.WithContext(ctx).First(&it, 42).Error; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPointSelectThroughput runs the point select from 1, 8 and 32
// goroutines against pools of 8 and 25 (the default) connections and
// reports queries per second, p50/p99 latency and how often a caller had
// to wait for a connection.
func BenchmarkPointSelectThroughput(b *testing.B) {
	for _, tg := range []target{mysqlTarget(), postgresTarget(), sqliteTarget()} {
		b.Run(tg.driver, func(b *testing.B) {
			for _, pool := range []int{8, DefaultMaxOpenConns} {
				mod, _ := benchPair(b, tg, pool)
				for _, workers := range []int{1, 8, 32} {
					b.Run(fmt.Sprintf("pool=%d/goroutines=%d", pool, workers), func(b *testing.B) {
						ctx := context.Background()
						waits := mod.Stats().WaitCount
						var (
							next    atomic.Int64
							mu      sync.Mutex
							samples = make([]time.Duration, 0, b.N)
							wg      sync.WaitGroup
						)
						b.ResetTimer()
						start := time.Now()
						for range workers {
							wg.Go(func() {
								local := make([]time.Duration, 0, b.N/workers+1)
								for next.Add(1) <= int64(b.N) {
									var it Item
									t0 := time.Now()
									if err := mod.WithContext(ctx).First(&it, rand.IntN(benchRows)+1).Error; err != nil {
										b.Error(err)
										return
									}
									local = append(local, time.Since(t0))
								}
								mu.Lock()
								samples = append(samples, local...)
								mu.Unlock()
							})
						}
						wg.Wait()
						elapsed := time.Since(start)
						b.StopTimer()
						if len(samples) == 0 {
							return
						}
						slices.Sort(samples)
						at := func(q float64) float64 {
							return float64(samples[int(q*float64(len(samples)-1))]) / float64(time.Microsecond)
						}
						b.ReportMetric(float64(b.N)/elapsed.Seconds(), "queries/s")
						b.ReportMetric(at(0.50), "p50-µs")
						b.ReportMetric(at(0.99), "p99-µs")
						b.ReportMetric(float64(mod.Stats().WaitCount-waits)/float64(b.N), "waits/op")
					})
				}
			}
		})
	}
}
