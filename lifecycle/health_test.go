package lifecycle

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func fixed(name string, s State, msg string) Checker {
	return CheckerFunc(name, func(context.Context) Status { return Status{State: s, Message: msg} })
}

// sleepy sleeps for d or until its ctx ends, like a well-behaved client call.
func sleepy(name string, d time.Duration) Checker {
	return CheckerFunc(name, func(ctx context.Context) Status {
		select {
		case <-time.After(d):
			return Status{State: Healthy}
		case <-ctx.Done():
			return Status{State: Unhealthy, Message: ctx.Err().Error()}
		}
	})
}

func TestAggregatorSlowCheckerTimesOutWithoutBlockingOthers(t *testing.T) {
	const timeout = 100 * time.Millisecond
	agg := NewAggregator([]Checker{
		sleepy("slow", 5*time.Second),
		fixed("fast", Healthy, ""),
	}, AggregatorOptions{Timeout: timeout, CacheTTL: -1})

	start := time.Now()
	rep := agg.Check(context.Background())
	elapsed := time.Since(start)

	assert.GreaterOrEqual(t, elapsed, timeout)
	assert.Less(t, elapsed, timeout+400*time.Millisecond, "report must come at the timeout, not when the slow check ends")
	assert.Equal(t, Unhealthy, rep.State)
	assert.Equal(t, Status{State: Healthy}, rep.Checks["fast"])
	assert.Equal(t, Unhealthy, rep.Checks["slow"].State)
	assert.Equal(t, "check timed out after 100ms", rep.Checks["slow"].Message)
}

func TestAggregatorWorstStateWins(t *testing.T) {
	tests := []struct {
		name   string
		states []State
		want   State
	}{
		{"none", nil, Healthy},
		{"all healthy", []State{Healthy, Healthy}, Healthy},
		{"one degraded", []State{Healthy, Degraded, Healthy}, Degraded},
		{"unhealthy beats degraded", []State{Degraded, Unhealthy, Healthy}, Unhealthy},
		{"invalid state counts as unhealthy", []State{Healthy, "ok"}, Unhealthy},
		{"empty state counts as unhealthy", []State{""}, Unhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var checkers []Checker
			for i, s := range tt.states {
				checkers = append(checkers, fixed(string(rune('a'+i)), s, ""))
			}
			rep := NewAggregator(checkers, AggregatorOptions{}).Check(context.Background())
			assert.Equal(t, tt.want, rep.State)
			assert.Len(t, rep.Checks, len(tt.states))
			assert.False(t, rep.CheckedAt.IsZero())
		})
	}
}

func TestAggregatorInvalidStateKeepsMessage(t *testing.T) {
	rep := NewAggregator([]Checker{fixed("x", "ok", "all good")}, AggregatorOptions{}).Check(context.Background())
	assert.Equal(t, `checker returned invalid state "ok": all good`, rep.Checks["x"].Message)
}

func TestAggregatorPanickingChecker(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	agg := NewAggregator([]Checker{
		CheckerFunc("boom", func(context.Context) Status { panic("nil map") }),
		fixed("fine", Healthy, ""),
	}, AggregatorOptions{Logger: zap.New(core)})

	rep := agg.Check(context.Background())
	assert.Equal(t, Unhealthy, rep.State)
	assert.Equal(t, Status{State: Unhealthy, Message: "check panicked: nil map"}, rep.Checks["boom"])
	assert.Equal(t, Healthy, rep.Checks["fine"].State)
	require.Equal(t, 1, logs.FilterMessage("health checker panicked").Len())
}

func counting(name string, calls *atomic.Int32, d time.Duration) Checker {
	return CheckerFunc(name, func(ctx context.Context) Status {
		calls.Add(1)
		time.Sleep(d)
		return Status{State: Healthy}
	})
}

func TestAggregatorCacheTTL(t *testing.T) {
	var calls atomic.Int32
	agg := NewAggregator([]Checker{counting("c", &calls, 0)}, AggregatorOptions{CacheTTL: 150 * time.Millisecond})

	first := agg.Check(context.Background())
	second := agg.Check(context.Background())
	assert.Equal(t, int32(1), calls.Load(), "second call inside the TTL uses the cache")
	assert.Equal(t, first.CheckedAt, second.CheckedAt)

	time.Sleep(200 * time.Millisecond)
	third := agg.Check(context.Background())
	assert.Equal(t, int32(2), calls.Load(), "after the TTL the checks run again")
	assert.True(t, third.CheckedAt.After(first.CheckedAt))
}

