package config

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// Value is a component's live, typed config: defaults, then
// /config/{env}/global/{component}, then /config/{env}/{service}/{component}.
//
// Get is one atomic load, so readers never see a half-applied config and
// never block. Every change is parsed and validated before it is published;
// an invalid document is refused with a warning and the last good value
// stays. A deleted key falls back to the layer below. Subscribers run on the
// watch goroutine, in order, after the new value is visible to Get.
//
// When the source cannot answer at Start, Value starts from the snapshot
// file (if one was configured and holds the keys) or else from defaults,
// reports Degraded, and keeps retrying with jittered backoff; the source's
// config is applied as soon as it answers.
type Value[T Schema[T]] struct {
	component string
	src       Source
	keys      []string // lowest layer first
	opts      valueOptions

	cur      atomic.Pointer[T]
	degraded atomic.Bool
	rejected atomic.Int64
	applied  atomic.Int64

	mu      sync.Mutex
	docs    map[string]Document // accepted documents, by key
	subs    []subscriber[T]
	nextSub int
	cancel  context.CancelFunc
	done    chan struct{}
}

type valueOptions struct {
	log         *zap.Logger
	snapshot    *Snapshot
	loadTimeout time.Duration
	retryMin    time.Duration
	retryMax    time.Duration
}

// ValueOption configures NewValue.
type ValueOption func(*valueOptions)

// WithLogger sets the logger for refused documents and source outages.
// Default: a no-op logger.
func WithLogger(l *zap.Logger) ValueOption { return func(o *valueOptions) { o.log = l } }

// WithSnapshot keeps the last good documents in s and reads them at Start
// when the source is down.
func WithSnapshot(s *Snapshot) ValueOption { return func(o *valueOptions) { o.snapshot = s } }

// WithLoadTimeout bounds the first load at Start; default 3s. It is the
// longest a service waits for an unreachable source before starting degraded.
func WithLoadTimeout(d time.Duration) ValueOption {
	return func(o *valueOptions) { o.loadTimeout = d }
}

// WithRetry sets the jittered exponential backoff between attempts to reach
// the source again; default 50ms doubling up to 1s. A short cap is what lets
// a service apply an update within a second of etcd coming back.
func WithRetry(min, max time.Duration) ValueOption {
	return func(o *valueOptions) { o.retryMin, o.retryMax = min, max }
}

// NewValue makes a Value holding T's defaults. It does no I/O: Start loads.
func NewValue[T Schema[T]](component string, src Source, id lifecycle.Identity, opts ...ValueOption) *Value[T] {
	o := valueOptions{log: zap.NewNop(), loadTimeout: 3 * time.Second, retryMin: 50 * time.Millisecond, retryMax: time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	v := &Value[T]{
		component: component,
		src:       src,
		keys:      []string{GlobalKey(id.Env, component), Key(id.Env, id.Service, component)},
		opts:      o,
		docs:      map[string]Document{},
	}
	var zero T
	def := zero.Defaults()
	v.cur.Store(&def)
	v.opts.log = o.log.With(zap.String("config", component))
	return v
}

// Get returns the current config. Treat it as read-only: maps and slices in
// it are shared with other readers.
func (v *Value[T]) Get() T { return *v.cur.Load() }

// Keys are the watched keys, lowest layer first.
func (v *Value[T]) Keys() []string { return append([]string(nil), v.keys...) }

// Degraded reports whether the value is running on snapshot or defaults
// because the source did not answer.
func (v *Value[T]) Degraded() bool { return v.degraded.Load() }

// Rejected counts documents refused because they did not parse or validate.
func (v *Value[T]) Rejected() int64 { return v.rejected.Load() }

// Applied counts documents accepted since NewValue.
func (v *Value[T]) Applied() int64 { return v.applied.Load() }

// Subscribe calls fn with the old and new config after each change. The
// returned func unsubscribes.
func (v *Value[T]) Subscribe(fn func(old, new T)) (cancel func()) {
	v.mu.Lock()
	defer v.mu.Unlock()
	id := v.nextSub
	v.nextSub++
	v.subs = append(v.subs, subscriber[T]{id: id, fn: fn})
	return func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		v.subs = slices.DeleteFunc(v.subs, func(s subscriber[T]) bool { return s.id == id })
	}
}

// Start loads the documents (bounded by the load timeout) and watches them
// until Stop. It fails only when ctx ends; a source outage leaves the value
// degraded instead.
func (v *Value[T]) Start(ctx context.Context) error {
	v.mu.Lock()
	if v.done != nil {
		v.mu.Unlock()
		return nil
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v.cancel, v.done = cancel, make(chan struct{})
	v.mu.Unlock()

	rev, err := v.load(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			cancel()
			close(v.done)
			return lifecycle.TimeoutError(v.component, "load config", ctxErr)
		}
		v.startDegraded(err)
	}
	go v.run(runCtx, rev, err == nil)
	return nil
}

