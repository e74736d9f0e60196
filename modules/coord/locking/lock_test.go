package locking

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// keysUnder lists the keys under prefix. It only asserts, so conditions run
// by Eventually and worker goroutines may call it.
func keysUnder(t *testing.T, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if !assert.NoError(t, err) {
		return nil
	}
	keys := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

// leaseOf reads the lease ID from a holder key ending in "/<lease hex>".
func leaseOf(t *testing.T, key string) clientv3.LeaseID {
	t.Helper()
	id, err := strconv.ParseInt(key[strings.LastIndex(key, "/")+1:], 16, 64)
	require.NoError(t, err)
	return clientv3.LeaseID(id)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestLockValidation(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	locker := newTestLocker(t, cli)
	ctx := context.Background()

	tests := []struct {
		name  string
		key   string
		ttl   time.Duration
		field string
	}{
		{"zero ttl", "k", 0, "ttl"},
		{"sub-second ttl", "k", 500 * time.Millisecond, "ttl"},
		{"negative ttl", "k", -time.Second, "ttl"},
		{"empty key", "", time.Second, "key"},
		{"nested key", "a/b", time.Second, "key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, acquire := range []func(context.Context, string, time.Duration) (*Lock, error){locker.Acquire, locker.TryAcquire} {
				l, err := acquire(ctx, tc.key, tc.ttl)
				require.Error(t, err)
				assert.Nil(t, l)
				assert.ErrorIs(t, err, lifecycle.ErrValidation)
				var ie *lifecycle.InfraError
				require.ErrorAs(t, err, &ie)
				assert.Equal(t, tc.field, ie.Field)
				assert.Equal(t, ModuleName, ie.Component)
			}
		})
	}
	// Nothing was granted or written for a refused request.
	assert.Empty(t, keysUnder(t, cli, locker.Prefix()))

	t.Run("constructor", func(t *testing.T) {
		_, err := NewLocker(nil, Config{}.Defaults())
		assert.ErrorIs(t, err, lifecycle.ErrValidation)
		bad := Config{}.Defaults()
		bad.Locks.Prefix = "locks"
		_, err = NewLocker(cli, bad)
		assert.ErrorIs(t, err, lifecycle.ErrValidation)
		l, err := NewLocker(cli, Config{}.Defaults())
		require.NoError(t, err)
		assert.Equal(t, DefaultLockPrefix, l.Prefix())
		cfg := Config{}.Defaults()
		cfg.Locks.Prefix = "/x"
		l, err = NewLocker(cli, cfg)
		require.NoError(t, err)
		assert.Equal(t, "/x/", l.Prefix())
	})
}

func TestLockAcquireUnlock(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	locker := newTestLocker(t, cli)
	ctx := context.Background()

	l, err := locker.Acquire(ctx, "job", 2*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "job", l.Name())
	assert.Positive(t, l.Token())
	assert.False(t, isClosed(l.Done()))
	assert.Equal(t, []string{l.Key()}, keysUnder(t, cli, locker.Prefix()))

	// The fencing token is the holder key's create revision.
	g, err := cli.Get(ctx, l.Key())
	require.NoError(t, err)
	assert.Equal(t, l.Token(), g.Kvs[0].CreateRevision)

	_, err = l.Guard(ctx, clientv3.OpPut("/test-data/"+t.Name(), "v"))
	require.NoError(t, err)

	require.NoError(t, l.Unlock(ctx))
	assert.True(t, isClosed(l.Done()))
	assert.Empty(t, keysUnder(t, cli, locker.Prefix()))
	assert.NoError(t, l.Unlock(ctx), "a second Unlock is a no-op")
	_, err = l.Guard(ctx, clientv3.OpPut("/test-data/"+t.Name(), "w"))
	assert.ErrorIs(t, err, ErrLockLost)

	l2, err := locker.Acquire(ctx, "job", MinTTL)
	require.NoError(t, err)
	assert.Greater(t, l2.Token(), l.Token(), "tokens grow from holder to holder")
	require.NoError(t, locker.Close(ctx))
	assert.True(t, isClosed(l2.Done()), "Close released the lock")
	assert.Empty(t, keysUnder(t, cli, locker.Prefix()))
}

