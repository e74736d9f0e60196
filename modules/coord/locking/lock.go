package locking

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// Errors a lock holder can match with errors.Is.
var (
	// ErrLockHeld is returned by TryAcquire when another holder has the lock.
	ErrLockHeld = errors.New("locking: lock is held by another holder")
	// ErrLockLost is returned by Guard when the lock is no longer held by
	// this holder (its lease expired, was revoked, or Unlock was called), and
	// by Acquire when the lease died while waiting.
	ErrLockLost = errors.New("locking: lock lost")
)

// cleanupTimeout bounds the lease revoke that cleans up after a failed or
// cancelled acquire: the caller's ctx is already done, and if etcd does not
// answer in this time the lease expires on its own within its TTL anyway.
const cleanupTimeout = 3 * time.Second

// Locker hands out distributed locks on etcd. Each lock is held by its own
// lease (TTL chosen per Acquire), so one lost lock never takes others with
// it. Waiters queue in arrival order (lowest create revision first), as in
// etcd's concurrency.Mutex.
//
// Why not concurrency.Mutex itself: its Lock cleans up a cancelled wait with
// the client's own context, and the client waits for a connection by default
// (WaitForReady), so a waiter cancelled during an etcd outage would block
// until etcd came back; it also keeps waiting after its session has died.
// Locker keeps the same key layout and algorithm but bounds the cleanup,
// stops waiting when the lease is lost, and survives watch compaction.
//
// Leases are reused: Unlock deletes the holder's key and keeps a healthy
// lease (at most poolPerTTL per TTL) for the next Acquire with the same
// TTL, so a lock taken over and over costs two etcd writes (put, delete)
// instead of three (grant, put, revoke). A pooled lease is one keepalive
// stream message per third of its TTL; Close revokes them.
type Locker struct {
	cli    *clientv3.Client
	log    *zap.Logger
	prefix string

	mu     sync.Mutex
	held   map[*Lock]struct{}
	idle   map[int64][]*heldLease // by TTL in seconds
	closed bool
}

// poolPerTTL bounds the idle leases kept per TTL.
const poolPerTTL = 4

