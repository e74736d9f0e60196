package coord

import (
	"context"
	"errors"
	"slices"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// maxTxnOps is etcd's default --max-txn-ops; a Load of more keys is split
// into transactions pinned to the first one's revision.
const maxTxnOps = 128

// Source is config.Source on etcd. Load reads all keys in one transaction, so
// the documents are one consistent snapshot at the returned revision; Watch
// resumes from that revision, so no update between the two is lost. It is
// also a config.RecoveryNotifier: the client's monitor tells a waiting
// config.Value the moment etcd answers again.
type Source struct {
	c *Client
}

var (
	_ config.Source           = (*Source)(nil)
	_ config.RecoveryNotifier = (*Source)(nil)
)

// NewSource returns a Source reading through c.
func NewSource(c *Client) *Source { return &Source{c: c} }

// Recovered implements config.RecoveryNotifier with the client's monitor
// (see Client.Recovered).
func (s *Source) Recovered() <-chan struct{} { return s.c.Recovered() }

// Name implements config.Source.
func (s *Source) Name() string { return "etcd" }

// Load implements config.Source. It is bounded by the client's
// RequestTimeout; a missing key yields a Document with nil Data.
func (s *Source) Load(ctx context.Context, keys ...string) ([]config.Document, int64, error) {
	if s.c.Unreachable() {
		// The monitor is already retrying; waiting out a request timeout
		// here would only delay a degraded boot (one timeout per ModuleName).
		return nil, 0, lifecycle.WrapError(lifecycle.TypeConnection, ModuleName, "load", s.c.LastError(), "etcd unreachable")
	}
	ctx, cancel := s.c.requestCtx(ctx)
	defer cancel()
	docs := make([]config.Document, 0, len(keys))
	var rev int64
	for chunk := range slices.Chunk(append([]string{}, keys...), maxTxnOps) {
		ops := make([]clientv3.Op, len(chunk))
		for i, k := range chunk {
			if rev == 0 {
				ops[i] = clientv3.OpGet(k)
			} else {
				// Later chunks read at the first one's revision: same snapshot.
				ops[i] = clientv3.OpGet(k, clientv3.WithRev(rev))
			}
		}
		resp, err := s.c.raw.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			s.c.noteErr(err)
			return nil, 0, wrapErr("load", chunk[0], err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for i, r := range resp.Responses {
			doc := config.Document{Key: chunk[i], Revision: rev}
			if kvs := r.GetResponseRange().GetKvs(); len(kvs) > 0 {
				doc.Data = nonNil(kvs[0].Value)
				doc.Revision = kvs[0].ModRevision
			}
			docs = append(docs, doc)
		}
	}
	if len(keys) == 0 {
		// Nothing to read, but the caller still needs a revision to watch from.
		resp, err := s.c.raw.Get(ctx, probeKey, clientv3.WithCountOnly())
		if err != nil {
			return nil, 0, wrapErr("load", "", err)
		}
		rev = resp.Header.Revision
	}
	return docs, rev, nil
}

// Watch implements config.Source. It watches exactly keys, one etcd watch
// per key from revision+1, and calls fn from the calling goroutine with
// every change: each key's changes in revision order, different keys in
// the order they arrive. It returns a CONNECTION InfraError when a watch
// cannot continue (compacted revision, lost leader, cancelled by the
// server, client closed) so the caller reloads, and ctx.Err() when ctx
// ends. It does not retry: the caller's reload with backoff is the retry,
// and it alone knows what to reload.
//
// One watch per key, rather than one range from the lowest key to the
// highest, because the range between /config/{env}/global/c and
// /config/{env}/{service}/c holds every other service's documents: they
// would be sent here (secrets included), and under etcd RBAC that grants a
// service only its own and the global prefix the range watch is refused
// outright. The per-key watches share one gRPC stream.
func (s *Source) Watch(ctx context.Context, revision int64, fn func(config.Document), keys ...string) error {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	if len(keys) == 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	lost := s.c.lost()
	// Cancelling wctx when Watch returns releases the clientv3 watchers
	// (and their stream once no other watcher shares it). WithRequireLeader
	// makes a member cut off from its cluster cancel the watch instead of
	// going silent while the rest of the cluster moves on.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	type keyed struct {
		key  string
		resp clientv3.WatchResponse
		ok   bool
	}
	merged := make(chan keyed)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for _, key := range keys {
		// Opened in the goroutine: clientv3's Watch blocks until etcd has
		// created the watch, and etcd may be gone by then; this goroutine
		// must not keep Watch from noticing that.
		wg.Go(func() {
			wch := s.c.raw.Watch(wctx, key, clientv3.WithRev(revision+1))
			for {
				resp, ok := <-wch
				select {
				case merged <- keyed{key, resp, ok}:
				case <-wctx.Done():
					return
				}
				if !ok {
					return
				}
			}
		})
	}
	for {
		var m keyed
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-lost:
			// clientv3 would resume the watches once it reconnects, after a
			// backoff of its own; the caller reloads instead, at once when
			// the client's monitor sees etcd answer (Recovered).
			return lifecycle.ConnectionError(ModuleName, "watch", errors.New("etcd stopped answering")).WithField(keys[0])
		case m = <-merged:
		}
		if !m.ok {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return lifecycle.ConnectionError(ModuleName, "watch", errors.New("etcd watch channel closed")).WithField(m.key)
		}
		if err := m.resp.Err(); err != nil {
			s.c.noteErr(err)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return lifecycle.ConnectionError(ModuleName, "watch", err).WithField(m.key)
		}
		if m.resp.Canceled {
			return lifecycle.ConnectionError(ModuleName, "watch", errors.New("watch cancelled by etcd")).WithField(m.key)
		}
		for _, ev := range m.resp.Events {
			doc := config.Document{Key: m.key, Revision: ev.Kv.ModRevision}
			if ev.Type == clientv3.EventTypePut {
				doc.Data = nonNil(ev.Kv.Value)
			}
			fn(doc)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
}

// nonNil keeps an empty value distinguishable from a missing key, which
// config.Document encodes as nil Data.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
