package cache

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
)

func TestGetOrLoadLoadsOnceForConcurrentCallers(t *testing.T) {
	mp, reader := testMeter(t)
	addr, _ := testRedis(t)
	cfg := testConfig(t, addr)
	c, err := New(context.Background(), cfg, WithMeterProvider(mp))
	require.NoError(t, err)
	t.Cleanup(func() { deleteKeys(t, c.Client(), cfg.KeyPrefix); _ = c.Close() })

	var calls atomic.Int32
	release := make(chan struct{})
	loader := func(ctx context.Context) (any, error) {
		calls.Add(1)
		<-release // hold the load until every caller is waiting on it
		return user{ID: 1, Name: "ann"}, nil
	}
	const callers = 100
	var (
		wg      sync.WaitGroup
		started sync.WaitGroup
		results = make([]string, callers)
		errs    = make([]error, callers)
	)
	started.Add(callers)
	for i := range callers {
		wg.Go(func() {
			started.Done()
			results[i], errs[i] = c.GetOrLoad(context.Background(), "user:1", time.Minute, loader)
		})
	}
	started.Wait()
	time.Sleep(50 * time.Millisecond) // let the callers reach the load
	close(release)
	wg.Wait()

	assert.Equal(t, int32(1), calls.Load(), "100 concurrent callers on a cold key call the loader once")
	for i := range callers {
		require.NoError(t, errs[i])
		var u user
		require.NoError(t, Decode(results[i], &u))
		assert.Equal(t, user{ID: 1, Name: "ann"}, u)
	}
	assert.Equal(t, int64(1), sumOf(t, reader, "cache.aside.loads", attribute.String("status", "ok")))

	// Stored in Redis with the TTL: the next call does not load.
	ttl, err := c.TTL(context.Background(), "user:1")
	require.NoError(t, err)
	assert.InDelta(t, time.Minute.Seconds(), ttl.Seconds(), 2)
	_, err = c.GetOrLoad(context.Background(), "user:1", time.Minute, loader)
	require.NoError(t, err)
	assert.Equal(t, int32(1), calls.Load())
}

func TestGetOrLoadLoadsOnceAcrossProcesses(t *testing.T) {
	addr, _ := testRedis(t)
	cfg := testConfig(t, addr)
	// Two clients stand for two service instances sharing the Redis.
	a, err := New(context.Background(), cfg)
	require.NoError(t, err)
	b, err := New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { deleteKeys(t, a.Client(), cfg.KeyPrefix); _ = a.Close(); _ = b.Close() })

	var calls atomic.Int32
	loader := func(ctx context.Context) (any, error) {
		calls.Add(1)
		time.Sleep(100 * time.Millisecond) // a slow database query
		return "fresh", nil
	}
	var wg sync.WaitGroup
	for i := range 40 {
		c := a
		if i%2 == 1 {
			c = b
		}
		wg.Go(func() {
			v, err := c.GetOrLoad(context.Background(), "feed", time.Minute, loader)
			assert.NoError(t, err)
			assert.Equal(t, "fresh", v)
		})
	}
	wg.Wait()
	assert.Equal(t, int32(1), calls.Load(), "the claim in Redis makes the other instance wait instead of loading")
}

func TestGetOrLoadNeverCachesLoaderErrors(t *testing.T) {
	c := newTestClient(t)
	ctx := context.Background()
	boom := errors.New("db down")
	var calls atomic.Int32
	failing := func(ctx context.Context) (any, error) { calls.Add(1); return nil, boom }
	_, err := c.GetOrLoad(ctx, "k", time.Minute, failing)
	require.ErrorIs(t, err, boom)
	_, err = c.Get(ctx, "k")
	require.ErrorIs(t, err, ErrMiss, "neither the error nor the claim stays behind")

	v, err := c.GetOrLoad(ctx, "k", time.Minute, func(ctx context.Context) (any, error) { calls.Add(1); return 42, nil })
	require.NoError(t, err, "the next call loads again at once")
	assert.Equal(t, "42", v)
	assert.Equal(t, int32(2), calls.Load())

	_, err = c.GetOrLoad(ctx, "bad", time.Minute, func(ctx context.Context) (any, error) { return make(chan int), nil })
	require.Error(t, err, "a value that cannot be encoded is an error, not cached")
	_, err = c.Get(ctx, "bad")
	require.ErrorIs(t, err, ErrMiss)
}

