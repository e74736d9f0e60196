package coord

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/coordtest"
	"github.com/gochat/im-infra/modules/coord/discovery"
	"github.com/gochat/im-infra/modules/coord/locking"
)

// faultTTL is the lease TTL of every registration, lock, leadership and ID
// in the cluster fault tests: "restored within one TTL" is measured in it.
const faultTTL = 2 * time.Second

// faultWorld is one service instance using every coord primitive at once,
// the way a service does: a config Value, a registration, a held lock, an
// election it leads (campaigning again whenever it loses) and an instance
// ID (acquired again whenever it is lost).
type faultWorld struct {
	t      *testing.T
	client *Client
	value  *config.Value[cfgSchema]
	reg    *discovery.Registry
	inst   discovery.ServiceInstance
	lock   *locking.Lock
	locker *locking.Locker
	elect  *locking.Election

	mu       sync.Mutex
	id       *locking.InstanceID
	idLost   int
	termLost int
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

func faultLockingConfig(t *testing.T) locking.Config {
	c := locking.Config{}.Defaults()
	c.Locks.Prefix = "/fault-locks/" + t.Name() + "/"
	c.Election.Prefix = "/fault-elections/" + t.Name() + "/"
	c.IDs.Prefix = "/fault-ids/" + t.Name() + "/"
	c.Election.TTL = config.Duration(faultTTL)
	c.IDs.TTL = config.Duration(faultTTL)
	return c
}

func startFaultWorld(t *testing.T, endpoints []string) *faultWorld {
	t.Helper()
	ctx := coordtest.Ctx(t, 30*time.Second)
	cfg := Defaults()
	cfg.Endpoints = endpoints
	cfg.ProbeTimeout = config.Duration(500 * time.Millisecond)
	cfg.DialTimeout = config.Duration(time.Second)
	c := cliNew(t, cfg)
	require.NoError(t, c.Start(ctx))
	w := &faultWorld{t: t, client: c}

	w.value = config.NewValue[cfgSchema]("comp", NewSource(c), cfgIdentity,
		config.WithRetry(20*time.Millisecond, 200*time.Millisecond))
	require.NoError(t, w.value.Start(ctx))
	t.Cleanup(func() { _ = w.value.Stop(context.Background()) })

	rcfg := discovery.Config{}.Defaults()
	rcfg.TTL = config.Duration(faultTTL)
	rcfg.RetryMin = config.Duration(20 * time.Millisecond)
	rcfg.RetryMax = config.Duration(200 * time.Millisecond)
	reg, err := discovery.NewRegistry(c.Raw(), rcfg)
	require.NoError(t, err)
	w.reg = reg
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	w.inst = discovery.ServiceInstance{ID: "i-1", Name: "fault-svc", Addr: "127.0.0.1:9000"}
	require.NoError(t, reg.Register(ctx, w.inst))

	lcfg := faultLockingConfig(t)
	w.locker, err = locking.NewLocker(c.Raw(), lcfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.locker.Close(context.Background()) })
	w.lock, err = w.locker.Acquire(ctx, "job", faultTTL)
	require.NoError(t, err)

	w.elect, err = locking.NewElection(c.Raw(), "leader", lcfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.elect.Close(context.Background()) })
	require.NoError(t, w.elect.Campaign(ctx, "i-1"))

	ids, err := locking.NewIDAllocator(c.Raw(), "fault-svc", lcfg, locking.WithHolder("i-1"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ids.Close(context.Background()) })
	w.id, err = ids.AcquireID(ctx)
	require.NoError(t, err)

	// What a service does when it loses leadership or its ID: stand again,
	// acquire again.
	loopCtx, stop := context.WithCancel(context.Background())
	w.stop = stop
	t.Cleanup(w.stopLoops)
	w.wg.Go(func() {
		for loopCtx.Err() == nil {
			select {
			case <-w.elect.Done():
			case <-loopCtx.Done():
				return
			}
			w.mu.Lock()
			w.termLost++
			w.mu.Unlock()
			for loopCtx.Err() == nil && w.elect.Campaign(loopCtx, "i-1") != nil {
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	w.wg.Go(func() {
		for loopCtx.Err() == nil {
			w.mu.Lock()
			done := w.id.Done()
			w.mu.Unlock()
			select {
			case <-done:
			case <-loopCtx.Done():
				return
			}
			for loopCtx.Err() == nil {
				id, err := ids.AcquireID(loopCtx)
				if err == nil {
					w.mu.Lock()
					w.id = id
					w.idLost++
					w.mu.Unlock()
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	return w
}

func (w *faultWorld) stopLoops() {
	w.stop()
	w.wg.Wait()
}

// idHeld reports whether the world holds an ID that etcd agrees it holds.
func (w *faultWorld) idHeld(ctx context.Context, peer *clientv3.Client) bool {
	w.mu.Lock()
	id := w.id
	w.mu.Unlock()
	select {
	case <-id.Done():
		return false
	default:
	}
	resp, err := peer.Get(ctx, id.Key())
	return err == nil && len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == "i-1"
}

// restoredWithinTTL asserts that the registration, the election's leader
// and the ID are in place, now or within one TTL of since.
func (w *faultWorld) restoredWithinTTL(ctx context.Context, peer *clientv3.Client, since time.Time) {
	t := w.t
	t.Helper()
	peerElection, err := locking.NewElection(peer, "leader", faultLockingConfig(t))
	require.NoError(t, err)
	defer func() { _ = peerElection.Close(context.Background()) }()
	disc := discovery.NewDiscovery(peer)
	deadline := since.Add(faultTTL + 250*time.Millisecond)
	check := func() (registered, led, held bool) {
		got, err := disc.Discover(ctx, w.inst.Name)
		registered = err == nil && len(got) == 1 && got[0].Addr == w.inst.Addr && w.reg.Registered(w.inst.ID)
		v, err := peerElection.Leader(ctx)
		led = err == nil && v != ""
		held = w.idHeld(ctx, peer)
		return
	}
	var registered, led, held bool
	for {
		registered, led, held = check()
		if (registered && led && held) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	assert.True(t, registered, "the registration is back within one TTL")
	assert.True(t, led, "the election has a leader within one TTL")
	assert.True(t, held, "the instance holds an ID within one TTL")
	t.Logf("restored %v after the fault (TTL %v)", time.Since(since).Round(time.Millisecond), faultTTL)
}

// lockOrder hands the world's lock to a peer waiting for it and checks the
// fencing order: if the holder lost the lock, its Done came before the peer
// acquired; the peer's token is higher.
type lockOrder struct {
	acquired chan time.Time
	lock     chan *locking.Lock
}

func waitForLock(t *testing.T, ctx context.Context, peer *locking.Locker) *lockOrder {
	o := &lockOrder{acquired: make(chan time.Time, 1), lock: make(chan *locking.Lock, 1)}
	go func() {
		l, err := peer.Acquire(ctx, "job", faultTTL)
		if assert.NoError(t, err) {
			o.acquired <- time.Now()
			o.lock <- l
		}
	}()
	return o
}

// TestLeaderLoss kills the etcd leader of a 3-member cluster while a service
// holds a watch, a registration, a lock, a leadership and an ID.
func TestLeaderLoss(t *testing.T) {
	cluster := coordtest.StartCluster(t)
	ctx := coordtest.Ctx(t, 60*time.Second)
	peer := coordtest.RawClient(t, cluster.Endpoints()...)
	w := startFaultWorld(t, cluster.Endpoints())
	peerLocker, err := locking.NewLocker(peer, faultLockingConfig(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = peerLocker.Close(context.Background()) })
	order := waitForLock(t, ctx, peerLocker)

	lead, err := cluster.Leader(ctx)
	require.NoError(t, err)
	lead.Kill()
	killed := time.Now()
	_, err = cluster.Leader(ctx)
	require.NoError(t, err)
	t.Logf("new etcd leader after %v", time.Since(killed).Round(time.Millisecond))

	// A config update written once the new leader is elected is applied.
	_, err = peer.Put(ctx, config.Key("dev", "svc", "comp"), `{"n":42}`)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return w.value.Get().N == 42 }, 5*time.Second, 5*time.Millisecond,
		"config update after the new leader is applied")

	w.restoredWithinTTL(ctx, peer, killed)

	// The lock: either still held (then the peer waits for the Unlock) or
	// lost, with Done before the peer got it. Tokens keep increasing.
	var lostAt time.Time
	select {
	case <-w.lock.Done():
		lostAt = time.Now()
	case <-time.After(faultTTL):
	}
	_ = w.lock.Unlock(ctx)
	var peerAt time.Time
	select {
	case peerAt = <-order.acquired:
	case <-time.After(10 * time.Second):
		t.Fatal("the peer never got the lock")
	}
	pl := <-order.lock
	if !lostAt.IsZero() {
		assert.True(t, lostAt.Before(peerAt), "the holder saw Done before the peer acquired")
	}
	assert.Greater(t, pl.Token(), w.lock.Token(), "fencing tokens keep increasing")
	require.NoError(t, pl.Unlock(ctx))
	w.mu.Lock()
	t.Logf("leadership lost %d time(s), ID lost %d time(s), lock lost: %v", w.termLost, w.idLost, !lostAt.IsZero())
	w.mu.Unlock()
	require.NoError(t, lead.Restart())
}

// TestClientPartitionedFromCluster cuts one service instance off from every
// member (packets lost, not refused) for longer than the TTLs, then heals.
func TestClientPartitionedFromCluster(t *testing.T) {
	cluster := coordtest.StartCluster(t)
	ctx := coordtest.Ctx(t, 60*time.Second)
	peer := coordtest.RawClient(t, cluster.Endpoints()...)
	path := coordtest.NewPath(t, cluster.DirectEndpoints()...)
	w := startFaultWorld(t, path.Endpoints())
	health := NewHealthChecker(w.client)
	require.Equal(t, lifecycle.Healthy, health.Check(ctx).State)
	peerLocker, err := locking.NewLocker(peer, faultLockingConfig(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = peerLocker.Close(context.Background()) })
	peerElection, err := locking.NewElection(peer, "leader", faultLockingConfig(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = peerElection.Close(context.Background()) })
	oldToken := w.lock.Token()

	path.Blackhole()
	cut := time.Now()
	order := waitForLock(t, ctx, peerLocker)
	peerLeads := make(chan time.Time, 1)
	go func() {
		if assert.NoError(t, peerElection.Campaign(ctx, "peer")) {
			peerLeads <- time.Now()
		}
	}()

	var lockDone, termDone time.Time
	select {
	case <-w.lock.Done():
		lockDone = time.Now()
	case <-time.After(2 * faultTTL):
		t.Fatal("the cut-off holder never saw Done")
	}
	select {
	case <-w.elect.Done():
		termDone = time.Now()
	case <-time.After(2 * faultTTL):
		t.Fatal("the cut-off leader never saw Done")
	}
	require.Eventually(t, func() bool { return health.Check(ctx).State == lifecycle.Degraded }, 2*time.Second, 10*time.Millisecond,
		"the cut-off client reports degraded")
	peerAt := <-order.acquired
	assert.True(t, lockDone.Before(peerAt), "the holder saw Done (%v) before the peer acquired (%v)", lockDone.Sub(cut), peerAt.Sub(cut))
	select {
	case at := <-peerLeads:
		assert.True(t, termDone.Before(at), "the old leader saw Done (%v) before the peer led (%v)", termDone.Sub(cut), at.Sub(cut))
	case <-time.After(2 * faultTTL):
		t.Fatal("the peer never led")
	}
	pl := <-order.lock
	assert.Greater(t, pl.Token(), oldToken, "fencing tokens keep increasing")
	_, err = pl.Guard(ctx, clientv3.OpPut("/fault-data/"+t.Name(), "peer"))
	require.NoError(t, err)
	_, err = w.lock.Guard(ctx, clientv3.OpPut("/fault-data/"+t.Name(), "stale"))
	require.ErrorIs(t, err, locking.ErrLockLost, "the cut-off holder's fenced write is refused")

	// Written while the instance is cut off: applied once it is back.
	_, err = peer.Put(ctx, config.Key("dev", "svc", "comp"), `{"n":43}`)
	require.NoError(t, err)
	require.NoError(t, peerElection.Resign(ctx))
	require.NoError(t, pl.Unlock(ctx))
	time.Sleep(faultTTL) // well past every lease of the cut-off instance

	path.Heal(t)
	healed := time.Now()
	require.Eventually(t, func() bool { return w.value.Get().N == 43 }, 5*time.Second, 5*time.Millisecond,
		"the update written during the partition is applied after it")
	w.restoredWithinTTL(ctx, peer, healed)
	require.Eventually(t, func() bool { return health.Check(ctx).State == lifecycle.Healthy }, 5*time.Second, 10*time.Millisecond)

	again, err := w.locker.Acquire(ctx, "job", faultTTL)
	require.NoError(t, err)
	assert.Greater(t, again.Token(), pl.Token(), "fencing tokens keep increasing")
	require.NoError(t, again.Unlock(ctx))
	t.Logf("lock Done %v and leadership Done %v after the cut; peer locked %v after it",
		lockDone.Sub(cut).Round(time.Millisecond), termDone.Sub(cut).Round(time.Millisecond), peerAt.Sub(cut).Round(time.Millisecond))
}
