package locking

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// Errors of leader election, for errors.Is.
var (
	// ErrNoLeader is returned by Leader when nobody leads the election.
	ErrNoLeader = errors.New("locking: election has no leader")
	// ErrNotLeader is returned by Guard when this candidate does not lead.
	ErrNotLeader = errors.New("locking: not the leader")
)

// closedCh is the Done channel of a candidate that does not lead.
var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Election is one candidate in a leader election on etcd. The candidate
// whose key was created first leads; the others queue behind it in order.
// Every term (from Campaign to Resign or loss) runs on a fresh lease of the
// election's TTL, so a lost term leaves nothing behind that could block the
// next one.
//
// Keys and values follow etcd's concurrency.Election layout (prefix
// cfg.Election.Prefix+name, one key per candidate lease, value = the candidate's
// announced value), so etcdctl elect and concurrency.Election interoperate.
// It is implemented here rather than wrapped because concurrency.Election
// cleans up a cancelled Campaign with the client's context (which waits
// through an outage) and does not check, after waiting, that its own key
// survived.
type Election struct {
	cli    *clientv3.Client
	log    *zap.Logger
	name   string
	prefix string
	cfg    *settings // TTL and release timeout, read at each use

	campaignMu sync.Mutex // one Campaign at a time

	mu     sync.Mutex
	term   *leadership
	closed bool

	// closing ends in-flight campaigns and observers when Close is called.
	closing context.Context
	close   context.CancelFunc
	wg      sync.WaitGroup
	onClose func() // set by the Elector that made it
}

type leadership struct {
	lease *heldLease
	key   string
	rev   int64
}

// NewElection returns a candidate for the election called name, with the
// election settings of cfg: keys under cfg.Election.Prefix+name+"/", and a
// leadership that survives cfg.Election.TTL of silence. It does no I/O.
func NewElection(cli *clientv3.Client, name string, cfg Config, opts ...Option) (*Election, error) {
	if cli == nil {
		return nil, lifecycle.ValidationError(ModuleName, "client", "etcd client is nil")
	}
	if err := validateName("name", name); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newElection(cli, name, cfg, newSettings(cfg), buildOptions(opts).log), nil
}

// newElection makes a candidate whose live settings come from s (shared by
// every election of an Elector); the prefix is fixed at creation.
func newElection(cli *clientv3.Client, name string, cfg Config, s *settings, log *zap.Logger) *Election {
	e := &Election{cli: cli, log: log, name: name, prefix: normalizePrefix(cfg.Election.Prefix) + name + "/", cfg: s}
	e.closing, e.close = context.WithCancel(context.Background())
	return e
}

func (e *Election) releaseCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return releaseCtx(ctx, e.cfg.get().ReleaseTimeout.Std())
}

// Name is the election's name.
func (e *Election) Name() string { return e.name }

// Campaign blocks until this candidate leads with value, or ctx ends, or
// the election is closed. Each term runs on a fresh lease of the configured
// election TTL. A candidate whose lease is lost while it waits (etcd
// unreachable for most of the TTL) stands again on a fresh lease. A
// campaign that ends without leading removes its candidate key before
// returning. Campaigning while already leading replaces the announced value.
func (e *Election) Campaign(ctx context.Context, value string) error {
	e.campaignMu.Lock()
	defer e.campaignMu.Unlock()

	e.mu.Lock()
	closed, t := e.closed, e.term
	e.mu.Unlock()
	if closed {
		return lifecycle.NewError(lifecycle.TypeValidation, ModuleName, "election.campaign", "election is closed")
	}
	if t != nil && t.lease.ctx.Err() == nil {
		return e.proclaim(ctx, t, value)
	}
	if t != nil {
		// The last term was lost; drop it before standing again.
		_ = e.endTerm(ctx, t)
	}
	for {
		again, err := e.stand(ctx, value)
		if !again {
			return err
		}
		e.log.Info("lease lost while campaigning; standing again", zap.String("election", e.name))
	}
}