// NewLocker returns a Locker on cli with the locks settings of cfg, or a
// VALIDATION error naming the bad field of cfg. It does no I/O.
func NewLocker(cli *clientv3.Client, cfg Config, opts ...Option) (*Locker, error) {
	if cli == nil {
		return nil, lifecycle.ValidationError(ModuleName, "client", "etcd client is nil")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	return &Locker{cli: cli, log: o.log, prefix: normalizePrefix(cfg.Locks.Prefix), held: make(map[*Lock]struct{})}, nil
}

// Prefix is the key prefix the locks live under.
func (lk *Locker) Prefix() string { return lk.prefix }

// Acquire blocks until this caller holds the lock named key, or ctx ends.
// ttl is the lease TTL: how long the lock survives its holder going silent
// (whole seconds, at least 1s; a fraction is rounded up).
//
// A waiter whose ctx ends, or whose lease is lost while waiting, removes its
// queue key by revoking its lease before returning, so it leaves nothing
// behind; if etcd cannot be reached then, the key expires with the lease
// within ttl.
func (lk *Locker) Acquire(ctx context.Context, key string, ttl time.Duration) (*Lock, error) {
	return lk.acquire(ctx, "lock.acquire", key, ttl, true)
}

// TryAcquire takes the lock named key if it is free right now and returns
// an error matching ErrLockHeld if another holder has it. It never waits
// for the lock (only for the two RPCs it makes).
func (lk *Locker) TryAcquire(ctx context.Context, key string, ttl time.Duration) (*Lock, error) {
	return lk.acquire(ctx, "lock.try_acquire", key, ttl, false)
}

// Close releases every lock this Locker still holds, for shutdown: peers
// waiting on them get them now instead of after the TTL. Locks remain
// usable objects; Unlock on them afterwards is a no-op.
func (lk *Locker) Close(ctx context.Context) error {
	lk.mu.Lock()
	lk.closed = true
	locks := make([]*Lock, 0, len(lk.held))
	for l := range lk.held {
		locks = append(locks, l)
	}
	lk.mu.Unlock()
	var errs []error
	for _, l := range locks {
		errs = append(errs, l.Unlock(ctx))
	}
	lk.mu.Lock()
	idle := lk.idle
	lk.idle = nil
	lk.mu.Unlock()
	for _, leases := range idle {
		for _, lease := range leases {
			errs = append(errs, lease.release(ctx))
		}
	}
	return errors.Join(errs...)
}

// takeLease returns a live idle lease of ttl, or nil.
func (lk *Locker) takeLease(ttl time.Duration) *heldLease {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	sec := seconds(ttl)
	for leases := lk.idle[sec]; len(leases) > 0; leases = lk.idle[sec] {
		lease := leases[len(leases)-1]
		lk.idle[sec] = leases[:len(leases)-1]
		if !lease.lost() {
			return lease
		}
	}
	return nil
}

// keepLease pools a lease whose lock was released cleanly; it reports false
// (and the caller revokes it) when the pool is full or the Locker closed.
func (lk *Locker) keepLease(lease *heldLease) bool {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	sec := seconds(lease.ttl)
	if lk.closed || lease.lost() || len(lk.idle[sec]) >= poolPerTTL {
		return false
	}
	if lk.idle == nil {
		lk.idle = map[int64][]*heldLease{}
	}
	lk.idle[sec] = append(lk.idle[sec], lease)
	return true
}

func (lk *Locker) acquire(ctx context.Context, op, key string, ttl time.Duration, wait bool) (*Lock, error) {
	if err := validateName("key", key); err != nil {
		return nil, err
	}
	if err := validateTTL("ttl", ttl); err != nil {
		return nil, err
	}
	for {
		lease := lk.takeLease(ttl)
		if lease == nil {
			var err error
			if lease, err = grantLease(ctx, lk.cli, ttl, nil); err != nil {
				return nil, rpcError(op, key, err)
			}
			return lk.acquireWith(ctx, op, key, ttl, wait, lease)
		}
		l, err := lk.acquireWith(ctx, op, key, ttl, wait, lease)
		// A pooled lease can die (revoked, expired) before its watchdog
		// notices; the attempt has released it, so try the next one. The
		// pool is bounded, so this ends with a fresh grant.
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && ctx.Err() == nil {
			continue
		}
		return l, err
	}
}

// acquireWith queues for the lock named key on lease, releasing the lease
// if that fails.
func (lk *Locker) acquireWith(ctx context.Context, op, key string, ttl time.Duration, wait bool, lease *heldLease) (*Lock, error) {
	pfx := lk.prefix + key + "/"
	l := &Lock{locker: lk, name: key}
	l.lease = lease
	l.key = fmt.Sprintf("%s%x", pfx, int64(lease.id))
	l.ctx, l.cancel = context.WithCancel(lease.ctx)

	// Waits end early when the lease dies: a waiter without a lease can
	// never become a valid holder.
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(lease.ctx, cancel)
	err := lk.enqueue(wctx, l, pfx, wait)
	stop()
	cancel()
	if err != nil {
		l.cancel()
		// Revoking the lease deletes our queue key even when the put
		// committed after ctx ended or a delete failed: nothing is left.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), min(ttl, cleanupTimeout))
		rerr := lease.release(cctx)
		ccancel()
		if rerr != nil {
			lk.log.Warn("lock cleanup failed; the key expires with its lease",
				zap.String("lock", key), zap.Duration("ttl", ttl), zap.Error(rerr))
		}
		switch {
		case errors.Is(err, ErrLockHeld):
			return nil, fmt.Errorf("locking: lock %q: %w", key, ErrLockHeld)
		case ctx.Err() == nil && lease.lost():
			return nil, &lifecycle.InfraError{Type: lifecycle.TypeConnection, Component: ModuleName, Op: op,
				Field: key, Message: "lease lost while waiting", Cause: ErrLockLost}
		}
		return nil, rpcError(op, key, err)
	}
	l.stopLostLog = context.AfterFunc(lease.ctx, func() {
		lk.log.Warn("lock lost: lease expired or etcd unreachable",
			zap.String("lock", key), zap.Int64("token", l.rev), zap.String("lease", fmt.Sprintf("%x", int64(lease.id))))
	})
	lk.mu.Lock()
	lk.held[l] = struct{}{}
	lk.mu.Unlock()
	lk.log.Debug("lock acquired", zap.String("lock", key), zap.Int64("token", l.rev))
	return l, nil
}

// enqueue queues l.key under pfx and, if wait, waits until every key created
// before it is gone. It returns ErrLockHeld when !wait and the lock is taken.
func (lk *Locker) enqueue(ctx context.Context, l *Lock, pfx string, wait bool) error {
	// One RPC on the uncontended path: enqueue and read the current owner.
	resp, err := lk.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", 0)).
		Then(clientv3.OpPut(l.key, "", clientv3.WithLease(l.lease.id)),
			clientv3.OpGet(pfx, clientv3.WithFirstCreate()...)).
		Else(clientv3.OpGet(l.key), clientv3.OpGet(pfx, clientv3.WithFirstCreate()...)).
		Commit()
	if err != nil {
		return err
	}
	l.rev = resp.Header.Revision
	if !resp.Succeeded {
		// Only possible if a retried put already landed: our key exists.
		l.rev = resp.Responses[0].GetResponseRange().Kvs[0].CreateRevision
	}
	owner := resp.Responses[1].GetResponseRange().Kvs
	if len(owner) == 0 || owner[0].CreateRevision == l.rev {
		return nil
	}
	if !wait {
		return ErrLockHeld
	}
	if err := waitDeletes(ctx, lk.cli, pfx, l.rev); err != nil {
		return err
	}
	// All earlier keys are gone, but ours may have gone with an expired
	// lease while we waited: check before claiming the lock.
	g, err := lk.cli.Get(ctx, l.key)
	if err != nil {
		return err
	}
	if len(g.Kvs) == 0 || g.Kvs[0].CreateRevision != l.rev {
		return ErrLockLost
	}
	return nil
}

// waitDeletes waits until no key under pfx has a create revision below
// rev, watching only the newest such key each time (no thundering herd).
func waitDeletes(ctx context.Context, cli *clientv3.Client, pfx string, rev int64) error {
	opts := append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(rev-1))
	for {
		resp, err := cli.Get(ctx, pfx, opts...)
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		if err := waitDelete(ctx, cli, string(resp.Kvs[0].Key), resp.Header.Revision+1); err != nil {
			return err
		}
	}
}

