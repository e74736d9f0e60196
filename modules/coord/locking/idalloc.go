package locking

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// ErrIDsExhausted is returned by AcquireID when every ID in 1..Max is held.
var ErrIDsExhausted = errors.New("locking: no free instance ID")

// maxClaimAttempts bounds retries when peers keep taking the ID we chose.
const maxClaimAttempts = 64

// IDAllocator hands out small unique integers (snowflake worker IDs, shard
// slots) held by leases: an ID is free again as soon as its holder releases
// it or its lease expires, and etcd never lets two live leases hold it.
type IDAllocator struct {
	cli     *clientv3.Client
	log     *zap.Logger
	service string
	prefix  string
	max     int
	holder  string
	cfg     *settings // TTL and release timeout, read at each use

	mu   sync.Mutex
	held map[*InstanceID]struct{}
}

// NewIDAllocator returns an allocator for the ID space of service with the
// ids settings of cfg (keys under cfg.IDs.Prefix, or "/ids/{service}/" when
// that is empty), or a VALIDATION error naming the bad field. It does no I/O.
func NewIDAllocator(cli *clientv3.Client, service string, cfg Config, opts ...Option) (*IDAllocator, error) {
	if cli == nil {
		return nil, lifecycle.ValidationError(ModuleName, "client", "etcd client is nil")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	prefix, err := idPrefix(cfg, service)
	if err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	return &IDAllocator{
		cli: cli, log: o.log, service: service,
		prefix: prefix, max: cfg.IDs.Max, holder: o.holder, cfg: newSettings(cfg),
		held: make(map[*InstanceID]struct{}),
	}, nil
}

// idPrefix is cfg's ID prefix, or "/ids/{service}/" when it is empty.
func idPrefix(cfg Config, service string) (string, error) {
	if cfg.IDs.Prefix != "" {
		return normalizePrefix(cfg.IDs.Prefix), nil
	}
	if err := validateName("service", service); err != nil {
		return "", err
	}
	return "/ids/" + service + "/", nil
}

// configure sets the config the fx module loaded: the prefix and range
// (fixed from then on) and the live fields. The module calls it once, in
// the allocator's OnStart, which runs before the hooks of anything that
// uses the allocator.
func (a *IDAllocator) configure(c Config) error {
	prefix, err := idPrefix(c, a.service)
	if err != nil {
		return err
	}
	a.prefix, a.max = prefix, c.IDs.Max
	a.cfg.set(c)
	return nil
}

// Prefix is the key prefix of the ID space: ID n lives at Prefix+n.
func (a *IDAllocator) Prefix() string { return a.prefix }

// Max is the largest ID handed out.
func (a *IDAllocator) Max() int { return a.max }

// Holder is the value written under each ID this allocator holds.
func (a *IDAllocator) Holder() string { return a.holder }

func (a *IDAllocator) releaseCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return releaseCtx(ctx, a.cfg.get().ReleaseTimeout.Std())
}

// AcquireID takes the smallest free ID in 1..Max under a new lease. It
// returns an error matching ErrIDsExhausted when all are held. Each claim is
// a transaction that succeeds only if the ID's key does not exist, so an ID
// never has two live holders even when many instances start at once.
func (a *IDAllocator) AcquireID(ctx context.Context) (*InstanceID, error) {
	lease, err := grantLease(ctx, a.cli, a.cfg.get().IDs.TTL.Std(), func(id clientv3.LeaseID) {
		a.log.Warn("instance ID lost: lease expired or etcd unreachable",
			zap.String("prefix", a.prefix), zap.String("lease", leaseHex(id)))
	})
	if err != nil {
		return nil, rpcError("id.acquire", a.prefix, err)
	}
	id, err := a.claim(ctx, lease)
	if err != nil {
		cctx, cancel := a.releaseCtx(ctx)
		if rerr := lease.release(cctx); rerr != nil {
			a.log.Warn("instance ID cleanup failed; its lease expires on its own",
				zap.String("prefix", a.prefix), zap.Error(rerr))
		}
		cancel()
		return nil, err
	}
	iid := &InstanceID{alloc: a, id: id, key: a.keyOf(id), lease: lease}
	a.mu.Lock()
	a.held[iid] = struct{}{}
	a.mu.Unlock()
	a.log.Info("instance ID acquired", zap.String("prefix", a.prefix), zap.Int("id", id))
	return iid, nil
}

