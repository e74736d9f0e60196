package cache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/lifecycle"
)

// callsUnderFault runs one of each kind of call (plain, cached, script,
// pipeline, lock) with context.Background() and returns their errors and
// the slowest call's duration.
func callsUnderFault(c *Client) ([]error, time.Duration) {
	ctx := context.Background()
	calls := []func() error{
		func() error { _, err := c.Get(ctx, "k"); return err },
		func() error { return c.Set(ctx, "k", "v", time.Minute) },
		func() error { _, err := c.GetCached(ctx, "k", time.Minute); return err },
		func() error { _, err := c.Incr(ctx, "n"); return err },
		func() error { _, err := c.Eval(ctx, "return 1", nil); return err },
		func() error { _, err := c.Pipeline(ctx, Cmd{Name: "GET", Keys: []string{"k"}}); return err },
		func() error { _, err := c.TryLock(ctx, "lk", time.Second); return err },
	}
	errs := make([]error, len(calls))
	var (
		wg      sync.WaitGroup
		slowest atomic.Int64
	)
	for i, call := range calls {
		wg.Go(func() {
			began := time.Now()
			errs[i] = call()
			d := int64(time.Since(began))
			for {
				cur := slowest.Load()
				if d <= cur || slowest.CompareAndSwap(cur, d) {
					break
				}
			}
		})
	}
	wg.Wait()
	return errs, time.Duration(slowest.Load())
}

func assertInfraFailures(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		require.Error(t, err, "call %d", i)
		typ := lifecycle.TypeOf(err)
		assert.True(t, typ == lifecycle.TypeConnection || typ == lifecycle.TypeTimeout, "call %d: %v", i, err)
	}
}

// Redis behind a TCP proxy that the test cuts and restores: calls fail
// within the command timeout (none hangs), health turns unhealthy, and once
// the proxy is back the same client works again without a restart.
func TestProxyCutFailsFastAndRecovers(t *testing.T) {
	addr, _ := testRedis(t)
	proxy, err := devstack.NewProxy(addr)
	require.NoError(t, err)
	defer proxy.Close()
	const timeout = 300 * time.Millisecond
	cfg := testConfig(t, proxy.Addr())
	cfg.CommandTimeout = config.Duration(timeout)
	log, logs := observedLogger()
	c, err := New(context.Background(), cfg, WithLogger(log))
	require.NoError(t, err)
	t.Cleanup(func() { deleteKeys(t, rawClient(t, addr, true), cfg.KeyPrefix) })
	defer c.Close()
	health := NewHealthChecker(c)
	ctx := context.Background()

	require.NoError(t, c.Set(ctx, "k", "v", time.Minute))
	assert.Equal(t, lifecycle.Healthy, health.Check(ctx).State)

	proxy.Close()
	errs, slowest := callsUnderFault(c)
	assertInfraFailures(t, errs)
	assert.Less(t, slowest, timeout+200*time.Millisecond, "every call ends within commandTimeout (+ scheduling slack)")
	st := health.Check(ctx)
	assert.Equal(t, lifecycle.Unhealthy, st.State)
	assert.NotEmpty(t, st.Message)
	assert.Equal(t, 1, logs.FilterMessage("redis unreachable; calls fail until it answers again").Len(), "the outage is logged once")

	require.NoError(t, proxy.Open())
	began := time.Now()
	require.Eventually(t, func() bool {
		v, err := c.Get(ctx, "k")
		return err == nil && v == "v"
	}, 10*time.Second, 10*time.Millisecond, "the same client recovers by itself")
	t.Logf("recovered %s after the proxy came back", time.Since(began))
	errs, _ = callsUnderFault(c)
	for i, err := range errs {
		assert.NoError(t, err, "call %d after recovery", i)
	}
	assert.Equal(t, lifecycle.Healthy, health.Check(ctx).State)
	assert.Equal(t, 1, logs.FilterMessage("redis reachable again").Len())
}

// A server that stops answering without closing connections (SIGSTOP):
// calls under context.Background() end at the command timeout, and a
// caller's shorter deadline wins.
func TestHungServerCallsEndAtTheCommandTimeout(t *testing.T) {
	srv := startOwnRedis(t, devstack.RedisOptions{})
	const timeout = 250 * time.Millisecond
	cfg := testConfig(t, srv.Addr())
	cfg.CommandTimeout = config.Duration(timeout)
	c, err := New(context.Background(), cfg)
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "k", "v", time.Minute))

	// On a live connection, a caller's deadline shorter than the command
	// timeout wins.
	require.NoError(t, srv.Pause())
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	began := time.Now()
	_, err = c.Get(short, "k")
	cancel()
	took := time.Since(began)
	require.ErrorIs(t, err, lifecycle.ErrTimeout)
	assert.Less(t, took, 150*time.Millisecond, "the caller's earlier deadline applies")

	// Every kind of call under context.Background() ends at the command
	// timeout. (The timed-out connection is being replaced meanwhile; a
	// call that has to wait for that reconnect is bounded by the reconnect
	// attempt, itself bounded by commandTimeout.)
	errs, slowest := callsUnderFault(c)
	require.NoError(t, srv.Resume())
	assertInfraFailures(t, errs)
	assert.GreaterOrEqual(t, slowest, timeout-10*time.Millisecond, "calls waited for the server")
	assert.Less(t, slowest, timeout+250*time.Millisecond, "but not beyond commandTimeout")

	require.Eventually(t, func() bool { v, err := c.Get(ctx, "k"); return err == nil && v == "v" },
		10*time.Second, 10*time.Millisecond)
}

// A redis-server restarted while clients are busy: the client reconnects
// by itself, and data saved at shutdown is there again.
func TestServerRestartUnderLoadRecovers(t *testing.T) {
	srv := startOwnRedis(t, devstack.RedisOptions{})
	cfg := testConfig(t, srv.Addr())
	cfg.CommandTimeout = config.Duration(200 * time.Millisecond)
	c, err := New(context.Background(), cfg)
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "before", "kept", 0))

	var (
		ok, failed atomic.Int64
		lastErrAt  atomic.Int64
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d:%d", w, i%50)
				err := c.Set(ctx, key, i, time.Minute)
				if err == nil {
					_, err = c.Get(ctx, key)
				}
				if err != nil {
					failed.Add(1)
					lastErrAt.Store(time.Now().UnixNano())
					time.Sleep(5 * time.Millisecond)
					continue
				}
				ok.Add(1)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, srv.Stop())
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, srv.Restart())
	restarted := time.Now()
	before := ok.Load()
	require.Eventually(t, func() bool { return ok.Load() > before+100 }, 10*time.Second, 10*time.Millisecond,
		"the load goes on after the restart")
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	assert.Positive(t, failed.Load(), "calls failed while the server was down")
	recovery := time.Duration(lastErrAt.Load() - restarted.UnixNano())
	t.Logf("ok=%d failed=%d, last failure %s after the restart", ok.Load(), failed.Load(), recovery)
	assert.Less(t, recovery, 2*time.Second, "no failures later than 2s after the server is back")
	v, err := c.Get(ctx, "before")
	require.NoError(t, err)
	assert.Equal(t, "kept", v)
}
