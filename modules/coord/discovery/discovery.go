package discovery

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DiscoveryEventType says what happened to an instance.
type DiscoveryEventType int

// The kinds of DiscoveryEvent.
const (
	// InstanceAdded: the instance appeared (or was present when Watch began).
	InstanceAdded DiscoveryEventType = iota + 1
	// InstanceRemoved: the instance was deregistered or its lease expired.
	InstanceRemoved
	// InstanceUpdated: the instance was re-written with a different address
	// or metadata.
	InstanceUpdated
)

// String returns "added", "removed" or "updated".
func (t DiscoveryEventType) String() string {
	switch t {
	case InstanceAdded:
		return "added"
	case InstanceRemoved:
		return "removed"
	case InstanceUpdated:
		return "updated"
	default:
		return "unknown"
	}
}

// DiscoveryEvent is one change to the set of instances of a service.
type DiscoveryEvent struct {
	Type DiscoveryEventType
	// Instance is the new state for Added and Updated, the last known state
	// for Removed.
	Instance ServiceInstance
}

// Discovery finds the live instances of a service in etcd.
type Discovery struct {
	cli *clientv3.Client
	log *zap.Logger
}

// NewDiscovery returns a Discovery reading through cli. It does no I/O.
func NewDiscovery(cli *clientv3.Client, opts ...Option) *Discovery {
	return &Discovery{cli: cli, log: buildOptions(opts).log}
}

// Discover returns the instances of service name registered now, sorted by
// ID. The read is linearizable, so an instance whose Register returned is
// always included. Entries that cannot be decoded are skipped and logged.
func (d *Discovery) Discover(ctx context.Context, name string) ([]ServiceInstance, error) {
	if err := validateName(name); err != nil {
		return nil, err
	}
	w := watcher{cli: d.cli, log: d.log, name: name, prefix: ServiceKeyPrefix + name + "/"}
	resp, err := d.cli.Get(ctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, etcdError(ModuleName, "discover", err)
	}
	// etcd returns a range in key order and the ID is the last key element,
	// so the result is already sorted by ID.
	out := make([]ServiceInstance, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if inst, ok := w.decode(kv.Key, kv.Value); ok {
			out = append(out, inst)
		}
	}
	return out, nil
}

// watchLoadTimeout bounds Watch's initial read: the ctx given to Watch
// lives as long as the subscription, so it cannot bound the read itself.
const watchLoadTimeout = 5 * time.Second

// Watch streams changes to the instances of service name. It first reads the
// current set and sends each instance as InstanceAdded, then every later
// change, starting from the revision right after that read so nothing is
// missed in between. A failed watch is re-established and an etcd compaction
// triggers a re-read whose difference is sent as events, so a subscriber that
// applies the events always ends up with etcd's set. The channel is closed
// when ctx ends (or the client is closed); a slow reader delays, not loses,
// events. The initial read's error, if any, is returned.
func (d *Discovery) Watch(ctx context.Context, name string) (<-chan DiscoveryEvent, error) {
	if err := validateName(name); err != nil {
		return nil, err
	}
	w := newWatcher(d.cli, d.log, name)
	loadCtx, cancel := context.WithTimeout(ctx, watchLoadTimeout)
	snap, rev, err := w.load(loadCtx)
	cancel()
	if err != nil {
		return nil, etcdError(ModuleName, "watch", err)
	}
	initial := w.apply(snap)

	out := make(chan DiscoveryEvent, 64)
	go func() {
		// Owned by ctx: it ends, and closes out, when ctx does.
		defer close(out)
		send := func(events []DiscoveryEvent) bool {
			for _, ev := range events {
				select {
				case out <- ev:
				case <-ctx.Done():
					return false
				}
			}
			return true
		}
		if !send(initial) {
			return
		}
		w.run(ctx, rev+1, func(events []DiscoveryEvent, _ bool) bool { return send(events) })
	}()
	return out, nil
}

// watcher keeps the known set of one service's instances in step with
// etcd across watch failures and compactions. It is used by one goroutine.
type watcher struct {
	cli    *clientv3.Client
	log    *zap.Logger
	name   string
	prefix string
	known  map[string]ServiceInstance // by ID
	// onLoadError, if set, hears each failed re-read (the resolver reports
	// it to gRPC).
	onLoadError func(error)
}

func newWatcher(cli *clientv3.Client, log *zap.Logger, name string) *watcher {
	return &watcher{
		cli:    cli,
		log:    log,
		name:   name,
		prefix: ServiceKeyPrefix + name + "/",
		known:  make(map[string]ServiceInstance),
	}
}