// Stop ends the watch and waits for it.
func (v *Value[T]) Stop(ctx context.Context) error {
	v.mu.Lock()
	cancel, done := v.cancel, v.done
	v.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return lifecycle.TimeoutError(v.component, "stop config watch", ctx.Err())
	}
}

func (v *Value[T]) startDegraded(cause error) {
	v.degraded.Store(true)
	if v.opts.snapshot != nil {
		if docs, err := v.opts.snapshot.Load(v.keys...); err == nil && len(docs) > 0 {
			v.applyAll(docs)
			v.opts.log.Warn("config source unreachable; running on the last-known-good snapshot and retrying",
				zap.String("source", v.src.Name()), zap.Error(cause))
			return
		}
	}
	v.opts.log.Warn("config source unreachable; running on defaults and retrying",
		zap.String("source", v.src.Name()), zap.Error(cause))
}

// load reads every layer once and applies it.
func (v *Value[T]) load(ctx context.Context) (int64, error) {
	lctx, cancel := context.WithTimeout(ctx, v.opts.loadTimeout)
	defer cancel()
	docs, rev, err := v.src.Load(lctx, v.keys...)
	if err != nil {
		return 0, err
	}
	// Cleared before applying, so the documents just loaded reach the
	// snapshot (which is not written while running on it).
	if v.degraded.Swap(false) {
		v.opts.log.Info("config source reachable again; reloading config", zap.String("source", v.src.Name()))
	}
	v.applyAll(docs)
	return rev, nil
}

func (v *Value[T]) run(ctx context.Context, rev int64, loaded bool) {
	defer close(v.done)
	delay := v.opts.retryMin
	for {
		if !loaded {
			var err error
			if rev, err = v.load(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				v.opts.log.Debug("config source still unreachable", zap.Error(err))
				if !v.sleep(ctx, &delay) {
					return
				}
				continue
			}
			delay = v.opts.retryMin
		}
		err := v.src.Watch(ctx, rev, v.applyDoc, v.keys...)
		if ctx.Err() != nil {
			return
		}
		v.opts.log.Warn("config watch ended; reloading", zap.String("source", v.src.Name()), zap.Error(err))
		loaded = false
		if !v.sleep(ctx, &delay) {
			return
		}
	}
}

// sleep waits a jittered delay and doubles it up to the cap.
func (v *Value[T]) sleep(ctx context.Context, delay *time.Duration) bool {
	d := *delay/2 + rand.N(*delay/2+1)
	*delay = min(*delay*2, v.opts.retryMax)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// applyAll applies a full load key by key, lowest layer first, so a bad
// service document does not keep a good global one from applying.
func (v *Value[T]) applyAll(docs []Document) {
	byKey := make(map[string]Document, len(docs))
	for _, d := range docs {
		byKey[d.Key] = d
	}
	for _, k := range v.keys {
		d, ok := byKey[k]
		if !ok {
			d = Document{Key: k}
		}
		v.applyDoc(d)
	}
}

// applyDoc tries the accepted documents with d in place of its key's.
func (v *Value[T]) applyDoc(d Document) {
	v.mu.Lock()
	prev, had := v.docs[d.Key]
	if had && prev.Revision == d.Revision && string(prev.Data) == string(d.Data) {
		v.mu.Unlock()
		return
	}
	if !had && d.Data == nil {
		v.mu.Unlock()
		return
	}
	layers := make([]Layer, len(v.keys))
	for i, k := range v.keys {
		doc := v.docs[k]
		if k == d.Key {
			doc = d
		}
		layers[i] = Layer{Key: k, Data: doc.Data}
	}
	next, err := Parse[T](v.component, layers...)
	if err != nil {
		v.mu.Unlock()
		v.rejected.Add(1)
		v.opts.log.Warn("config document refused; keeping the last good config",
			zap.String("key", d.Key), zap.Int64("revision", d.Revision), zap.Error(err))
		return
	}
	if d.Data == nil {
		delete(v.docs, d.Key)
	} else {
		v.docs[d.Key] = d
	}
	old := v.cur.Swap(&next)
	v.applied.Add(1)
	subs := slices.Clone(v.subs)
	var snap []Document
	if v.opts.snapshot != nil {
		for _, k := range v.keys {
			snap = append(snap, Document{Key: k, Data: v.docs[k].Data, Revision: v.docs[k].Revision})
		}
	}
	v.mu.Unlock()

	for _, s := range subs {
		s.fn(*old, next)
	}
	// The snapshot is written after subscribers ran, so file I/O never
	// delays a change reaching the component.
	if snap != nil && !v.degraded.Load() {
		if err := v.opts.snapshot.Save(snap...); err != nil {
			v.opts.log.Warn("config snapshot not written", zap.Error(err))
		}
	}
}

type subscriber[T any] struct {
	id int
	fn func(old, new T)
}
