package coord

import (
	"context"
	"encoding/json"
	"errors"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/lifecycle"
)

// Center is the config center API for tools (config-cli) and services: read,
// write, list, watch and audit keys in etcd. Every call is bounded by the
// client's RequestTimeout; errors are *lifecycle.InfraError with ModuleName
// "coord", the operation as Op and the key as Field.
type Center struct {
	c *Client
}

// NewCenter returns a Center on c.
func NewCenter(c *Client) *Center { return &Center{c: c} }

// Entry is one key's value at one revision.
type Entry struct {
	Key   string
	Value []byte
	// Revision is the store revision the entry was read at.
	Revision int64
	// ModRevision is the revision of the write that produced Value; pass it
	// to CompareAndSet.
	ModRevision int64
	// Version counts writes since the key was (re)created, from 1.
	Version int64
}

// EventType says what happened to a key.
type EventType int

// Event types.
const (
	Put EventType = iota + 1
	Delete
)

// String returns "PUT" or "DELETE".
func (t EventType) String() string {
	switch t {
	case Put:
		return "PUT"
	case Delete:
		return "DELETE"
	}
	return "UNKNOWN"
}

// Event is one change seen by Watch. A Delete carries the key and the
// revision of the delete, and no value.
type Event struct {
	Type  EventType
	Entry Entry
}

// Get returns the entry at key; ok is false when the key does not exist.
func (m *Center) Get(ctx context.Context, key string) (e Entry, ok bool, err error) {
	if err := checkKey("get", key); err != nil {
		return Entry{}, false, err
	}
	ctx, cancel := m.c.requestCtx(ctx)
	defer cancel()
	resp, err := m.c.raw.Get(ctx, key)
	if err != nil {
		return Entry{}, false, wrapErr("get", key, err)
	}
	if len(resp.Kvs) == 0 {
		return Entry{}, false, nil
	}
	return entryOf(resp.Kvs[0], resp.Header.Revision), true, nil
}

// Set writes value at key and returns the revision of the write.
func (m *Center) Set(ctx context.Context, key string, value []byte) (int64, error) {
	if err := checkKey("set", key); err != nil {
		return 0, err
	}
	ctx, cancel := m.c.requestCtx(ctx)
	defer cancel()
	resp, err := m.c.raw.Put(ctx, key, string(value))
	if err != nil {
		return 0, wrapErr("set", key, err)
	}
	return resp.Header.Revision, nil
}

// SetJSON is Set for config documents: it refuses a value that is not valid
// JSON with a CONFIG error before it reaches etcd, where every service
// watching the key would have to refuse it instead.
func (m *Center) SetJSON(ctx context.Context, key string, value []byte) (int64, error) {
	if !json.Valid(value) {
		return 0, &lifecycle.InfraError{Type: lifecycle.TypeConfig, Component: ModuleName, Op: "set", Field: key, Message: "value is not valid JSON"}
	}
	return m.Set(ctx, key, value)
}

// Delete removes key and reports whether it existed.
func (m *Center) Delete(ctx context.Context, key string) (existed bool, err error) {
	if err := checkKey("delete", key); err != nil {
		return false, err
	}
	ctx, cancel := m.c.requestCtx(ctx)
	defer cancel()
	resp, err := m.c.raw.Delete(ctx, key)
	if err != nil {
		return false, wrapErr("delete", key, err)
	}
	return resp.Deleted > 0, nil
}

// List returns every entry whose key starts with prefix, sorted by key, read
// at one revision.
func (m *Center) List(ctx context.Context, prefix string) ([]Entry, error) {
	if err := checkKey("list", prefix); err != nil {
		return nil, err
	}
	ctx, cancel := m.c.requestCtx(ctx)
	defer cancel()
	resp, err := m.c.raw.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, wrapErr("list", prefix, err)
	}
	out := make([]Entry, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = entryOf(kv, resp.Header.Revision)
	}
	return out, nil
}