// waitDelete returns when key is deleted at or after rev, or when the
// watch was compacted past rev (the caller re-reads the prefix then).
func waitDelete(ctx context.Context, cli *clientv3.Client, key string, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range cli.Watch(wctx, key, clientv3.WithRev(rev)) {
		if wr.CompactRevision != 0 {
			return nil
		}
		if err := wr.Err(); err != nil {
			return err
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				return nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch closed while waiting for the lock")
}

// Lock is a held distributed lock. Its methods are safe for concurrent use.
type Lock struct {
	locker *Locker
	name   string
	key    string
	rev    int64
	lease  *heldLease
	ctx    context.Context // ends on Unlock or when the lease is lost
	cancel context.CancelFunc
	// stopLostLog unhooks the "lock lost" warning: a lease lost after
	// Unlock (idle in the pool) is no lock's loss.
	stopLostLog func() bool
	once        sync.Once
	err         error
}

// Name is the lock name given to Acquire.
func (l *Lock) Name() string { return l.name }

// Key is this holder's etcd key (Prefix + name + "/" + lease ID in hex).
func (l *Lock) Key() string { return l.key }

// Token is the fencing token: the create revision of this holder's key.
// Tokens grow strictly from one holder of a lock to the next, so a
// resource that remembers the highest token it has seen can refuse writes
// from a holder that was paused past its lease.
func (l *Lock) Token() int64 { return l.rev }

// Done is closed when the lock is no longer held: after Unlock, or when the
// lease is lost (etcd unreachable for most of the TTL, lease revoked, client
// closed). It is closed early, when a quarter of the TTL is still left on
// the last keepalive, so the holder hears of the loss before etcd can hand
// the lock to someone else. Stop working on the protected resource then.
func (l *Lock) Done() <-chan struct{} { return l.ctx.Done() }

// IsOwner is the comparison that holds while this holder owns the lock, for
// callers composing their own transactions.
func (l *Lock) IsOwner() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)
}