func TestAggregatorCacheDisabled(t *testing.T) {
	var calls atomic.Int32
	agg := NewAggregator([]Checker{counting("c", &calls, 0)}, AggregatorOptions{CacheTTL: -1})
	agg.Check(context.Background())
	agg.Check(context.Background())
	assert.Equal(t, int32(2), calls.Load())
}

func TestAggregatorConcurrentCallersShareOneRun(t *testing.T) {
	var calls atomic.Int32
	agg := NewAggregator([]Checker{counting("c", &calls, 50*time.Millisecond)}, AggregatorOptions{CacheTTL: -1})

	var wg sync.WaitGroup
	reports := make([]Report, 10)
	for i := range reports {
		wg.Go(func() { reports[i] = agg.Check(context.Background()) })
	}
	wg.Wait()
	// With the cache off, callers that overlap still join the run in flight;
	// a straggler may start a second one, never ten.
	assert.LessOrEqual(t, calls.Load(), int32(2))
	for _, r := range reports {
		assert.Equal(t, Healthy, r.State)
	}
	// Each caller owns its map.
	reports[0].Checks["c"] = Status{State: Unhealthy}
	assert.Equal(t, Healthy, reports[1].Checks["c"].State)
}

func TestAggregatorCallerContextEnds(t *testing.T) {
	agg := NewAggregator([]Checker{sleepy("slow", 5*time.Second)}, AggregatorOptions{Timeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()

	start := time.Now()
	rep := agg.Check(ctx)
	assert.Less(t, time.Since(start), 250*time.Millisecond, "the caller's ctx is honoured")
	assert.Equal(t, Unhealthy, rep.State)
	assert.Equal(t, "not checked: context deadline exceeded", rep.Checks["slow"].Message)

	// The detached run still completes on its own timeout, and its result
	// is what the next caller sees.
	rep = agg.Check(context.Background())
	assert.Equal(t, "check timed out after 300ms", rep.Checks["slow"].Message)
}

func TestAggregatorCheckerIgnoringContextIsNotCalledTwice(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	agg := NewAggregator([]Checker{CheckerFunc("stuck", func(context.Context) Status {
		calls.Add(1)
		<-release // ignores its ctx
		return Status{State: Healthy}
	})}, AggregatorOptions{Timeout: 30 * time.Millisecond, CacheTTL: -1})

	first := agg.Check(context.Background())
	second := agg.Check(context.Background())
	close(release)

	assert.Equal(t, "check timed out after 30ms", first.Checks["stuck"].Message)
	assert.Contains(t, second.Checks["stuck"].Message, "previous check has not returned yet")
	assert.Equal(t, int32(1), calls.Load(), "no second goroutine piles up behind a stuck checker")
}

func TestAggregatorAddAndDuplicateNames(t *testing.T) {
	agg := NewAggregator([]Checker{fixed("db", Healthy, ""), fixed("db", Degraded, ""), nil}, AggregatorOptions{})
	rep := agg.Check(context.Background())
	require.Len(t, rep.Checks, 2)
	assert.Equal(t, Healthy, rep.Checks["db"].State)
	assert.Equal(t, Degraded, rep.Checks["db#2"].State)

	// Add invalidates the cache so the new checker shows at once.
	agg.Add(fixed("", Unhealthy, "late"))
	rep = agg.Check(context.Background())
	assert.Equal(t, Unhealthy, rep.State)
	assert.Equal(t, "late", rep.Checks["unnamed"].Message)
}

func TestAggregatorLogsStateChangesOnly(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	var state atomic.Value
	state.Store(Healthy)
	agg := NewAggregator([]Checker{CheckerFunc("redis", func(context.Context) Status {
		return Status{State: state.Load().(State)}
	})}, AggregatorOptions{CacheTTL: -1, Logger: zap.New(core)})

	agg.Check(context.Background())
	state.Store(Unhealthy)
	agg.Check(context.Background())
	agg.Check(context.Background())
	state.Store(Healthy)
	agg.Check(context.Background())

	entries := logs.FilterMessage("health check state changed").All()
	require.Len(t, entries, 2)
	assert.Equal(t, "unhealthy", entries[0].ContextMap()["to"])
	assert.Equal(t, "healthy", entries[1].ContextMap()["to"])
}
