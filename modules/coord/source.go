package coord

import (
	"context"
	"errors"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// maxTxnOps is etcd's default --max-txn-ops; a Load of more keys is split
// into transactions pinned to the first one's revision.
const maxTxnOps = 128

// Source is config.Source on etcd. Load reads all keys in one transaction, so
// the documents are one consistent snapshot at the returned revision; Watch
// resumes from that revision, so no update between the two is lost.
type Source struct {
	c *Client
}

var _ config.Source = (*Source)(nil)

// NewSource returns a Source reading through c.
func NewSource(c *Client) *Source { return &Source{c: c} }

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

// Watch implements config.Source. It delivers, in revision order and from
// the calling goroutine, every change to keys after revision, and returns a
// CONNECTION InfraError when the watch cannot continue (compacted revision,
// lost leader, cancelled by the server, client closed) so the caller reloads;
// it returns ctx.Err() when ctx ends. It does not retry: the caller's reload
// with backoff is the retry, and it alone knows what to reload.
//
// Several keys are watched as one range from the smallest to the largest and
// filtered here, because separate watchers give no order across keys and the
// contract promises revision order. Config keys change rarely, so the extra
// events in between cost little.
func (s *Source) Watch(ctx context.Context, revision int64, fn func(config.Document), keys ...string) error {
	if len(keys) == 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	lo, hi := slices.Min(keys), slices.Max(keys)
	opts := []clientv3.OpOption{clientv3.WithRev(revision + 1)}
	if lo != hi {
		opts = append(opts, clientv3.WithRange(hi+"\x00"))
	}

	// Cancelling wctx when Watch returns releases the clientv3 watcher (and
	// its stream once no other watcher shares it). WithRequireLeader makes a
	// member cut off from its cluster cancel the watch instead of going
	// silent while the rest of the cluster moves on.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.c.raw.Watch(wctx, lo, opts...)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok := <-wch:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return lifecycle.ConnectionError(ModuleName, "watch", errors.New("etcd watch channel closed")).WithField(lo)
			}
			if err := resp.Err(); err != nil {
				s.c.noteErr(err)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return lifecycle.ConnectionError(ModuleName, "watch", err).WithField(lo)
			}
			if resp.Canceled {
				return lifecycle.ConnectionError(ModuleName, "watch", errors.New("watch cancelled by etcd")).WithField(lo)
			}
			for _, ev := range resp.Events {
				k := string(ev.Kv.Key)
				if !want[k] {
					continue
				}
				doc := config.Document{Key: k, Revision: ev.Kv.ModRevision}
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
}

// nonNil keeps an empty value distinguishable from a missing key, which
// config.Document encodes as nil Data.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