// claim lists the held IDs and claims the smallest free one, retrying with
// the fresh listing a failed claim returns.
func (a *IDAllocator) claim(ctx context.Context, lease *heldLease) (int, error) {
	resp, err := a.cli.Get(ctx, a.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, rpcError("id.acquire", a.prefix, err)
	}
	kvs := resp.Kvs
	for range maxClaimAttempts {
		id := a.smallestFree(kvs)
		if id == 0 {
			return 0, fmt.Errorf("locking: instance IDs under %q (1..%d): %w", a.prefix, a.max, ErrIDsExhausted)
		}
		key := a.keyOf(id)
		tr, err := a.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, a.holder, clientv3.WithLease(lease.id))).
			Else(clientv3.OpGet(a.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())).
			Commit()
		if err != nil {
			return 0, rpcError("id.acquire", key, err)
		}
		if tr.Succeeded {
			return id, nil
		}
		kvs = tr.Responses[0].GetResponseRange().Kvs
	}
	return 0, lifecycle.NewError(lifecycle.TypeTimeout, ModuleName, "id.acquire",
		fmt.Sprintf("gave up after %d claims lost to peers under %q", maxClaimAttempts, a.prefix))
}

// smallestFree returns the smallest ID in 1..Max with no key, or 0.
func (a *IDAllocator) smallestFree(kvs []*mvccpb.KeyValue) int {
	used := make([]bool, a.max+1)
	for _, kv := range kvs {
		n, err := strconv.Atoi(strings.TrimPrefix(string(kv.Key), a.prefix))
		if err == nil && n >= 1 && n <= a.max {
			used[n] = true
		}
	}
	for n := 1; n <= a.max; n++ {
		if !used[n] {
			return n
		}
	}
	return 0
}

func (a *IDAllocator) keyOf(id int) string { return a.prefix + strconv.Itoa(id) }

// Close releases every ID this allocator still holds, for shutdown, side
// by side and each as Release does (detached from ctx, bounded by the
// release timeout). It is idempotent.
func (a *IDAllocator) Close(ctx context.Context) error {
	a.mu.Lock()
	ids := make([]*InstanceID, 0, len(a.held))
	for i := range a.held {
		ids = append(ids, i)
	}
	a.mu.Unlock()
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for n, i := range ids {
		wg.Go(func() { errs[n] = i.Release(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// InstanceID is an ID held under a lease. Its methods are safe for
// concurrent use.
type InstanceID struct {
	alloc *IDAllocator
	id    int
	key   string
	lease *heldLease
	once  sync.Once
	err   error
}

// ID is the allocated integer, in 1..Max.
func (i *InstanceID) ID() int { return i.id }

// Key is the etcd key holding the ID.
func (i *InstanceID) Key() string { return i.key }

// Done is closed when the ID is no longer this holder's: after Release, or
// when the lease is lost (at least a quarter of the TTL before etcd can give
// the ID to someone else, see MinTTL). Stop using the ID then, e.g. stop
// minting snowflake IDs, and acquire a new one.
func (i *InstanceID) Done() <-chan struct{} { return i.lease.ctx.Done() }

// Release frees the ID at once by revoking its lease, on a context detached
// from ctx and bounded by the release timeout (so it frees the ID even when
// ctx has ended). Releasing a lost ID is not an error; calling Release
// again does nothing and returns the first call's result.
func (i *InstanceID) Release(ctx context.Context) error {
	i.once.Do(func() {
		a := i.alloc
		ctx, cancel := a.releaseCtx(ctx)
		defer cancel()
		a.mu.Lock()
		delete(a.held, i)
		a.mu.Unlock()
		if err := i.lease.release(ctx); err != nil {
			i.err = rpcError("id.release", i.key, err)
			return
		}
		a.log.Info("instance ID released", zap.String("prefix", a.prefix), zap.Int("id", i.id))
	})
	return i.err
}
