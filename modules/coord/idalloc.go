package coord

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// ErrIDsExhausted is returned by AcquireID when every ID in 1..Max is held.
var ErrIDsExhausted = errors.New("coord: no free instance ID")

// Defaults of IDAllocatorOptions.
const (
	// DefaultIDMax fits a 10-bit snowflake worker ID (0 stays unused so a
	// zero value is never mistaken for an allocated ID).
	DefaultIDMax = 1023
	// DefaultIDTTL is how long an ID outlives a silent holder.
	DefaultIDTTL = 10 * time.Second
	// idMaxLimit bounds Max: every AcquireID lists the held IDs.
	idMaxLimit = 1 << 16
	// idMaxAttempts bounds retries when peers keep taking the ID we chose.
	idMaxAttempts = 64
)

// IDAllocatorOptions tune NewIDAllocator.
type IDAllocatorOptions struct {
	// Service names the ID space; the default Prefix is "/ids/{Service}/".
	// Required unless Prefix is set.
	Service string
	// Prefix is the etcd key prefix of the ID space; ID n lives at Prefix+n.
	Prefix string
	// Max is the largest ID handed out; IDs are 1..Max. Default 1023.
	Max int
	// TTL is the lease TTL holding each ID (whole seconds, at least 1s).
	// Default 10s. A holder that goes silent keeps its ID this long.
	TTL time.Duration
	// Holder is written as the value of the ID key so operators can see who
	// holds it. Default "hostname:pid".
	Holder string
}

// IDAllocator hands out small unique integers (snowflake worker IDs, shard
// slots) held by leases: an ID is free again as soon as its holder releases
// it or its lease expires, and etcd never lets two live leases hold it.
type IDAllocator struct {
	cli  *clientv3.Client
	log  *zap.Logger
	opts IDAllocatorOptions

	mu   sync.Mutex
	held map[*InstanceID]struct{}
}

// NewIDAllocator returns an allocator for the ID space opts describes. It
// does no I/O.
func NewIDAllocator(cli *clientv3.Client, log *zap.Logger, opts IDAllocatorOptions) (*IDAllocator, error) {
	if cli == nil {
		return nil, lifecycle.ValidationError(component, "client", "etcd client is nil")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if opts.Prefix == "" {
		if err := lkValidateName("service", opts.Service); err != nil {
			return nil, err
		}
		opts.Prefix = "/ids/" + opts.Service + "/"
	}
	prefix, err := lkPrefix(opts.Prefix, "")
	if err != nil {
		return nil, err
	}
	opts.Prefix = prefix
	if opts.Max == 0 {
		opts.Max = DefaultIDMax
	}
	if opts.Max < 1 || opts.Max > idMaxLimit {
		return nil, lifecycle.ValidationError(component, "max",
			fmt.Sprintf("must be between 1 and %d, got %d", idMaxLimit, opts.Max))
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultIDTTL
	}
	if err := lkValidateTTL(opts.TTL); err != nil {
		return nil, err
	}
	if opts.Holder == "" {
		host, _ := os.Hostname()
		opts.Holder = host + ":" + strconv.Itoa(os.Getpid())
	}
	return &IDAllocator{cli: cli, log: log, opts: opts, held: make(map[*InstanceID]struct{})}, nil
}

// Options returns the options in effect, defaults applied.
func (a *IDAllocator) Options() IDAllocatorOptions { return a.opts }

// AcquireID takes the smallest free ID in 1..Max under a new lease. It
// returns an error matching ErrIDsExhausted when all are held. Each claim is
// a transaction that succeeds only if the ID's key does not exist, so an ID
// never has two live holders even when many instances start at once.
func (a *IDAllocator) AcquireID(ctx context.Context) (*InstanceID, error) {
	lease, err := lkGrant(ctx, a.cli, a.opts.TTL, func(id clientv3.LeaseID) {
		a.log.Warn("coord: instance ID lost: lease expired or etcd unreachable",
			zap.String("prefix", a.opts.Prefix), zap.String("lease", fmt.Sprintf("%x", int64(id))))
	})
	if err != nil {
		return nil, lkRPCError("id.acquire", a.opts.Prefix, err)
	}
	id, err := a.idClaim(ctx, lease)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(a.opts.TTL, lkCleanupTimeout))
		if rerr := lease.release(cctx); rerr != nil {
			a.log.Warn("coord: instance ID cleanup failed; its lease expires on its own",
				zap.String("prefix", a.opts.Prefix), zap.Error(rerr))
		}
		cancel()
		return nil, err
	}
	iid := &InstanceID{alloc: a, id: id, key: a.idKey(id), lease: lease}
	a.mu.Lock()
	a.held[iid] = struct{}{}
	a.mu.Unlock()
	a.log.Info("coord: instance ID acquired", zap.String("prefix", a.opts.Prefix), zap.Int("id", id))
	return iid, nil
}