func TestLockTryAcquireHeld(t *testing.T) {
	e := coordtest.StartEtcd(t)
	a := newTestLocker(t, coordtest.RawClient(t, e.Endpoints()...))
	cli := coordtest.RawClient(t, e.Endpoints()...)
	b := newTestLocker(t, cli)
	ctx := context.Background()

	la, err := a.TryAcquire(ctx, "k", MinTTL)
	require.NoError(t, err)
	lb, err := b.TryAcquire(ctx, "k", MinTTL)
	require.ErrorIs(t, err, ErrLockHeld)
	assert.Nil(t, lb)
	assert.Equal(t, []string{la.Key()}, keysUnder(t, cli, b.Prefix()), "the refused try left no key")

	// A different name is a different lock.
	lo, err := b.TryAcquire(ctx, "other", MinTTL)
	require.NoError(t, err)
	require.NoError(t, lo.Unlock(ctx))

	require.NoError(t, la.Unlock(ctx))
	lb, err = b.TryAcquire(ctx, "k", MinTTL)
	require.NoError(t, err)
	require.NoError(t, lb.Unlock(ctx))
}

func TestLockCancelledWaiterLeavesNoKey(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	holder := newTestLocker(t, cli)
	waiter := newTestLocker(t, coordtest.RawClient(t, e.Endpoints()...))
	ctx := context.Background()

	held, err := holder.Acquire(ctx, "k", 2*time.Second)
	require.NoError(t, err)

	t.Run("deadline", func(t *testing.T) {
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		l, err := waiter.Acquire(wctx, "k", 2*time.Second)
		require.Error(t, err)
		assert.Nil(t, l)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, lifecycle.TypeTimeout, lifecycle.TypeOf(err))
		assert.Equal(t, []string{held.Key()}, keysUnder(t, cli, holder.Prefix()))
	})
	t.Run("cancel", func(t *testing.T) {
		wctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() {
			_, err := waiter.Acquire(wctx, "k", 2*time.Second)
			errc <- err
		}()
		// Cancel only once the waiter is queued behind the holder.
		require.Eventually(t, func() bool { return len(keysUnder(t, cli, holder.Prefix())) == 2 }, 5*time.Second, 5*time.Millisecond)
		cancel()
		require.ErrorIs(t, <-errc, context.Canceled)
		assert.Equal(t, []string{held.Key()}, keysUnder(t, cli, holder.Prefix()))
	})
	t.Run("next waiter is not blocked", func(t *testing.T) {
		got := make(chan *Lock, 1)
		go func() {
			l, err := waiter.Acquire(ctx, "k", 2*time.Second)
			assert.NoError(t, err)
			got <- l
		}()
		require.Eventually(t, func() bool { return len(keysUnder(t, cli, holder.Prefix())) == 2 }, 5*time.Second, 5*time.Millisecond)
		require.NoError(t, held.Unlock(ctx))
		select {
		case l := <-got:
			require.NotNil(t, l)
			assert.Greater(t, l.Token(), held.Token())
			require.NoError(t, l.Unlock(ctx))
		case <-time.After(5 * time.Second):
			t.Fatal("waiter did not get the released lock")
		}
	})
}

// A waiter cancelled while etcd is down returns within its cleanup bound
// instead of waiting for etcd, and its key is gone once etcd is back.
func TestLockCancelledWaiterDuringOutage(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	holder := newTestLocker(t, cli)
	cfg := testConfig(t, 0)
	cfg.ReleaseTimeout = config.Duration(time.Second)
	waiter, err := NewLocker(coordtest.RawClient(t, e.Endpoints()...), cfg)
	require.NoError(t, err)
	ctx := context.Background()

	held, err := holder.Acquire(ctx, "k", 5*time.Second)
	require.NoError(t, err)
	errc := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, err := waiter.Acquire(wctx, "k", MinTTL)
		errc <- err
	}()
	require.Eventually(t, func() bool { return len(keysUnder(t, cli, holder.Prefix())) == 2 }, 5*time.Second, 5*time.Millisecond)
	e.Stop()
	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		require.Error(t, err)
		// Cleanup is bounded by the release timeout, 1s here.
		assert.Less(t, time.Since(start), 2500*time.Millisecond)
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled waiter blocked on the outage")
	}
	require.NoError(t, e.Restart())
	// The waiter's lease (2s) is no longer renewed, so its key expires.
	require.Eventually(t, func() bool {
		keys := keysUnder(t, cli, holder.Prefix())
		return len(keys) <= 1 && (len(keys) == 0 || keys[0] == held.Key())
	}, 10*time.Second, 50*time.Millisecond)
	_ = held.Unlock(ctx)
}