// Guard runs ops in one etcd transaction only if this holder still owns the
// lock at the moment the transaction commits, and otherwise returns an
// error matching ErrLockLost with nothing applied. This is the fenced write:
// unlike checking Done and then writing, no other holder can slip in between.
func (l *Lock) Guard(ctx context.Context, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	if l.ctx.Err() != nil {
		return nil, fmt.Errorf("locking: lock %q guard: %w", l.name, ErrLockLost)
	}
	resp, err := l.locker.cli.Txn(ctx).If(l.IsOwner()).Then(ops...).Commit()
	if err != nil {
		return nil, rpcError("lock.guard", l.name, err)
	}
	if !resp.Succeeded {
		return resp, fmt.Errorf("locking: lock %q guard: %w", l.name, ErrLockLost)
	}
	return resp, nil
}

// Unlock releases the lock by deleting its key, so the next waiter gets the
// lock at once, and keeps the lease for a later Acquire (see Locker). When
// the delete fails or the lease is lost, the lease is revoked instead, which
// deletes the key as well. Unlocking a lost lock is not an error; calling
// Unlock again returns the first call's result. If etcd cannot be reached,
// the error says so and the lock frees itself when the lease expires.
func (l *Lock) Unlock(ctx context.Context) error {
	l.once.Do(func() {
		l.stopLostLog()
		l.cancel()
		l.locker.mu.Lock()
		delete(l.locker.held, l)
		l.locker.mu.Unlock()
		if !l.lease.lost() {
			// Only a delete that found our key proves the lease was alive
			// at that revision; otherwise it may be revoked or expired
			// without the watchdog knowing yet, and must not be reused.
			resp, err := l.locker.cli.Txn(ctx).If(l.IsOwner()).Then(clientv3.OpDelete(l.key)).Commit()
			if err == nil && resp.Succeeded && l.locker.keepLease(l.lease) {
				l.locker.log.Debug("lock released", zap.String("lock", l.name), zap.Int64("token", l.rev))
				return
			}
		}
		if err := l.lease.release(ctx); err != nil {
			l.err = rpcError("lock.unlock", l.name, err)
			return
		}
		l.locker.log.Debug("lock released", zap.String("lock", l.name), zap.Int64("token", l.rev))
	})
	return l.err
}

// heldLease is a lease kept alive for one lock, leadership or instance ID.
// Its ctx is cancelled when the lease is released or considered lost.
//
// Why not concurrency.Session: the client reaps a silent keepalive only on
// a one-second poll after the full TTL, while etcd may expire the lease a
// round trip after the last keepalive it saw; between the two, etcd can
// hand the lock or ID to someone else while the old holder still believes
// it has it. The watchdog here declares the lease lost with a quarter of
// the TTL to spare instead.
type heldLease struct {
	cli    *clientv3.Client
	id     clientv3.LeaseID
	ttl    time.Duration // as requested: the pool key
	ctx    context.Context
	cancel context.CancelFunc
	stopKA context.CancelFunc
	exited chan struct{}
	state  atomic.Int32
	onLost func(clientv3.LeaseID)
}

const (
	leaseLive int32 = iota
	leaseLost
	leaseReleased
)

