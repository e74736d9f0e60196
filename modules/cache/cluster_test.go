package cache

import (
	"context"
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

// A 3-master Redis Cluster started from the binaries on PATH: every
// operation works in cluster mode; multi-key calls work on one hash slot
// through hash tags; keys that span slots get a clear error.
func TestCluster(t *testing.T) {
	needServerBinary(t, "redis-cli")
	began := time.Now()
	cl, err := devstack.StartRedisCluster(devstack.RedisClusterOptions{})
	require.NoError(t, err)
	defer cl.Close()
	t.Logf("cluster of %d masters ready in %s", len(cl.Addrs()), time.Since(began))

	cfg := testConfig(t, cl.Addrs()...)
	cfg.Mode = ModeCluster
	c, err := New(context.Background(), cfg)
	require.NoError(t, err)
	defer c.Close()
	require.True(t, c.sess.Load().cluster)
	require.True(t, c.sess.Load().tracking, "client-side caching works against a cluster")

	exerciseOperations(t, c)

	ctx := context.Background()
	t.Run("keys that span slots", func(t *testing.T) {
		// Sanity: these two keys do land in different slots.
		require.NotEqual(t, slotOf(cfg.KeyPrefix+"a"), slotOf(cfg.KeyPrefix+"b"))
		calls := map[string]func() error{
			"mget":     func() error { _, err := c.MGet(ctx, "a", "b"); return err },
			"mset":     func() error { return c.MSet(ctx, map[string]any{"a": 1, "b": 2}) },
			"del":      func() error { return c.Del(ctx, "a", "b") },
			"exists":   func() error { _, err := c.Exists(ctx, "a", "b"); return err },
			"eval":     func() error { _, err := c.Eval(ctx, "return 1", []string{"a", "b"}); return err },
			"pipeline": func() error { _, err := c.Pipeline(ctx, Cmd{Name: "MGET", Keys: []string{"a", "b"}}); return err },
		}
		for name, call := range calls {
			err := call()
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie, name)
			assert.Equal(t, lifecycle.TypeValidation, ie.Type, name)
			assert.Contains(t, err.Error(), "different hash slots", name)
			assert.Contains(t, err.Error(), "hash tag", name)
		}
		require.NoError(t, c.Invalidate(ctx, "a", "b", "c"), "Invalidate takes keys from any slots")
	})

	t.Run("client-side cache, cache-aside and locks", func(t *testing.T) {
		require.NoError(t, c.Set(ctx, "cc", "v1", time.Minute))
		v, err := c.GetCached(ctx, "cc", time.Minute)
		require.NoError(t, err)
		assert.Equal(t, "v1", v)
		require.NoError(t, c.Set(ctx, "cc", "v2", time.Minute))
		require.Eventually(t, func() bool { v, err := c.GetCached(ctx, "cc", time.Minute); return err == nil && v == "v2" },
			time.Second, time.Millisecond)

		var calls atomic.Int32
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				v, err := c.GetOrLoad(ctx, "aside", time.Minute, func(context.Context) (any, error) {
					calls.Add(1)
					time.Sleep(20 * time.Millisecond)
					return "loaded", nil
				})
				assert.NoError(t, err)
				assert.Equal(t, "loaded", v)
			})
		}
		wg.Wait()
		assert.Equal(t, int32(1), calls.Load())

		lk, err := c.TryLock(ctx, "job", time.Second)
		require.NoError(t, err)
		_, err = c.TryLock(ctx, "job", time.Second)
		require.ErrorIs(t, err, ErrLockHeld)
		require.NoError(t, lk.Unlock(ctx))
	})

	t.Run("health", func(t *testing.T) {
		assert.Equal(t, lifecycle.Healthy, NewHealthChecker(c).Check(ctx).State)
	})
}

// A master, a replica and a Sentinel: when the master is shut down, writes
// resume against the promoted replica by themselves. The bound asserted:
// writes succeed again at most 2s after the Sentinel has switched the
// master (which itself takes down-after 500ms plus the failover, ~1-2s),
// and the whole outage stays under 10s.
func TestSentinelFailover(t *testing.T) {
	needServerBinary(t)
	const (
		downAfter       = 500 * time.Millisecond
		failoverTimeout = 2 * time.Second
		afterSwitch     = 2 * time.Second
	)
	sn, err := devstack.StartRedisSentinel(devstack.RedisSentinelOptions{DownAfter: downAfter, FailoverTimeout: failoverTimeout})
	require.NoError(t, err)
	defer sn.Close()

	cfg := testConfig(t, sn.SentinelAddr())
	cfg.Mode = ModeSentinel
	cfg.Sentinel.MasterName = sn.MasterName()
	cfg.Sentinel.RefreshInterval = config.Duration(time.Second)
	cfg.CommandTimeout = config.Duration(200 * time.Millisecond)
	c, err := New(context.Background(), cfg)
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "before", "replicated", 0))
	// WAIT: the write has reached the replica before the master goes.
	_, err = c.Client().Do(ctx, c.Client().B().Wait().Numreplicas(1).Timeout(1000).Build()).AsInt64()
	require.NoError(t, err)

	oldMaster := sn.Master().Addr()
	var (
		mu        sync.Mutex
		lastOK    time.Time
		failures  int
		stop      = make(chan struct{})
		writerEnd = make(chan struct{})
	)
	go func() {
		defer close(writerEnd)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			err := c.Set(ctx, "counter", i, time.Minute)
			mu.Lock()
			if err == nil {
				lastOK = time.Now()
			} else {
				failures++
			}
			mu.Unlock()
		}
	}()
	defer func() { close(stop); <-writerEnd }()
	time.Sleep(100 * time.Millisecond)

	require.NoError(t, sn.Master().Stop())
	down := time.Now()

	var switched time.Time
	require.Eventually(t, func() bool {
		m, err := sn.CurrentMaster()
		if err == nil && m != oldMaster {
			switched = time.Now()
			return true
		}
		return false
	}, 15*time.Second, 10*time.Millisecond, "the Sentinel promotes the replica")

	var resumed time.Time
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		if lastOK.After(switched) {
			resumed = lastOK
			return true
		}
		return false
	}, afterSwitch+time.Second, 5*time.Millisecond, "writes resume after the switch")
	t.Logf("master down → sentinel switch %s → writes resume %s later (total outage %s, %d failed writes)",
		switched.Sub(down), resumed.Sub(switched), resumed.Sub(down), failures)
	assert.Less(t, resumed.Sub(switched), afterSwitch, "bounded delay after the switch")
	assert.Less(t, resumed.Sub(down), 10*time.Second)

	v, err := c.Get(ctx, "before")
	require.NoError(t, err)
	assert.Equal(t, "replicated", v, "data written before the failover is on the new master")
	assert.Equal(t, sn.Replica().Addr(), mustCurrentMaster(t, sn))
	assert.Equal(t, lifecycle.Healthy, NewHealthChecker(c).Check(ctx).State)
}

func mustCurrentMaster(t *testing.T, sn *devstack.RedisSentinel) string {
	m, err := sn.CurrentMaster()
	require.NoError(t, err)
	return m
}
