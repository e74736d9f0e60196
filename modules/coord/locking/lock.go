package locking

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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
// instead of three (grant, put, revoke). A pooled lease costs one renewal
// per quarter of its TTL; Close revokes them.
type Locker struct {
	cli    *clientv3.Client
	log    *zap.Logger
	prefix string
	cfg    *settings

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
	return &Locker{cli: cli, log: o.log, prefix: normalizePrefix(cfg.Locks.Prefix), cfg: newSettings(cfg), held: make(map[*Lock]struct{})}, nil
}

// releaseCtx bounds a release by the configured ReleaseTimeout, detached
// from ctx.
func (lk *Locker) releaseCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return releaseCtx(ctx, lk.cfg.get().ReleaseTimeout.Std())
}

// Prefix is the key prefix the locks live under.
func (lk *Locker) Prefix() string { return lk.prefix }

// Acquire blocks until this caller holds the lock named key, or ctx ends.
// ttl is the lease TTL: how long the lock survives its holder going silent
// (whole seconds, at least MinTTL; a fraction is rounded up).
//
// A waiter whose lease is lost while it waits (etcd unreachable for most of
// the TTL) queues again on a fresh lease, behind the waiters that kept
// theirs. A waiter whose ctx ends removes its queue key by revoking its
// lease before returning, so it leaves nothing behind; if etcd cannot be
// reached then, the key expires with the lease within ttl.
func (lk *Locker) Acquire(ctx context.Context, key string, ttl time.Duration) (*Lock, error) {
	return lk.acquire(ctx, "lock.acquire", key, ttl, true)
}

// TryAcquire takes the lock named key if it is free right now and returns
// an error matching ErrLockHeld if another holder has it. It never waits
// for the lock (only for the two RPCs it makes).
func (lk *Locker) TryAcquire(ctx context.Context, key string, ttl time.Duration) (*Lock, error) {
	return lk.acquire(ctx, "lock.try_acquire", key, ttl, false)
}

// Close releases every lock this Locker still holds and revokes its idle
// leases, for shutdown: peers waiting on them get them now instead of after
// the TTL. The releases run side by side, each on its own context bounded
// by ReleaseTimeout (see Unlock), so Close takes at most that long even
// with etcd down. Locks remain usable objects; Unlock on them afterwards
// returns Close's result for them. Close is idempotent.
func (lk *Locker) Close(ctx context.Context) error {
	lk.mu.Lock()
	lk.closed = true
	locks := make([]*Lock, 0, len(lk.held))
	for l := range lk.held {
		locks = append(locks, l)
	}
	idle := lk.idle
	lk.idle = nil
	lk.mu.Unlock()
	errs := make(chan error, len(locks)+4*len(idle))
	var wg sync.WaitGroup
	for _, l := range locks {
		wg.Go(func() { errs <- l.Unlock(ctx) })
	}
	for _, leases := range idle {
		for _, lease := range leases {
			wg.Go(func() {
				rctx, cancel := lk.releaseCtx(ctx)
				defer cancel()
				errs <- lease.release(rctx)
			})
		}
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
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
		pooled := true
		lease := lk.takeLease(ttl)
		if lease == nil {
			pooled = false
			var err error
			if lease, err = grantLease(ctx, lk.cli, ttl, nil); err != nil {
				return nil, rpcError(op, key, err)
			}
		}
		l, err := lk.acquireWith(ctx, op, key, ttl, wait, lease)
		switch {
		case err == nil || ctx.Err() != nil:
			return l, err
		case pooled && errors.Is(err, rpctypes.ErrLeaseNotFound):
			// A pooled lease can die (revoked, expired) before its renewal
			// notices; the attempt has released it, so try the next one.
			// The pool is bounded, so this ends with a fresh grant.
			continue
		case wait && errors.Is(err, ErrLockLost):
			// The lease died while we waited (etcd unreachable for most of
			// the TTL): queue again on a fresh one.
			lk.log.Info("lease lost while waiting for the lock; queueing again",
				zap.String("lock", key), zap.Duration("ttl", ttl))
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
		cctx, ccancel := lk.releaseCtx(ctx)
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
			zap.String("lock", key), zap.Int64("token", l.rev), zap.String("lease", leaseHex(lease.id)))
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
// lease is lost (no renewal confirmed for 3/4 of the TTL, lease revoked,
// client closed). By the lease rule (see MinTTL) it closes at least a
// quarter of the TTL before etcd can expire the lease, so the holder hears
// of the loss before anyone else can hold the lock. Stop working on the
// protected resource then.
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
// deletes the key as well.
//
// The release runs on a context of its own, detached from ctx and bounded by
// the Locker's ReleaseTimeout, so `defer lock.Unlock(reqCtx)` releases even
// when reqCtx has timed out. If etcd cannot be reached within that time,
// the error says so and the lock frees itself when the lease expires (its
// renewals have stopped). Unlocking a lost lock is not an error; calling
// Unlock again does nothing and returns the first call's result.
func (l *Lock) Unlock(ctx context.Context) error {
	l.once.Do(func() {
		ctx, cancel := l.locker.releaseCtx(ctx)
		defer cancel()
		l.stopLostLog()
		l.cancel()
		l.locker.mu.Lock()
		delete(l.locker.held, l)
		l.locker.mu.Unlock()
		if !l.lease.lost() {
			// Only a delete that found our key proves the lease was alive
			// at that revision; otherwise it may be revoked or expired
			// without its renewals knowing yet, and must not be reused.
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

// seconds rounds ttl up to whole seconds, the unit of etcd leases.
func seconds(ttl time.Duration) int64 { return int64((ttl + time.Second - 1) / time.Second) }

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

// configure sets the config the fx module loaded: the prefix (fixed from
// then on) and the live fields. The module calls it once, in the Locker's
// OnStart, which runs before the hooks of anything that uses the Locker.
func (lk *Locker) configure(c Config) {
	lk.prefix = normalizePrefix(c.Locks.Prefix)
	lk.cfg.set(c)
}