// stand runs one campaign on a fresh lease. again reports that the lease
// was lost while waiting, with ctx and the election still open.
func (e *Election) stand(ctx context.Context, value string) (again bool, err error) {
	lease, err := grantLease(ctx, e.cli, e.cfg.get().Election.TTL.Std(), func(id clientv3.LeaseID) {
		e.log.Warn("leadership lost: lease expired or etcd unreachable",
			zap.String("election", e.name), zap.String("lease", leaseHex(id)))
	})
	if err != nil {
		return false, rpcError("election.campaign", e.name, err)
	}
	nt := &leadership{lease: lease, key: e.prefix + leaseHex(lease.id)}

	wctx, cancel := context.WithCancel(ctx)
	stopLost := context.AfterFunc(lease.ctx, cancel)
	stopClose := context.AfterFunc(e.closing, cancel)
	err = e.campaign(wctx, nt, value)
	stopLost()
	stopClose()
	cancel()
	if err == nil {
		e.mu.Lock()
		closed := e.closed
		if !closed {
			e.term = nt
		}
		e.mu.Unlock()
		if !closed {
			e.log.Info("elected leader", zap.String("election", e.name), zap.Int64("rev", nt.rev))
			return false, nil
		}
		err = errors.New("election closed while campaigning")
	}
	// Revoking the lease deletes the candidate key, whatever state the
	// campaign stopped in.
	cctx, ccancel := e.releaseCtx(ctx)
	if rerr := lease.release(cctx); rerr != nil {
		e.log.Warn("campaign cleanup failed; the candidate key expires with its lease",
			zap.String("election", e.name), zap.Error(rerr))
	}
	ccancel()
	switch {
	case ctx.Err() == nil && e.closing.Err() != nil:
		return false, lifecycle.NewError(lifecycle.TypeValidation, ModuleName, "election.campaign", "election is closed")
	case ctx.Err() == nil && lease.lost():
		return true, nil
	}
	return false, rpcError("election.campaign", e.name, err)
}

// campaign puts the candidate key and waits for every older one to go.
func (e *Election) campaign(ctx context.Context, t *leadership, value string) error {
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", 0)).
		Then(clientv3.OpPut(t.key, value, clientv3.WithLease(t.lease.id))).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		// The lease is fresh, so only a retried put of ours can be there.
		return errors.New("candidate key already exists")
	}
	t.rev = resp.Header.Revision
	if err := waitDeletes(ctx, e.cli, e.prefix, t.rev); err != nil {
		return err
	}
	g, err := e.cli.Get(ctx, t.key)
	if err != nil {
		return err
	}
	if len(g.Kvs) == 0 || g.Kvs[0].CreateRevision != t.rev {
		return errors.New("candidate key vanished while waiting: lease lost")
	}
	return nil
}

func (e *Election) proclaim(ctx context.Context, t *leadership, value string) error {
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)).
		Then(clientv3.OpPut(t.key, value, clientv3.WithLease(t.lease.id))).
		Commit()
	if err != nil {
		return rpcError("election.proclaim", e.name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("locking: election %q proclaim: %w", e.name, ErrNotLeader)
	}
	return nil
}

// endTerm forgets t and revokes its lease, on a context detached from ctx
// and bounded by the release timeout.
func (e *Election) endTerm(ctx context.Context, t *leadership) error {
	e.mu.Lock()
	if e.term == t {
		e.term = nil
	}
	e.mu.Unlock()
	ctx, cancel := e.releaseCtx(ctx)
	defer cancel()
	if err := t.lease.release(ctx); err != nil {
		return rpcError("election.resign", e.name, err)
	}
	return nil
}

// Resign gives up leadership: the candidate key is deleted (its lease
// revoked) so the next candidate leads at once. Like Lock.Unlock it runs on
// a context detached from ctx and bounded by the release timeout, so it
// hands over even when ctx has ended. Resigning while not leading does
// nothing. If etcd cannot be reached, leadership still ends here and etcd
// lets the key expire within the TTL.
func (e *Election) Resign(ctx context.Context) error {
	e.mu.Lock()
	t := e.term
	e.mu.Unlock()
	if t == nil {
		return nil
	}
	if err := e.endTerm(ctx, t); err != nil {
		return err
	}
	e.log.Info("resigned leadership", zap.String("election", e.name))
	return nil
}

// IsLeader reports whether this candidate leads and has not lost its lease.
func (e *Election) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.term != nil && e.term.lease.ctx.Err() == nil
}

