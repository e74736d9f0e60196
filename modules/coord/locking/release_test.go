package locking

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// endedCtx is a context that has already ended, like a request context
// after its deadline: `defer lock.Unlock(reqCtx)` hands one to Unlock.
func endedCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// Issue 6 item 6: releasing with an ended ctx releases at once on a ctx of
// its own, and a second release is harmless.
func TestReleaseWithEndedContext(t *testing.T) {
	e := coordtest.StartEtcd(t)
	ctx := coordtest.Ctx(t, 20*time.Second)

	t.Run("Unlock", func(t *testing.T) {
		holder := newTestLocker(t, coordtest.RawClient(t, e.Endpoints()...))
		peer := newTestLocker(t, coordtest.RawClient(t, e.Endpoints()...))
		l, err := holder.Acquire(ctx, "k", 10*time.Second)
		require.NoError(t, err)
		require.NoError(t, l.Unlock(endedCtx()))
		assert.True(t, isClosed(l.Done()))
		// Long before the 10s TTL: the key went with the Unlock.
		next, err := peer.TryAcquire(ctx, "k", 10*time.Second)
		require.NoError(t, err, "the lock is free right after Unlock with an ended ctx")
		require.NoError(t, l.Unlock(endedCtx()), "a second Unlock is harmless")
		require.NoError(t, next.Unlock(ctx))
	})

	t.Run("Resign", func(t *testing.T) {
		cli := coordtest.RawClient(t, e.Endpoints()...)
		leader := newTestElection(t, cli, 10*time.Second)
		next := newTestElection(t, coordtest.RawClient(t, e.Endpoints()...), 10*time.Second)
		require.NoError(t, leader.Campaign(ctx, "one"))
		won := make(chan error, 1)
		go func() { won <- next.Campaign(ctx, "two") }()
		require.Eventually(t, func() bool {
			return len(keysUnder(t, cli, testConfig(t, 0).Election.Prefix)) == 2
		}, 5*time.Second, 5*time.Millisecond)
		require.NoError(t, leader.Resign(endedCtx()))
		select {
		case err := <-won:
			require.NoError(t, err, "the next candidate leads right after Resign with an ended ctx")
		case <-time.After(5 * time.Second):
			t.Fatal("Resign with an ended ctx did not hand leadership over")
		}
		require.NoError(t, leader.Resign(endedCtx()), "a second Resign is harmless")
	})

	t.Run("Release", func(t *testing.T) {
		cli := coordtest.RawClient(t, e.Endpoints()...)
		a := newTestAllocator(t, cli, 1)
		b := newTestAllocator(t, coordtest.RawClient(t, e.Endpoints()...), 1)
		id, err := a.AcquireID(ctx)
		require.NoError(t, err)
		require.NoError(t, id.Release(endedCtx()))
		assert.True(t, isClosed(id.Done()))
		other, err := b.AcquireID(ctx)
		require.NoError(t, err, "the only ID is free right after Release with an ended ctx")
		assert.Equal(t, 1, other.ID())
		require.NoError(t, id.Release(endedCtx()), "a second Release is harmless")
	})

	t.Run("Close", func(t *testing.T) {
		cli := coordtest.RawClient(t, e.Endpoints()...)
		locker := newTestLocker(t, cli)
		_, err := locker.Acquire(ctx, "closing", 10*time.Second)
		require.NoError(t, err)
		require.NoError(t, locker.Close(endedCtx()))
		assert.Empty(t, keysUnder(t, cli, locker.Prefix()), "Close with an ended ctx still releases")
	})
}
