package config

import (
	"context"
	"errors"
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
// It keeps the latest raw document of each layer and, whenever any layer
// changes, parses and validates the whole set. A valid set is published; an
// invalid one is refused with a warning and the last valid config stays, to
// be replaced as soon as a later change makes the set valid again. So once
// writes stop, Get equals what Parse makes of the current layers whenever
// that is valid. A deleted key falls back to the layer below.
//
// Get is one atomic load, so readers never block. Subscribers run in order,
// never concurrently, after the new value is visible to Get.
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
	revision atomic.Int64 // highest revision processed
	loaded   atomic.Bool  // Start's first load is over: later changes are logged one by one

	// notifyMu orders publications and subscriber calls, so that a
	// subscriber sees every change after the value it was given first.
	notifyMu sync.Mutex
	subs     []subscriber[T]
	nextSub  int

	mu      sync.Mutex
	raw     map[string]Document // latest document seen per key; nil Data: absent
	good    map[string]Document // the documents the published config was made of
	origin  string              // where the published config came from
	refusal *Refusal            // why the current set of layers is refused, nil when it is not
	savedAt time.Time           // when the snapshot in use was written (origin snapshot)
	cancel  context.CancelFunc
	done    chan struct{}
}

// Origins of a published config, as Status reports them.
const (
	OriginDefaults = "defaults"
	OriginSnapshot = "snapshot"
	OriginSource   = "source"
)

// Refusal says why the current set of layers is not in force.
type Refusal struct {
	Key      string // the key whose change was refused
	Revision int64
	Err      error
	At       time.Time
}

