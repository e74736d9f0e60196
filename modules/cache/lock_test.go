package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/lifecycle"
)

func TestLockExcludesAndFencingTokensGrow(t *testing.T) {
	c := newTestClient(t)
	ctx := context.Background()
	a, err := c.TryLock(ctx, "order:1", time.Second)
	require.NoError(t, err)
	assert.Equal(t, "order:1", a.Key())
	assert.Positive(t, a.Token())
	assert.NoError(t, a.Err())

	_, err = c.TryLock(ctx, "order:1", time.Second)
	require.ErrorIs(t, err, ErrLockHeld)
	other, err := c.TryLock(ctx, "order:2", time.Second)
	require.NoError(t, err, "locks of other names are independent")

	require.NoError(t, a.Unlock(ctx))
	assert.ErrorIs(t, a.Err(), ErrLockReleased)
	select {
	case <-a.Done():
	default:
		t.Fatal("Done is closed after Unlock")
	}
	b, err := c.TryLock(ctx, "order:1", time.Second)
	require.NoError(t, err)
	assert.Greater(t, b.Token(), a.Token(), "every acquisition gets a larger fencing token")
	require.NoError(t, b.Unlock(ctx))
	require.NoError(t, b.Unlock(ctx), "a second Unlock returns the first one's result")
	require.NoError(t, other.Unlock(ctx))
}

func TestLockWaitsUntilReleased(t *testing.T) {
	c := newTestClient(t)
	ctx := context.Background()
	a, err := c.Lock(ctx, "res", time.Second)
	require.NoError(t, err)
	const hold = 150 * time.Millisecond
	go func() {
		time.Sleep(hold)
		assert.NoError(t, a.Unlock(ctx))
	}()
	began := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b, err := c.Lock(wctx, "res", time.Second)
	require.NoError(t, err)
	waited := time.Since(began)
	assert.GreaterOrEqual(t, waited, hold-10*time.Millisecond, "Lock blocked while the lock was held")
	assert.Less(t, waited, hold+200*time.Millisecond, "and took it soon after the release (poll backoff caps at 50ms)")
	assert.Greater(t, b.Token(), a.Token())
	require.NoError(t, b.Unlock(ctx))
}

func TestLockGivesUpWhenCtxEnds(t *testing.T) {
	c := newTestClient(t)
	ctx := context.Background()
	a, err := c.Lock(ctx, "res", time.Second)
	require.NoError(t, err)
	defer a.Unlock(ctx)
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err = c.Lock(wctx, "res", time.Second)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, lifecycle.ErrTimeout)
	assert.Less(t, time.Since(began), 300*time.Millisecond)
}

func TestLockIsExtendedWhileHeld(t *testing.T) {
	c := newTestClient(t)
	ctx := context.Background()
	const ttl = 150 * time.Millisecond
	a, err := c.TryLock(ctx, "long", ttl)
	require.NoError(t, err)
	time.Sleep(4 * ttl)
	_, err = c.TryLock(ctx, "long", ttl)
	require.ErrorIs(t, err, ErrLockHeld, "still held four TTLs later")
	require.NoError(t, a.Err())
	pttl, err := c.Client().Do(ctx, c.Client().B().Pttl().Key(a.full).Build()).AsInt64()
	require.NoError(t, err)
	assert.Positive(t, pttl)
	assert.LessOrEqual(t, pttl, ttl.Milliseconds())
	require.NoError(t, a.Unlock(ctx))
	n, err := c.Client().Do(ctx, c.Client().B().Exists().Key(a.full).Build()).AsInt64()
	require.NoError(t, err)
	assert.Zero(t, n, "Unlock deleted the key")
}

func TestUnlockWorksWithAnEndedCtx(t *testing.T) {
	c := newTestClient(t)
	a, err := c.TryLock(context.Background(), "k", time.Second)
	require.NoError(t, err)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, a.Unlock(ended), "released under its own bounded ctx")
	b, err := c.TryLock(context.Background(), "k", time.Second)
	require.NoError(t, err, "the lock is free at once, not after its TTL")
	require.NoError(t, b.Unlock(context.Background()))
}