// CompareAndSet writes value at key only if the key's ModRevision is still
// expectModRevision — the one a previous Get returned — so two editors cannot
// overwrite each other. expectModRevision 0 means "the key must not exist".
// ok is false, with no error, when someone else got there first.
func (m *Center) CompareAndSet(ctx context.Context, key string, value []byte, expectModRevision int64) (ok bool, err error) {
	if err := checkKey("cas", key); err != nil {
		return false, err
	}
	if expectModRevision < 0 {
		return false, lifecycle.ValidationError(ModuleName, "expectModRevision", "must not be negative")
	}
	ctx, cancel := m.c.requestCtx(ctx)
	defer cancel()
	// An absent key has ModRevision 0, so one comparison covers both cases.
	resp, err := m.c.raw.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expectModRevision)).
		Then(clientv3.OpPut(key, string(value))).
		Commit()
	if err != nil {
		return false, wrapErr("cas", key, err)
	}
	return resp.Succeeded, nil
}

// History returns up to limit past values of key, newest first, starting
// with the current one. It walks back one write at a time and stops at the
// key's first version since it was last created, at limit, or where etcd has
// compacted the history away (what was read so far is returned without
// error). A key that does not exist now has no history here. limit <= 0
// means no limit.
func (m *Center) History(ctx context.Context, key string, limit int) ([]Entry, error) {
	if err := checkKey("history", key); err != nil {
		return nil, err
	}
	ctx, cancel := m.c.requestCtx(ctx)
	defer cancel()
	var out []Entry
	var opts []clientv3.OpOption
	for limit <= 0 || len(out) < limit {
		resp, err := m.c.raw.Get(ctx, key, opts...)
		if errors.Is(err, rpctypes.ErrCompacted) {
			break
		}
		if err != nil {
			return out, wrapErr("history", key, err)
		}
		if len(resp.Kvs) == 0 {
			break
		}
		kv := resp.Kvs[0]
		out = append(out, entryOf(kv, resp.Header.Revision))
		if kv.Version <= 1 {
			break
		}
		// The previous value is whatever the key held just before this write.
		opts = []clientv3.OpOption{clientv3.WithRev(kv.ModRevision - 1)}
	}
	return out, nil
}

// Watch streams changes to key (or to every key under it when prefix is
// true) on a channel closed when ctx ends. It returns once etcd has
// registered the watch (waiting while etcd is unreachable, until ctx ends),
// so every change made after it returns is delivered. clientv3
// resumes the watch across reconnects without losing events; the channel
// also closes if the watch cannot go on (client closed, permission revoked),
// so a consumer that needs to tell the two apart checks ctx.Err(). A slow
// consumer holds back only its own watch.
func (m *Center) Watch(ctx context.Context, keyOrPrefix string, prefix bool) <-chan Event {
	out := make(chan Event, 16)
	if err := checkKey("watch", keyOrPrefix); err != nil {
		close(out)
		return out
	}
	var opts []clientv3.OpOption
	if prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	wctx, cancel := context.WithCancel(ctx)
	wch := m.c.raw.Watch(wctx, keyOrPrefix, opts...)
	// Owned by ctx: it ends when ctx does or when clientv3 closes wch.
	go func() {
		defer close(out)
		defer cancel()
		for resp := range wch {
			if resp.Err() != nil {
				m.c.noteErr(resp.Err())
				return
			}
			for _, ev := range resp.Events {
				e := Event{Type: Put, Entry: entryOf(ev.Kv, resp.Header.Revision)}
				if ev.Type == clientv3.EventTypeDelete {
					e.Type, e.Entry.Value = Delete, nil
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func entryOf(kv *mvccpb.KeyValue, rev int64) Entry {
	return Entry{
		Key:         string(kv.Key),
		Value:       nonNil(kv.Value),
		Revision:    rev,
		ModRevision: kv.ModRevision,
		Version:     kv.Version,
	}
}

func checkKey(op, key string) error {
	if key == "" {
		return &lifecycle.InfraError{Type: lifecycle.TypeValidation, Component: ModuleName, Op: op, Field: "key", Message: "key must not be empty"}
	}
	return nil
}