// Status is a Value's state for health details, metrics and tests.
type Status struct {
	Component string
	Origin    string    // OriginDefaults, OriginSnapshot or OriginSource
	Revision  int64     // highest source revision processed
	Applied   int64     // configs published since NewValue
	Rejected  int64     // sets of layers refused since NewValue
	Degraded  bool      // the source did not answer; running on snapshot or defaults
	Refusal   *Refusal  // non-nil while the current layers are refused
	SavedAt   time.Time // when the snapshot in use was written (OriginSnapshot only)
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

// WithLogger sets the logger for loads, applied changes, refused documents
// and source outages. Default: a no-op logger.
func WithLogger(l *zap.Logger) ValueOption { return func(o *valueOptions) { o.log = l } }

// WithSnapshot keeps the last valid documents in s and reads them at Start
// when the source is down.
func WithSnapshot(s *Snapshot) ValueOption { return func(o *valueOptions) { o.snapshot = s } }

// WithLoadTimeout bounds the first load at Start; default 3s. It is the
// longest a service waits for an unreachable source before starting degraded.
func WithLoadTimeout(d time.Duration) ValueOption {
	return func(o *valueOptions) { o.loadTimeout = d }
}

// WithRetry sets the jittered exponential backoff between attempts to reach
// the source again; default 50ms doubling up to 1s. The backoff resets only
// once a watch has made progress, so a watch that fails at once is not
// retried in a tight loop. A source that implements RecoveryNotifier wakes a
// waiting Value as soon as it is reachable again.
func WithRetry(min, max time.Duration) ValueOption {
	return func(o *valueOptions) { o.retryMin, o.retryMax = min, max }
}

// RecoveryNotifier is implemented by a Source that knows when it can be
// reached again after failing. Recovered returns a channel that is closed at
// the next transition from unreachable to reachable after the call.
type RecoveryNotifier interface {
	Recovered() <-chan struct{}
}

// NewValue makes a Value holding T's defaults. It does no I/O: Start loads.
func NewValue[T Schema[T]](component string, src Source, id lifecycle.Identity, opts ...ValueOption) *Value[T] {
	o := valueOptions{log: zap.NewNop(), loadTimeout: 3 * time.Second, retryMin: 50 * time.Millisecond, retryMax: time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	o.log = o.log.With(zap.String("module", "config"), zap.String("component", component))
	v := &Value[T]{
		component: component,
		src:       src,
		keys:      []string{GlobalKey(id.Env, component), Key(id.Env, id.Service, component)},
		opts:      o,
		raw:       map[string]Document{},
		good:      map[string]Document{},
		origin:    OriginDefaults,
	}
	var zero T
	def := zero.Defaults()
	v.cur.Store(&def)
	return v
}

// Component is the component name the Value was made for.
func (v *Value[T]) Component() string { return v.component }

// Get returns the current config. Treat it as read-only: maps and slices in
// it are shared with other readers.
func (v *Value[T]) Get() T { return *v.cur.Load() }

// Keys are the watched keys, lowest layer first.
func (v *Value[T]) Keys() []string { return slices.Clone(v.keys) }

// Degraded reports whether the value is running on snapshot or defaults
// because the source did not answer.
func (v *Value[T]) Degraded() bool { return v.degraded.Load() }

// Rejected counts sets of layers refused because they did not parse or
// validate.
func (v *Value[T]) Rejected() int64 { return v.rejected.Load() }

// Applied counts configs published since NewValue.
func (v *Value[T]) Applied() int64 { return v.applied.Load() }

// Revision is the highest source revision the Value has processed: a write
// at revision r has been applied or refused once Revision() >= r.
func (v *Value[T]) Revision() int64 { return v.revision.Load() }

// Status reports the Value's state.
func (v *Value[T]) Status() Status {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := Status{
		Component: v.component,
		Origin:    v.origin,
		Revision:  v.revision.Load(),
		Applied:   v.applied.Load(),
		Rejected:  v.rejected.Load(),
		Degraded:  v.degraded.Load(),
		SavedAt:   v.savedAt,
	}
	if v.refusal != nil {
		r := *v.refusal
		s.Refusal = &r
	}
	return s
}

// Subscribe calls fn at once with (current, current), then with (old, new)
// after every change, in order and never concurrently. Comparing old and new
// field by field therefore also works for the first call: nothing changed.
// fn runs on the Value's watch goroutine (the first call on the caller's),
// so it must return quickly, and it must not call Subscribe. The returned
// func unsubscribes; after it returns, fn is not called again.
func (v *Value[T]) Subscribe(fn func(old, new T)) (cancel func()) {
	v.notifyMu.Lock()
	defer v.notifyMu.Unlock()
	id := v.nextSub
	v.nextSub++
	v.subs = append(v.subs, subscriber[T]{id: id, fn: fn})
	cur := *v.cur.Load()
	fn(cur, cur)
	return func() {
		v.notifyMu.Lock()
		defer v.notifyMu.Unlock()
		v.subs = slices.DeleteFunc(v.subs, func(s subscriber[T]) bool { return s.id == id })
	}
}

// Start loads the documents (bounded by the load timeout) and watches them
// until Stop. It fails only when ctx ends, and then leaves nothing running;
// a source outage leaves the value degraded instead.
func (v *Value[T]) Start(ctx context.Context) error {
	v.mu.Lock()
	if v.done != nil {
		v.mu.Unlock()
		return nil
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v.cancel, v.done = cancel, make(chan struct{})
	v.mu.Unlock()

	began := time.Now()
	rev, err := v.load(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			cancel()
			close(v.done)
			return lifecycle.TimeoutError(v.component, "load config", ctxErr)
		}
		v.startDegraded(err, time.Since(began))
	} else {
		v.logLoaded(rev, time.Since(began))
	}
	v.loaded.Store(true)
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

func (v *Value[T]) logLoaded(rev int64, took time.Duration) {
	v.mu.Lock()
	var present []string
	for _, k := range v.keys {
		if v.raw[k].Data != nil {
			present = append(present, k)
		}
	}
	refused := v.refusal
	v.mu.Unlock()
	fields := []zap.Field{zap.String("source", v.src.Name()), zap.Int64("revision", rev),
		zap.Strings("keys", present), zap.Duration("took", took)}
	switch {
	case refused != nil:
		v.opts.log.Warn("config loaded, but its documents are refused; running on defaults", append(fields, zap.Error(refused.Err))...)
	case len(present) == 0:
		v.opts.log.Info("config loaded: no documents, using defaults", fields...)
	default:
		v.opts.log.Info("config loaded", fields...)
	}
}

func (v *Value[T]) startDegraded(cause error, took time.Duration) {
	v.degraded.Store(true)
	if v.opts.snapshot != nil {
		docs, savedAt, err := v.opts.snapshot.Load(v.keys...)
		if errors.Is(err, ErrSnapshotOtherSource) {
			v.opts.log.Warn("config snapshot not used: it was written for another config source", zap.Error(err))
		}
		if err == nil && len(docs) > 0 {
			published := v.update(docs, false, OriginSnapshot)
			v.mu.Lock()
			v.savedAt = savedAt
			v.mu.Unlock()
			if published {
				v.opts.log.Warn("config source unreachable; running on the last-known-good snapshot and retrying",
					zap.String("source", v.src.Name()), zap.String("snapshot", v.opts.snapshot.Path()),
					zap.Time("snapshot_written", savedAt), zap.Duration("snapshot_age", time.Since(savedAt).Round(time.Second)),
					zap.Duration("took", took), zap.Error(cause))
				return
			}
		}
	}
	v.opts.log.Warn("config source unreachable; running on defaults and retrying",
		zap.String("source", v.src.Name()), zap.Duration("took", took), zap.Error(cause))
}

// load reads every layer once and applies the set.
func (v *Value[T]) load(ctx context.Context) (int64, error) {
	lctx, cancel := context.WithTimeout(ctx, v.opts.loadTimeout)
	defer cancel()
	docs, rev, err := v.src.Load(lctx, v.keys...)
	if err != nil {
		return 0, err
	}
	// A full load replaces every layer: a key missing from docs is absent.
	byKey := make(map[string]Document, len(docs))
	for _, d := range docs {
		byKey[d.Key] = d
	}
	all := make([]Document, len(v.keys))
	for i, k := range v.keys {
		d, ok := byKey[k]
		if !ok {
			d = Document{Key: k, Revision: rev}
		}
		all[i] = d
	}
	// Cleared before applying, so the documents just loaded reach the
	// snapshot (which is not written while running on it).
	if v.degraded.Swap(false) {
		v.opts.log.Info("config source reachable again; reloaded", zap.String("source", v.src.Name()), zap.Int64("revision", rev))
	}
	v.update(all, true, OriginSource)
	v.noteRevision(rev)
	return rev, nil
}

func (v *Value[T]) noteRevision(rev int64) {
	for {
		cur := v.revision.Load()
		if rev <= cur || v.revision.CompareAndSwap(cur, rev) {
			return
		}
	}
}

func (v *Value[T]) run(ctx context.Context, rev int64, loaded bool) {
	defer close(v.done)
	delay := v.opts.retryMin
	failures := 0
	for {
		if !loaded {
			wake := v.recovered()
			var err error
			if rev, err = v.load(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				v.opts.log.Debug("config source still unreachable", zap.Error(err))
				if !v.sleep(ctx, &delay, wake) {
					return
				}
				continue
			}
		}
		began := time.Now()
		progressed := false
		err := v.src.Watch(ctx, rev, func(d Document) {
			progressed = true
			v.update([]Document{d}, true, OriginSource)
			v.noteRevision(d.Revision)
		}, v.keys...)
		if ctx.Err() != nil {
			return
		}
		// Only a watch that made progress resets the backoff: one that fails
		// at once (no permission, a member without a leader) must not turn
		// into a tight reload loop.
		if progressed || time.Since(began) >= v.opts.retryMax {
			delay, failures = v.opts.retryMin, 0
		}
		failures++
		if failures == 1 {
			v.opts.log.Warn("config watch ended; reloading", zap.String("source", v.src.Name()), zap.Error(err))
		} else {
			v.opts.log.Debug("config watch ended again; reloading", zap.Int("consecutive", failures), zap.Error(err))
		}
		loaded = false
		if !v.sleep(ctx, &delay, v.recovered()) {
			return
		}
	}
}

// recovered is the source's recovery channel, or nil (never ready).
func (v *Value[T]) recovered() <-chan struct{} {
	if rn, ok := v.src.(RecoveryNotifier); ok {
		return rn.Recovered()
	}
	return nil
}

// sleep waits a jittered delay, or until wake closes, and doubles the delay
// up to the cap.
func (v *Value[T]) sleep(ctx context.Context, delay *time.Duration, wake <-chan struct{}) bool {
	d := *delay/2 + rand.N(*delay/2+1)
	*delay = min(*delay*2, v.opts.retryMax)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
		return true
	case <-t.C:
		return true
	}
}

// update records docs as the latest raw documents of their keys and, if
// anything changed, tries the whole set. It reports whether a config was
// published. fromSource says whether the documents may be saved to the
// snapshot.
func (v *Value[T]) update(docs []Document, fromSource bool, origin string) bool {
	v.notifyMu.Lock()
	defer v.notifyMu.Unlock()

	v.mu.Lock()
	var changed []Document
	for _, d := range docs {
		prev, had := v.raw[d.Key]
		if had && sameData(prev.Data, d.Data) {
			continue
		}
		if !had && d.Data == nil {
			v.raw[d.Key] = d
			continue
		}
		v.raw[d.Key] = d
		changed = append(changed, d)
	}
	if len(changed) == 0 {
		if origin == OriginSource && v.refusal == nil {
			// The source holds what is already in force (for example
			// the snapshot booted from): it is now the source's config.
			v.origin, v.savedAt = origin, time.Time{}
		}
		v.mu.Unlock()
		return false
	}
	layers := make([]Layer, len(v.keys))
	for i, k := range v.keys {
		layers[i] = Layer{Key: k, Data: v.raw[k].Data}
	}
	next, err := Parse[T](v.component, layers...)
	if err != nil {
		last := changed[len(changed)-1]
		v.refusal = &Refusal{Key: last.Key, Revision: last.Revision, Err: err, At: time.Now()}
		v.mu.Unlock()
		v.rejected.Add(1)
		v.opts.log.Warn("config refused; keeping the last valid config until the layers are valid again",
			zap.String("key", last.Key), zap.Int64("revision", last.Revision), zap.Error(err))
		return false
	}
	for _, d := range changed {
		if d.Data == nil && v.good[d.Key].Data != nil {
			v.opts.log.Info("config layer deleted; the layer below applies",
				zap.String("key", d.Key), zap.Int64("revision", d.Revision))
		}
	}
	wasRefused := v.refusal != nil
	v.refusal = nil
	v.good = make(map[string]Document, len(v.keys))
	for _, k := range v.keys {
		v.good[k] = v.raw[k]
	}
	v.origin = origin
	if origin != OriginSnapshot {
		v.savedAt = time.Time{}
	}
	var snap []Document
	if v.opts.snapshot != nil && fromSource {
		for _, k := range v.keys {
			snap = append(snap, v.good[k])
		}
	}
	v.mu.Unlock()

	old := v.cur.Swap(&next)
	v.applied.Add(1)
	if diff := diffFields(*old, next); v.loaded.Load() && (len(diff) > 0 || wasRefused) {
		keys := make([]string, len(changed))
		revs := make([]int64, len(changed))
		for i, d := range changed {
			keys[i], revs[i] = d.Key, d.Revision
		}
		v.opts.log.Info("config applied", zap.Strings("keys", keys), zap.Int64s("revisions", revs),
			zap.Strings("changed", diff), zap.Bool("was_refused", wasRefused))
	}
	for _, s := range v.subs {
		s.fn(*old, next)
	}
	// The snapshot is written after subscribers ran, so file I/O never
	// delays a change reaching the component. It only ever holds a valid set.
	if snap != nil && !v.degraded.Load() {
		if err := v.opts.snapshot.Save(snap...); err != nil {
			v.opts.log.Warn("config snapshot not written", zap.Error(err))
		}
	}
	return true
}

func sameData(a, b []byte) bool { return (a == nil) == (b == nil) && string(a) == string(b) }

type subscriber[T any] struct {
	id int
	fn func(old, new T)
}