// idClaim lists the held IDs and claims the smallest free one, retrying with
// the fresh listing a failed claim returns.
func (a *IDAllocator) idClaim(ctx context.Context, lease *lkLease) (int, error) {
	resp, err := a.cli.Get(ctx, a.opts.Prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, lkRPCError("id.acquire", a.opts.Prefix, err)
	}
	kvs := resp.Kvs
	for range idMaxAttempts {
		id := a.idSmallestFree(kvs)
		if id == 0 {
			return 0, fmt.Errorf("coord: instance IDs under %q (1..%d): %w", a.opts.Prefix, a.opts.Max, ErrIDsExhausted)
		}
		key := a.idKey(id)
		tr, err := a.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, a.opts.Holder, clientv3.WithLease(lease.id))).
			Else(clientv3.OpGet(a.opts.Prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())).
			Commit()
		if err != nil {
			return 0, lkRPCError("id.acquire", key, err)
		}
		if tr.Succeeded {
			return id, nil
		}
		kvs = tr.Responses[0].GetResponseRange().Kvs
	}
	return 0, lifecycle.NewError(lifecycle.TypeTimeout, component, "id.acquire",
		fmt.Sprintf("gave up after %d claims lost to peers under %q", idMaxAttempts, a.opts.Prefix))
}

// idSmallestFree returns the smallest ID in 1..Max with no key, or 0.
func (a *IDAllocator) idSmallestFree(kvs []*mvccpb.KeyValue) int {
	used := make([]bool, a.opts.Max+1)
	for _, kv := range kvs {
		n, err := strconv.Atoi(strings.TrimPrefix(string(kv.Key), a.opts.Prefix))
		if err == nil && n >= 1 && n <= a.opts.Max {
			used[n] = true
		}
	}
	for n := 1; n <= a.opts.Max; n++ {
		if !used[n] {
			return n
		}
	}
	return 0
}

func (a *IDAllocator) idKey(id int) string { return a.opts.Prefix + strconv.Itoa(id) }

// Close releases every ID this allocator still holds, for shutdown.
func (a *IDAllocator) Close(ctx context.Context) error {
	a.mu.Lock()
	ids := make([]*InstanceID, 0, len(a.held))
	for i := range a.held {
		ids = append(ids, i)
	}
	a.mu.Unlock()
	var errs []error
	for _, i := range ids {
		errs = append(errs, i.Release(ctx))
	}
	return errors.Join(errs...)
}

// InstanceID is an ID held under a lease. Its methods are safe for
// concurrent use.
type InstanceID struct {
	alloc *IDAllocator
	id    int
	key   string
	lease *lkLease
	once  sync.Once
	err   error
}

// ID is the allocated integer, in 1..Max.
func (i *InstanceID) ID() int { return i.id }

// Key is the etcd key holding the ID.
func (i *InstanceID) Key() string { return i.key }

// Done is closed when the ID is no longer this holder's: after Release, or
// when the lease is lost (told a quarter of the TTL before etcd can give the
// ID to someone else, see Lock.Done). Stop using the ID then, e.g. stop
// minting snowflake IDs, and acquire a new one.
func (i *InstanceID) Done() <-chan struct{} { return i.lease.ctx.Done() }

// Release frees the ID at once by revoking its lease. Releasing a lost ID
// is not an error; calling Release again returns the first call's result.
func (i *InstanceID) Release(ctx context.Context) error {
	i.once.Do(func() {
		a := i.alloc
		a.mu.Lock()
		delete(a.held, i)
		a.mu.Unlock()
		if err := i.lease.release(ctx); err != nil {
			i.err = lkRPCError("id.release", i.key, err)
			return
		}
		a.log.Info("coord: instance ID released", zap.String("prefix", a.opts.Prefix), zap.Int("id", i.id))
	})
	return i.err
}