// The server-stop variant: etcd is down for longer than the TTL, the holder
// is told through Done, and after the restart the lock passes on with a
// higher token while the old holder's fenced write is refused.
func TestLockDoneWhenSessionExpires(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	locker := newTestLocker(t, cli)
	ctx := context.Background()

	l, err := locker.Acquire(ctx, "k", MinTTL)
	require.NoError(t, err)
	e.Stop()
	select {
	case <-l.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("Done not closed after the TTL with etcd down")
	}
	require.NoError(t, e.Restart())

	_, err = l.Guard(ctx, clientv3.OpPut("/test-data/"+t.Name(), "stale"))
	require.ErrorIs(t, err, ErrLockLost)

	other := newTestLocker(t, coordtest.RawClient(t, e.Endpoints()...))
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l2, err := other.Acquire(actx, "k", MinTTL)
	require.NoError(t, err, "the lost lock must pass on once its lease expires")
	assert.Greater(t, l2.Token(), l.Token())
	assert.NoError(t, l.Unlock(ctx), "unlocking a lost lock is not an error")
	require.NoError(t, l2.Unlock(ctx))
}

func TestLockDoneWhenLeaseRevoked(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	locker := newTestLocker(t, cli)
	ctx := context.Background()

	l, err := locker.Acquire(ctx, "k", 3*time.Second)
	require.NoError(t, err)
	_, err = cli.Revoke(ctx, leaseOf(t, l.Key()))
	require.NoError(t, err)
	// The server-side fence fails at once, before the holder is told.
	resp, err := l.Guard(ctx, clientv3.OpPut("/test-data/"+t.Name(), "stale"))
	require.ErrorIs(t, err, ErrLockLost)
	if resp != nil {
		assert.False(t, resp.Succeeded)
	}
	select {
	case <-l.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("Done not closed after the lease was revoked")
	}
	g, err := cli.Get(ctx, "/test-data/"+t.Name())
	require.NoError(t, err)
	assert.Empty(t, g.Kvs, "the fenced write must not have happened")
}

// Locker keeps etcd's mutex key layout, so both exclude each other.
func TestLockInteropWithConcurrencyMutex(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	locker := newTestLocker(t, cli)
	ctx := context.Background()

	s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	require.NoError(t, err)
	defer s.Close()
	m := concurrency.NewMutex(s, locker.Prefix()+"k")
	require.NoError(t, m.Lock(ctx))
	_, err = locker.TryAcquire(ctx, "k", MinTTL)
	require.ErrorIs(t, err, ErrLockHeld)
	require.NoError(t, m.Unlock(ctx))

	l, err := locker.Acquire(ctx, "k", MinTTL)
	require.NoError(t, err)
	require.ErrorIs(t, m.TryLock(ctx), concurrency.ErrLocked)
	require.NoError(t, l.Unlock(ctx))
}