// Done is closed when this candidate's leadership ends: Resign, Close, or a
// lost lease (told a quarter of the TTL early, see Lock.Done). Call it after
// Campaign returns; while not leading it returns a closed channel.
func (e *Election) Done() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.term == nil {
		return closedCh
	}
	return e.term.lease.ctx.Done()
}

// Leader returns the current leader's value, or an error matching
// ErrNoLeader if nobody leads.
func (e *Election) Leader(ctx context.Context) (string, error) {
	resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithFirstCreate()...)
	if err != nil {
		return "", rpcError("election.leader", e.name, err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("locking: election %q: %w", e.name, ErrNoLeader)
	}
	return string(resp.Kvs[0].Value), nil
}

// Guard runs ops in one etcd transaction only if this candidate still leads
// when it commits, and otherwise returns an error matching ErrNotLeader with
// nothing applied: a fenced write for leader-only work.
func (e *Election) Guard(ctx context.Context, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	e.mu.Lock()
	t := e.term
	e.mu.Unlock()
	if t == nil || t.lease.ctx.Err() != nil {
		return nil, fmt.Errorf("locking: election %q guard: %w", e.name, ErrNotLeader)
	}
	resp, err := e.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)).Then(ops...).Commit()
	if err != nil {
		return nil, rpcError("election.guard", e.name, err)
	}
	if !resp.Succeeded {
		return resp, fmt.Errorf("locking: election %q guard: %w", e.name, ErrNotLeader)
	}
	return resp, nil
}

// Observe sends the leader's value each time the leader or its value
// changes, starting with the current one (nothing while nobody leads). The
// channel is closed when ctx ends or the election is closed; etcd outages
// and compaction are ridden out by re-reading, so a slow or missed event
// never leaves the observer on a stale leader.
func (e *Election) Observe(ctx context.Context) <-chan string {
	ch := make(chan string)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		close(ch)
		return ch
	}
	e.wg.Add(1)
	e.mu.Unlock()
	go e.observe(ctx, ch)
	return ch
}

func (e *Election) observe(ctx context.Context, ch chan<- string) {
	defer e.wg.Done()
	defer close(ch)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.closing, cancel)()

	var lastKey, lastVal string
	backoff := 50 * time.Millisecond
	// emit re-reads the leader and sends it if it changed; it returns the
	// revision read at, or 0 on a failed read.
	emit := func() (int64, bool) {
		resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithFirstCreate()...)
		if err != nil {
			// Keep retrying through an outage, but not on a closed client.
			return 0, ctx.Err() == nil && e.cli.Ctx().Err() == nil
		}
		if len(resp.Kvs) == 0 {
			lastKey = ""
			return resp.Header.Revision, true
		}
		k, v := string(resp.Kvs[0].Key), string(resp.Kvs[0].Value)
		if k == lastKey && v == lastVal {
			return resp.Header.Revision, true
		}
		select {
		case ch <- v:
			lastKey, lastVal = k, v
			return resp.Header.Revision, true
		case <-ctx.Done():
			return 0, false
		}
	}
	for {
		rev, ok := emit()
		if !ok {
			return
		}
		if rev == 0 {
			select {
			case <-time.After(backoff):
				backoff = min(2*backoff, time.Second)
			case <-ctx.Done():
				return
			}
			continue
		}
		backoff = 50 * time.Millisecond
		wctx, wcancel := context.WithCancel(ctx)
		for wr := range e.cli.Watch(wctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if wr.Err() != nil {
				break // compacted or failed: re-read and watch again
			}
			if len(wr.Events) == 0 {
				continue
			}
			if _, ok := emit(); !ok {
				wcancel()
				return
			}
		}
		wcancel()
		if ctx.Err() != nil {
			return
		}
	}
}

// Close resigns if leading, stops campaigns in flight and ends every
// Observe channel. The Election cannot campaign again afterwards.
func (e *Election) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	t := e.term
	e.mu.Unlock()
	e.close()
	if e.onClose != nil {
		e.onClose()
	}
	var err error
	if t != nil {
		err = e.endTerm(ctx, t)
	}
	e.wg.Wait()
	return err
}