// load reads the current instances and the revision they were read at.
func (w *watcher) load(ctx context.Context) (map[string]ServiceInstance, int64, error) {
	resp, err := w.cli.Get(ctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	snap := make(map[string]ServiceInstance, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if inst, ok := w.decode(kv.Key, kv.Value); ok {
			snap[inst.ID] = inst
		}
	}
	return snap, resp.Header.Revision, nil
}

func (w *watcher) decode(key, value []byte) (ServiceInstance, bool) {
	id := strings.TrimPrefix(string(key), w.prefix)
	if id == "" || strings.Contains(id, "/") {
		// Not an instance key of this service (a nested path someone wrote).
		return ServiceInstance{}, false
	}
	inst, err := decode(w.name, id, value)
	if err != nil {
		w.log.Warn("skipping undecodable service instance", zap.String("key", string(key)), zap.Error(err))
		return ServiceInstance{}, false
	}
	return inst, true
}

// apply replaces the known set with snap and returns the difference as
// events: Removed first, then Added and Updated in ID order.
func (w *watcher) apply(snap map[string]ServiceInstance) []DiscoveryEvent {
	var events []DiscoveryEvent
	for _, id := range slices.Sorted(maps.Keys(w.known)) {
		if _, ok := snap[id]; !ok {
			events = append(events, DiscoveryEvent{Type: InstanceRemoved, Instance: w.known[id]})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(snap)) {
		inst := snap[id]
		old, ok := w.known[id]
		switch {
		case !ok:
			events = append(events, DiscoveryEvent{Type: InstanceAdded, Instance: inst})
		case !sameInstance(old, inst):
			events = append(events, DiscoveryEvent{Type: InstanceUpdated, Instance: inst})
		}
	}
	w.known = snap
	return events
}

// event folds one etcd event into the known set. A put that changes nothing
// (a re-registration after a lost lease rewrites the same value) is no event.
func (w *watcher) event(ev *clientv3.Event) (DiscoveryEvent, bool) {
	switch ev.Type {
	case clientv3.EventTypePut:
		inst, ok := w.decode(ev.Kv.Key, ev.Kv.Value)
		if !ok {
			return DiscoveryEvent{}, false
		}
		old, had := w.known[inst.ID]
		w.known[inst.ID] = inst
		switch {
		case !had:
			return DiscoveryEvent{Type: InstanceAdded, Instance: inst}, true
		case !sameInstance(old, inst):
			return DiscoveryEvent{Type: InstanceUpdated, Instance: inst}, true
		}
	case clientv3.EventTypeDelete:
		id := strings.TrimPrefix(string(ev.Kv.Key), w.prefix)
		if old, had := w.known[id]; had {
			delete(w.known, id)
			return DiscoveryEvent{Type: InstanceRemoved, Instance: old}, true
		}
	}
	return DiscoveryEvent{}, false
}

// run follows etcd from revision rev (0: read first) and hands each batch of
// events to sink until ctx ends, the client closes or sink returns false.
// loaded tells sink that the batch came from a full re-read (it may be empty).
// Failures are retried with jittered backoff, never in a tight loop.
func (w *watcher) run(ctx context.Context, rev int64, sink func(events []DiscoveryEvent, loaded bool) bool) {
	const retryMin, retryMax = 100 * time.Millisecond, 5 * time.Second
	attempt := 0
	for {
		if rev == 0 {
			loadCtx, cancel := context.WithTimeout(ctx, watchLoadTimeout)
			snap, r, err := w.load(loadCtx)
			cancel()
			if err != nil {
				if w.stopped(ctx) {
					return
				}
				w.log.Warn("reading service instances failed; retrying",
					zap.String("service", w.name), zap.Int("attempt", attempt+1), zap.Error(err))
				if w.onLoadError != nil {
					w.onLoadError(etcdError(ModuleName, "watch", err))
				}
				if !w.sleep(ctx, backoff(attempt, retryMin, retryMax)) {
					return
				}
				attempt++
				continue
			}
			attempt = 0
			rev = r + 1
			if !sink(w.apply(snap), true) {
				return
			}
		}

		next, err := w.follow(ctx, rev, sink)
		if next == -1 || w.stopped(ctx) {
			return
		}
		if next > rev {
			// The watch made progress before failing, so this is a fresh
			// failure, not a repeat of the last one.
			attempt = 0
		}
		rev = next
		if rev == 0 {
			w.log.Warn("service watch compacted; re-reading instances", zap.String("service", w.name), zap.Error(err))
		} else {
			w.log.Warn("service watch interrupted; resuming",
				zap.String("service", w.name), zap.Int64("revision", rev), zap.Error(err))
		}
		if !w.sleep(ctx, backoff(attempt, retryMin, retryMax)) {
			return
		}
		attempt++
	}
}

// follow runs one etcd watch from rev. It returns the revision to resume
// from, 0 when the history is compacted (re-read needed), or -1 when sink
// asked to stop.
func (w *watcher) follow(ctx context.Context, rev int64, sink func([]DiscoveryEvent, bool) bool) (int64, error) {
	// WithRequireLeader makes a member cut off from its cluster end the
	// watch instead of silently serving nothing; it is then re-established.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := w.cli.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if resp.CompactRevision != 0 || errors.Is(err, rpctypes.ErrCompacted) {
				return 0, err
			}
			return rev, err
		}
		events := make([]DiscoveryEvent, 0, len(resp.Events))
		for _, ev := range resp.Events {
			// Resume after the last event seen, not the header revision: the
			// header can run ahead of events still to be delivered.
			rev = ev.Kv.ModRevision + 1
			if de, ok := w.event(ev); ok {
				events = append(events, de)
			}
		}
		if len(events) > 0 && !sink(events, false) {
			return -1, nil
		}
	}
	return rev, errors.New("watch channel closed")
}

// stopped reports whether the watch should end: its ctx is done or the
// client it reads through is closed.
func (w *watcher) stopped(ctx context.Context) bool {
	return ctx.Err() != nil || w.cli.Ctx().Err() != nil
}

// sleep waits d; false means stop instead.
func (w *watcher) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-w.cli.Ctx().Done():
		return false
	}
}

func sameInstance(a, b ServiceInstance) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Addr == b.Addr && maps.Equal(a.Metadata, b.Metadata)
}

func sortedInstances(set map[string]ServiceInstance) []ServiceInstance {
	out := make([]ServiceInstance, 0, len(set))
	for _, id := range slices.Sorted(maps.Keys(set)) {
		out = append(out, set[id])
	}
	return out
}