// TestLockFencing runs contended rounds of read-increment-fenced-write on a
// shared counter. Every round one holder has its lease revoked between its
// read and its write (a paused, stale holder), and that write must be refused.
// If two holders ever overlapped, one round would count two successful
// writes, or the counter would miss an increment.
func TestLockFencing(t *testing.T) {
	const (
		rounds  = 200
		workers = 3
		ttl     = 2 * time.Second
		staleN  = 10 // every staleN-th round starts with a stale holder
	)
	e := coordtest.StartEtcd(t)
	admin := coordtest.RawClient(t, e.Endpoints()...)
	counterKey := "/test-data/" + t.Name() + "/counter"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		wins          [rounds]atomic.Int32
		successes     atomic.Int64
		staleInjected sync.Map // round -> struct{}
		staleRefused  atomic.Int64
		staleOnServer atomic.Int64
		staleAccepted atomic.Int64
	)
	readCounter := func(cli *clientv3.Client) int {
		g, err := cli.Get(ctx, counterKey)
		if !assert.NoError(t, err) {
			return -1
		}
		if len(g.Kvs) == 0 {
			return 0
		}
		n, err := strconv.Atoi(string(g.Kvs[0].Value))
		assert.NoError(t, err)
		return n
	}

	var wg sync.WaitGroup
	for w := range workers {
		cli := coordtest.RawClient(t, e.Endpoints()...)
		locker := newTestLocker(t, cli)
		wg.Go(func() {
			for ctx.Err() == nil {
				l, err := locker.Acquire(ctx, "counter", ttl)
				if !assert.NoError(t, err) {
					return
				}
				c := readCounter(cli)
				if c < 0 || c >= rounds {
					assert.NoError(t, l.Unlock(ctx))
					return
				}
				if _, dup := staleInjected.LoadOrStore(c, struct{}{}); !dup && c%staleN == 0 {
					// Pause past our lease: it is revoked, and we wait
					// until a peer holds the lock (or has already finished
					// the round) before writing.
					_, err := admin.Revoke(ctx, leaseOf(t, l.Key()))
					assert.NoError(t, err)
					assert.Eventually(t, func() bool {
						keys := keysUnder(t, admin, locker.Prefix()+"counter/")
						return !slices.Contains(keys, l.Key()) && (len(keys) > 0 || readCounter(cli) > c)
					}, 5*time.Second, time.Millisecond)
					resp, err := l.Guard(ctx, clientv3.OpPut(counterKey, strconv.Itoa(c+1)))
					if errors.Is(err, ErrLockLost) {
						staleRefused.Add(1)
						if resp != nil {
							staleOnServer.Add(1)
						}
					} else {
						staleAccepted.Add(1)
					}
					_ = l.Unlock(ctx)
					continue
				}
				_, err = l.Guard(ctx,
					clientv3.OpPut(counterKey, strconv.Itoa(c+1)),
					clientv3.OpPut(fmt.Sprintf("%s/round/%d", counterKey, c), strconv.Itoa(w)))
				if assert.NoError(t, err) {
					wins[c].Add(1)
					successes.Add(1)
				}
				assert.NoError(t, l.Unlock(ctx))
			}
		})
	}
	wg.Wait()
	require.NoError(t, ctx.Err(), "rounds did not finish in time")

	for r := range rounds {
		assert.EqualValues(t, 1, wins[r].Load(), "round %d fenced writes", r)
	}
	assert.EqualValues(t, rounds, successes.Load())
	assert.Equal(t, int(successes.Load()), readCounter(admin), "counter == successful fenced writes")
	assert.Zero(t, staleAccepted.Load(), "a stale holder's fenced write went through")
	assert.EqualValues(t, rounds/staleN, staleRefused.Load())
	assert.Positive(t, staleOnServer.Load(), "some stale writes must be refused by etcd itself, not only by Done")
	t.Logf("%d rounds, %d stale holders refused (%d by the etcd compare)", rounds, staleRefused.Load(), staleOnServer.Load())
}

func TestLockReusesLeases(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	locker := newTestLocker(t, cli)
	ctx := context.Background()

	l1, err := locker.Acquire(ctx, "r", MinTTL)
	require.NoError(t, err)
	require.NoError(t, l1.Unlock(ctx))
	assert.True(t, isClosed(l1.Done()), "Done closes on Unlock even though the lease lives on")
	assert.Empty(t, keysUnder(t, cli, locker.Prefix()+"r/"), "Unlock deletes the key")

	l2, err := locker.Acquire(ctx, "r", MinTTL)
	require.NoError(t, err)
	assert.Equal(t, l1.Key(), l2.Key(), "the second lock reuses the first one's lease")
	assert.Greater(t, l2.Token(), l1.Token(), "tokens still grow")
	require.NoError(t, l2.Unlock(ctx))

	// A pooled lease revoked behind the Locker's back is skipped, not used.
	lease := leaseOf(t, l2.Key())
	_, err = cli.Revoke(ctx, lease)
	require.NoError(t, err)
	l3, err := locker.Acquire(ctx, "r", MinTTL)
	require.NoError(t, err)
	assert.NotEqual(t, l2.Key(), l3.Key())
	assert.Equal(t, []string{l3.Key()}, keysUnder(t, cli, locker.Prefix()+"r/"))
	require.NoError(t, l3.Unlock(ctx))

	// Close revokes the idle leases.
	idle := leaseOf(t, l3.Key())
	require.NoError(t, locker.Close(ctx))
	ttl, err := cli.TimeToLive(ctx, idle)
	require.NoError(t, err)
	assert.EqualValues(t, -1, ttl.TTL, "idle lease revoked by Close")
}