// grantLease grants a lease of ttl and keeps it alive until released or lost;
// onLost (may be nil) runs once if it is lost rather than released.
func grantLease(ctx context.Context, cli *clientv3.Client, ttl time.Duration, onLost func(clientv3.LeaseID)) (*heldLease, error) {
	// The lease cannot expire on the server before ttl after this instant,
	// because the grant is processed after the request is sent.
	sent := time.Now()
	resp, err := cli.Grant(ctx, seconds(ttl))
	if err != nil {
		return nil, err
	}
	kctx, stopKA := context.WithCancel(cli.Ctx())
	kch, err := cli.KeepAlive(kctx, resp.ID)
	if err != nil {
		stopKA()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(ttl, cleanupTimeout))
		_, _ = cli.Revoke(cctx, resp.ID)
		cancel()
		return nil, err
	}
	l := &heldLease{cli: cli, id: resp.ID, ttl: ttl, stopKA: stopKA, exited: make(chan struct{}), onLost: onLost}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	granted := time.Duration(resp.TTL) * time.Second
	go l.watch(kch, sent, granted)
	return l, nil
}

// watch tracks keepalive answers and declares the lease lost when none has
// come for three quarters of the TTL. It exits on loss or release.
func (l *heldLease) watch(kch <-chan *clientv3.LeaseKeepAliveResponse, start time.Time, ttl time.Duration) {
	defer close(l.exited)
	timer := time.NewTimer(time.Until(start.Add(ttl - lossMargin(ttl))))
	defer timer.Stop()
	for {
		select {
		case r, ok := <-kch:
			if !ok {
				// Closed by the client: the lease expired, or the client closed.
				l.lose()
				return
			}
			// Measured from receipt, the margin also covers the trip back.
			t := time.Duration(r.TTL) * time.Second
			timer.Reset(t - lossMargin(t))
		case <-timer.C:
			l.lose()
			return
		case <-l.ctx.Done():
			return
		}
	}
}

// lossMargin is how long before the lease's expiry its holder is told it is
// lost: a quarter of the TTL, which the client's keepalive every third of
// the TTL leaves room for.
func lossMargin(ttl time.Duration) time.Duration { return ttl / 4 }

func (l *heldLease) lose() {
	if l.state.CompareAndSwap(leaseLive, leaseLost) {
		// Stop refreshing: a holder told it lost the lease must not keep
		// it alive if etcd comes back, or the key would outlive the belief.
		l.stopKA()
		l.cancel()
		if l.onLost != nil {
			l.onLost(l.id)
		}
	}
}

func (l *heldLease) lost() bool { return l.state.Load() == leaseLost }

// release stops the keepalive and revokes the lease, deleting every key on
// it. A lease etcd no longer knows is already gone, which is fine.
func (l *heldLease) release(ctx context.Context) error {
	l.state.CompareAndSwap(leaseLive, leaseReleased)
	l.stopKA()
	l.cancel()
	<-l.exited
	_, err := l.cli.Revoke(ctx, l.id)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return err
	}
	return nil
}

// seconds rounds ttl up to whole seconds, the unit of etcd leases.
func seconds(ttl time.Duration) int64 { return int64((ttl + time.Second - 1) / time.Second) }

// MinTTL is the shortest lease TTL of a lock, a leadership or an ID.
const MinTTL = time.Second

func validateTTL(field string, ttl time.Duration) error {
	if ttl < MinTTL {
		return lifecycle.ValidationError(ModuleName, field,
			fmt.Sprintf("must be at least %s because etcd leases count whole seconds, got %s", MinTTL, ttl))
	}
	return nil
}

// validateName refuses names that would nest one lock or election inside
// another's key range: "a" and "a/b" would queue under the same prefix.
func validateName(field, name string) error {
	switch {
	case name == "":
		return lifecycle.ValidationError(ModuleName, field, "must not be empty")
	case strings.Contains(name, "/"):
		return lifecycle.ValidationError(ModuleName, field,
			fmt.Sprintf("%q must not contain '/' (one name must not be a key prefix of another; use ':' to nest)", name))
	}
	return nil
}

// rpcError wraps a failed etcd call on key: TIMEOUT when the caller's ctx
// ended (errors.Is still finds context.Canceled or DeadlineExceeded),
// CONNECTION otherwise.
func rpcError(op, key string, err error) error {
	typ, msg := lifecycle.TypeConnection, "etcd request failed"
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		typ, msg = lifecycle.TypeTimeout, "context ended"
	}
	return &lifecycle.InfraError{Type: typ, Component: ModuleName, Op: op, Field: key, Message: msg, Cause: err}
}