func TestUnlockReleasesOnlyTheOwnersLock(t *testing.T) {
	c := newTestClient(t)
	ctx := context.Background()
	a, err := c.TryLock(ctx, "k", time.Second)
	require.NoError(t, err)
	// Someone deletes the key (an operator, a flush): another owner takes it.
	require.NoError(t, c.Client().Do(ctx, c.Client().B().Del().Key(a.full).Build()).Error())
	b, err := c.TryLock(ctx, "k", time.Second)
	require.NoError(t, err)

	select {
	case <-a.Done():
	case <-time.After(time.Second):
		t.Fatal("the first owner's next extension finds the key taken and ends the lock")
	}
	require.ErrorIs(t, a.Err(), ErrLockLost)
	require.ErrorIs(t, a.Unlock(ctx), ErrLockLost)

	_, err = c.TryLock(ctx, "k", time.Second)
	require.ErrorIs(t, err, ErrLockHeld, "the first owner's Unlock left the second owner's lock alone")
	require.NoError(t, b.Unlock(ctx))
}

func TestLockTTLIsValidated(t *testing.T) {
	c := newTestClient(t)
	_, err := c.TryLock(context.Background(), "k", time.Millisecond)
	require.ErrorIs(t, err, lifecycle.ErrValidation)
}

func TestCloseReleasesHeldLocks(t *testing.T) {
	addr, _ := testRedis(t)
	cfg := testConfig(t, addr)
	a, err := New(context.Background(), cfg)
	require.NoError(t, err)
	b := newTestClient(t, func(c *Config) { c.Addresses, c.KeyPrefix = cfg.Addresses, cfg.KeyPrefix })
	_, err = a.TryLock(context.Background(), "k", 10*time.Second)
	require.NoError(t, err)
	require.NoError(t, a.Close())
	lk, err := b.TryLock(context.Background(), "k", time.Second)
	require.NoError(t, err, "Close released the lock instead of leaving it for its TTL")
	require.NoError(t, lk.Unlock(context.Background()))
	_, err = a.TryLock(context.Background(), "k", time.Second)
	require.ErrorIs(t, err, lifecycle.ErrConnection, "a closed client takes no locks")
}

// A lock whose owner loses Redis: Done must fire before Redis lets another
// owner take the lock (the TTL, counted by Redis, from the last successful
// extension).
func TestLockOwnerLosingRedisSeesDoneBeforeAnotherOwnerGetsIn(t *testing.T) {
	srv := startOwnRedis(t, devstack.RedisOptions{})
	proxy, err := devstack.NewProxy(srv.Addr())
	require.NoError(t, err)
	defer proxy.Close()
	cfg := testConfig(t, proxy.Addr())
	cfg.CommandTimeout = config.Duration(100 * time.Millisecond)
	owner, err := New(context.Background(), cfg)
	require.NoError(t, err)
	defer owner.Close()
	direct := cfg
	direct.Addresses = []string{srv.Addr()}
	rival, err := New(context.Background(), direct)
	require.NoError(t, err)
	defer rival.Close()

	const ttl = 600 * time.Millisecond
	lk, err := owner.TryLock(context.Background(), "job", ttl)
	require.NoError(t, err)
	time.Sleep(ttl / 2) // at least one extension has happened
	proxy.Close()
	cut := time.Now()

	rivalGot := make(chan time.Time, 1)
	go func() {
		for {
			if l, err := rival.TryLock(context.Background(), "job", ttl); err == nil {
				rivalGot <- time.Now()
				_ = l.Unlock(context.Background())
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	var doneAt time.Time
	select {
	case <-lk.Done():
		doneAt = time.Now()
	case <-time.After(3 * ttl):
		t.Fatal("Done did not fire after the owner lost Redis")
	}
	require.ErrorIs(t, lk.Err(), ErrLockLost)
	got := <-rivalGot
	assert.True(t, doneAt.Before(got), "Done fired %s after the cut, the rival got the lock %s after it",
		doneAt.Sub(cut), got.Sub(cut))
	assert.Less(t, doneAt.Sub(cut), ttl, "within one TTL of losing Redis")
	t.Logf("cut → Done %s; cut → rival owner %s (ttl %s)", doneAt.Sub(cut), got.Sub(cut), ttl)

	began := time.Now()
	err = lk.Unlock(context.Background())
	require.Error(t, err, "Redis is still unreachable")
	assert.False(t, errors.Is(err, ErrLockHeld))
	assert.Less(t, time.Since(began), 500*time.Millisecond, "Unlock is bounded by commandTimeout")
}
