package locking

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MinTTL is the shortest lease TTL of a lock, a leadership or an instance
// ID. The lease rule (see heldLease) leaves a quarter of the TTL between a
// holder being told it lost the lease and etcd being able to expire it: at
// 2s that is 500ms, and a production etcd (1s election timeout) raises any
// shorter lease to about this anyway.
const MinTTL = 2 * time.Second

// renewInterval is how often a lease is renewed: every quarter of its TTL.
func renewInterval(ttl time.Duration) time.Duration { return ttl / 4 }

// lossMargin is how long before the lease can expire on the server its
// holder is told it is lost: a quarter of the TTL.
func lossMargin(ttl time.Duration) time.Duration { return ttl / 4 }

// renewRetryPause separates renewal attempts after one failed, so a
// renewal that fails at once (no leader yet) is not retried in a tight loop.
const renewRetryPause = 25 * time.Millisecond

// heldLease is a lease kept alive for one lock, leadership or instance ID,
// by a goroutine of its own. Its ctx is cancelled when the lease is
// released or considered lost.
//
// The lease rule: a renewal is sent every TTL/4; a failed one is retried
// every 25ms. The lease is declared lost when no renewal has been confirmed
// for 3/4 of the TTL, counted from the moment the last confirmed renewal was
// sent (etcd renewed it after that moment, so it cannot expire before that
// moment plus the TTL). So a lease rides out a stall of up to half its TTL
// (two renewals in a row may fail), and its holder hears of a loss at least
// TTL/4 before etcd can expire it and hand the lock, leadership or ID to
// someone else.
//
// Why not clientv3's KeepAlive (or concurrency.Session on it): it renews on
// a fixed 500ms tick at TTL/3, re-opens a broken stream only after 500ms,
// and gives up only after the whole TTL without an answer, while etcd may
// expire the lease one round trip after the last renewal it saw: between
// the two, etcd can hand the lock to someone else while the old holder still
// believes it has it.
type heldLease struct {
	cli    *clientv3.Client
	id     clientv3.LeaseID
	ttl    time.Duration // as requested: the pool key
	ctx    context.Context
	cancel context.CancelFunc
	stop   context.CancelFunc // ends the renewals
	exited chan struct{}
	state  atomic.Int32
	onLost func(clientv3.LeaseID)
}

const (
	leaseLive int32 = iota
	leaseLost
	leaseReleased
)

// grantLease grants a lease of ttl and keeps it alive until released or
// lost; onLost (may be nil) runs once if it is lost rather than released.
func grantLease(ctx context.Context, cli *clientv3.Client, ttl time.Duration, onLost func(clientv3.LeaseID)) (*heldLease, error) {
	// The lease cannot expire on the server before ttl after this instant,
	// because the grant is processed after the request is sent.
	sent := time.Now()
	resp, err := cli.Grant(ctx, seconds(ttl))
	if err != nil {
		return nil, err
	}
	// Renewals end with the client, so a closed client never leaves a
	// goroutine behind.
	rctx, stop := context.WithCancel(cli.Ctx())
	l := &heldLease{cli: cli, id: resp.ID, ttl: ttl, stop: stop, exited: make(chan struct{}), onLost: onLost}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.renew(rctx, sent, time.Duration(resp.TTL)*time.Second)
	return l, nil
}

// renew keeps the lease alive by the lease rule until rctx ends (release or
// client closed) or the lease is lost.
func (l *heldLease) renew(rctx context.Context, confirmed time.Time, ttl time.Duration) {
	defer close(l.exited)
	deadline := confirmed.Add(ttl - lossMargin(ttl))
	next := confirmed.Add(renewInterval(ttl))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		timer.Reset(time.Until(earliest(next, deadline)))
		select {
		case <-rctx.Done():
			if l.cli.Ctx().Err() != nil {
				// The client closed under a held lease: nothing can prove
				// it any more.
				l.lose()
			}
			return
		case <-timer.C:
		}
		if !time.Now().Before(deadline) {
			l.lose()
			return
		}
		sent := time.Now()
		actx, cancel := context.WithDeadline(rctx, earliest(deadline, sent.Add(renewInterval(ttl))))
		resp, err := l.cli.KeepAliveOnce(actx, l.id)
		cancel()
		switch {
		case rctx.Err() != nil:
			continue // released or client closed: the select above decides
		case err == nil:
			ttl = time.Duration(resp.TTL) * time.Second
			deadline = sent.Add(ttl - lossMargin(ttl))
			next = sent.Add(renewInterval(ttl))
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			// Expired or revoked: etcd says so, no need to wait.
			l.lose()
			return
		default:
			next = time.Now().Add(renewRetryPause)
		}
	}
}

func (l *heldLease) lose() {
	if l.state.CompareAndSwap(leaseLive, leaseLost) {
		// Stop renewing: a holder told it lost the lease must not keep it
		// alive if etcd answers again, or the key would outlive the belief.
		l.stop()
		l.cancel()
		if l.onLost != nil {
			l.onLost(l.id)
		}
	}
}

func (l *heldLease) lost() bool { return l.state.Load() == leaseLost }

// release stops the renewals and revokes the lease, deleting every key on
// it. A lease etcd no longer knows is already gone, which is fine.
func (l *heldLease) release(ctx context.Context) error {
	l.state.CompareAndSwap(leaseLive, leaseReleased)
	l.stop()
	l.cancel()
	<-l.exited
	_, err := l.cli.Revoke(ctx, l.id)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return err
	}
	return nil
}

// releaseCtx is the context a release runs on: detached from the caller's
// (a release after a timed-out request must still happen) and bounded by
// timeout (if etcd does not answer, the lease expires on its own).
func releaseCtx(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}

func leaseHex(id clientv3.LeaseID) string { return fmt.Sprintf("%x", int64(id)) }

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
