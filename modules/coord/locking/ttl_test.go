package locking

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// Issue 6 item 7: a lock with the minimum TTL rides out a network stall
// of 800ms (a GC pause, a leader election, a congested link): renewals are
// frequent enough that the watchdog does not fire while etcd still keeps the
// lease. Before the fix the watchdog allowed 250ms past the client's 500ms
// renewal tick, so any stall over 750ms lost the lock.
func TestLockMinimumTTLSurvivesRenewalStall(t *testing.T) {
	e := coordtest.StartEtcd(t)
	path := coordtest.NewPath(t, e.DirectEndpoint())
	locker := newTestLocker(t, coordtest.RawClient(t, path.Endpoints()...))
	ctx := coordtest.Ctx(t, 30*time.Second)
	l, err := locker.Acquire(ctx, "min-ttl", MinTTL)
	require.NoError(t, err)
	defer func() { _ = l.Unlock(context.Background()) }()
	for range 2 {
		path.Blackhole()
		time.Sleep(800 * time.Millisecond)
		path.Heal(t)
		select {
		case <-l.Done():
			t.Fatalf("a lock with the minimum TTL (%s) was declared lost after an 800ms stall", MinTTL)
		case <-time.After(MinTTL / 2):
		}
	}
	_, err = l.Guard(ctx)
	require.NoError(t, err, "etcd agrees the lock is still held")
}

// Issue 6 item 7, the other half: when renewals stop (the holder is cut
// off), Done comes at least the documented margin before etcd can expire
// the lease, so before anyone else can hold the lock.
func TestLockDoneComesBeforeExpiryByTheMargin(t *testing.T) {
	c := coordtest.StartCluster(t)
	path := coordtest.NewPath(t, c.DirectEndpoints()...)
	holderCli := coordtest.RawClient(t, path.Endpoints()...)
	peerCli := coordtest.RawClient(t, c.Endpoints()...)
	holder := newTestLocker(t, holderCli)
	peer := newTestLocker(t, peerCli)
	ctx := coordtest.Ctx(t, 30*time.Second)

	ttl := MinTTL
	l, err := holder.Acquire(ctx, "margin", ttl)
	require.NoError(t, err)
	path.Blackhole()
	cut := time.Now()
	type acquisition struct {
		at   time.Time
		lock *Lock
	}
	acquired := make(chan acquisition, 1)
	go func() {
		pl, err := peer.Acquire(ctx, "margin", ttl)
		assert.NoError(t, err)
		acquired <- acquisition{time.Now(), pl}
	}()
	var done time.Time
	select {
	case <-l.Done():
		done = time.Now()
	case <-time.After(2 * ttl):
		t.Fatal("Done not closed while the holder was cut off")
	}
	var got time.Time
	select {
	case a := <-acquired:
		require.NotNil(t, a.lock)
		got = a.at
		require.NoError(t, a.lock.Unlock(ctx))
	case <-time.After(3 * ttl):
		t.Fatal("the peer never got the lock")
	}
	t.Logf("ttl %s: Done %v after the cut, peer acquired %v after Done", ttl, done.Sub(cut), got.Sub(done))
	assert.GreaterOrEqual(t, got.Sub(done), lossMargin(ttl)-50*time.Millisecond,
		"the holder hears of the loss a margin before anyone else can hold the lock")
	path.Heal(t)
}