func TestInvalidateDuringLoadKeepsOldDataOut(t *testing.T) {
	c := newTestClient(t)
	ctx := context.Background()
	loading := make(chan struct{})
	finish := make(chan struct{})
	done := make(chan string)
	go func() {
		v, err := c.GetOrLoad(ctx, "profile", time.Minute, func(ctx context.Context) (any, error) {
			close(loading)
			<-finish
			return "old", nil // read from the database before the writer's change
		})
		assert.NoError(t, err)
		done <- v
	}()
	<-loading
	// The writer changes the database, then invalidates.
	require.NoError(t, c.Invalidate(ctx, "profile"))
	close(finish)
	assert.Equal(t, "old", <-done, "the caller still gets what its loader returned")
	_, err := c.Get(ctx, "profile")
	require.ErrorIs(t, err, ErrMiss, "but the stale value is not cached")

	v, err := c.GetOrLoad(ctx, "profile", time.Minute, func(ctx context.Context) (any, error) { return "new", nil })
	require.NoError(t, err)
	assert.Equal(t, "new", v)
	v, err = c.Get(ctx, "profile")
	require.NoError(t, err)
	assert.Equal(t, "new", v)
}

func TestInvalidateDropsClientSideCopies(t *testing.T) {
	addr, mini := testRedis(t)
	if mini {
		t.Skip("miniredis has no CLIENT TRACKING")
	}
	cfg := testConfig(t, addr)
	reader, err := New(context.Background(), cfg)
	require.NoError(t, err)
	writer, err := New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { deleteKeys(t, reader.Client(), cfg.KeyPrefix); _ = reader.Close(); _ = writer.Close() })
	ctx := context.Background()

	version := "v1"
	loader := func(ctx context.Context) (any, error) { return version, nil }
	v, err := reader.GetOrLoad(ctx, "cfg", time.Minute, loader)
	require.NoError(t, err)
	assert.Equal(t, "v1", v)
	_, err = reader.GetOrLoad(ctx, "cfg", time.Minute, loader) // now in the reader's memory
	require.NoError(t, err)

	version = "v2"
	require.NoError(t, writer.Invalidate(ctx, "cfg", "other-key"))
	require.Eventually(t, func() bool {
		v, err := reader.GetOrLoad(ctx, "cfg", time.Minute, loader)
		return err == nil && v == "v2"
	}, time.Second, time.Millisecond, "the reader's memory copy is dropped and reloaded")
}

func TestGetOrLoadServesFromLoaderWhenRedisIsDown(t *testing.T) {
	srv := startOwnRedis(t, devstack.RedisOptions{})
	proxy, err := devstack.NewProxy(srv.Addr())
	require.NoError(t, err)
	defer proxy.Close()
	cfg := testConfig(t, proxy.Addr())
	cfg.CommandTimeout = config.Duration(200 * time.Millisecond)
	c, err := New(context.Background(), cfg)
	require.NoError(t, err)
	defer c.Close()

	proxy.Close()
	var calls atomic.Int32
	v, err := c.GetOrLoad(context.Background(), "k", time.Minute, func(ctx context.Context) (any, error) {
		calls.Add(1)
		return "from-db", nil
	})
	require.NoError(t, err, "cache-aside degrades to the loader")
	assert.Equal(t, "from-db", v)
	assert.Equal(t, int32(1), calls.Load())
}

// In the invalidating process, the next read after Invalidate loads fresh
// data at once, although the server's invalidation message to this
// process's memory cache may still be in flight.
func TestInvalidateIsSeenAtOnceByThisProcess(t *testing.T) {
	c := newTestClient(t)
	ctx := context.Background()
	for i := range 100 {
		load := func(context.Context) (any, error) { return i, nil }
		_, err := c.GetOrLoad(ctx, "k", time.Minute, load)
		require.NoError(t, err)
		_, err = c.GetOrLoad(ctx, "k", time.Minute, load) // from memory
		require.NoError(t, err)
		require.NoError(t, c.Invalidate(ctx, "k"))
		v, err := c.GetOrLoad(ctx, "k", time.Minute, func(context.Context) (any, error) { return i + 1000, nil })
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(i+1000), v, "round %d", i)
		require.NoError(t, c.Invalidate(ctx, "k"))
	}
}

// A loader that outlives loadTimeout: its callers get the timeout, and the
// claim is removed at once, so the next caller loads without waiting for
// the claim to expire.
func TestGetOrLoadLoaderTimeoutLeavesNoClaim(t *testing.T) {
	c := newTestClient(t, func(c *Config) { c.LoadTimeout = config.Duration(100 * time.Millisecond) })
	ctx := context.Background()
	_, err := c.GetOrLoad(ctx, "slow", time.Minute, func(ctx context.Context) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	n, err := c.Exists(ctx, "slow")
	require.NoError(t, err)
	assert.Zero(t, n, "no claim left behind")
}
