package lifecycle

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"
)

// The phases of a Readiness. They only move forward.
const (
	phaseStarting int32 = iota
	phaseReady
	phaseStopping
)

// MaxDrainDelay bounds the drain delay. It stays below fx's default stop
// timeout (15s) so the stop hooks that follow the drain keep time to run;
// whatever the setting, Drain never takes more than half of the time left
// in the stop context.
const MaxDrainDelay = 10 * time.Second

// Readiness tells whether the service should receive traffic. It moves one
// way only: not started -> ready (once the whole app has started) -> stopping
// (as soon as shutdown begins). The zero value is usable and not ready.
type Readiness struct {
	phase atomic.Int32
	delay atomic.Int64 // time.Duration

	mu        sync.Mutex
	onDrain   []func(ctx context.Context)
	drainOnce sync.Once
	wasReady  atomic.Bool
	log       atomic.Pointer[zap.Logger]
}

// SetLogger sets where Drain says what it does; default nowhere.
func (r *Readiness) SetLogger(l *zap.Logger) { r.log.Store(l) }

// NewReadiness returns a Readiness that is not ready yet.
func NewReadiness() *Readiness { return &Readiness{} }

// MarkStarted makes the service ready. It does nothing once stopping has
// begun, so a late Started event cannot bring a stopping service back.
func (r *Readiness) MarkStarted() {
	if r.phase.CompareAndSwap(phaseStarting, phaseReady) {
		r.wasReady.Store(true)
	}
}

// SetDrainDelay sets how long Drain waits after turning not-ready, so load
// balancers see /readyz fail (and peers stop resolving the instance) before
// the service's own stop hooks close listeners and clients. It is clamped to
// [0, MaxDrainDelay].
func (r *Readiness) SetDrainDelay(d time.Duration) {
	r.delay.Store(int64(min(max(d, 0), MaxDrainDelay)))
}

// DrainDelay is the delay Drain will wait.
func (r *Readiness) DrainDelay() time.Duration { return time.Duration(r.delay.Load()) }

// OnDrain registers fn to run when the drain begins: after readiness turns
// off and before the delay, with the stop's ctx. The registry uses it to
// leave discovery while the drain runs rather than after it.
func (r *Readiness) OnDrain(fn func(ctx context.Context)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onDrain = append(r.onDrain, fn)
}

// BeginStop turns the service not-ready at once. It does not wait.
func (r *Readiness) BeginStop() { r.phase.Store(phaseStopping) }

// Drain is the first stop step: it turns the service not-ready, runs the
// OnDrain functions, then waits the drain delay, bounded by half of what is
// left of ctx (so the stop hooks after it keep time to run) and cut short
// by a second SIGINT or SIGTERM. It runs once; later calls return at once.
// A service that never became ready is not drained: nothing routes to it.
func (r *Readiness) Drain(ctx context.Context) {
	log := r.log.Load()
	if log == nil {
		log = zap.NewNop()
	}
	r.drainOnce.Do(func() {
		r.BeginStop()
		if !r.wasReady.Load() {
			return
		}
		began := time.Now()
		r.mu.Lock()
		fns := append([]func(context.Context){}, r.onDrain...)
		r.mu.Unlock()
		for _, fn := range fns {
			fn(ctx)
		}
		wait := r.DrainDelay()
		if dl, ok := ctx.Deadline(); ok {
			if budget := time.Until(dl) / 2; wait > budget {
				log.Warn("drain delay cut to half of the remaining stop time", zap.Duration("drain_delay", wait), zap.Duration("cut_to", max(budget, 0)))
				wait = max(budget, 0)
			}
		}
		if wait <= 0 {
			return
		}
		log.Info("draining: readiness is off; waiting for load balancers before stopping",
			zap.Duration("drain_delay", wait), zap.String("cut_short_by", "a second SIGINT or SIGTERM"))
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(sig)
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
			log.Info("drain done", zap.Duration("took", time.Since(began)))
		case s := <-sig:
			log.Info("drain cut short by a second signal; stopping now", zap.String("signal", s.String()), zap.Duration("took", time.Since(began)))
		case <-ctx.Done():
			log.Warn("drain cut short: the stop timeout is running out", zap.Duration("took", time.Since(began)))
		}
	})
}

// DrainFirst wraps lc so that the drain (r.Drain) is the first stop step,
// whichever module registered its hooks and in whatever order: after every
// hook that has an OnStop it appends one that drains, and fx stops hooks in
// reverse, so a drain always runs before any other OnStop (Drain runs once;
// the others return at once). Each hook keeps its own name in fx's event
// log. fxinfra decorates the app's fx.Lifecycle with it.
func DrainFirst(lc fx.Lifecycle, r *Readiness) fx.Lifecycle { return drainFirst{Lifecycle: lc, r: r} }

type drainFirst struct {
	fx.Lifecycle
	r *Readiness
}

func (d drainFirst) Append(h fx.Hook) {
	d.Lifecycle.Append(h)
	if h.OnStop != nil {
		d.Lifecycle.Append(fx.Hook{OnStop: d.drain})
	}
}

func (d drainFirst) drain(ctx context.Context) error {
	d.r.Drain(ctx)
	return nil
}

// Ready reports whether the app has started and is not stopping.
func (r *Readiness) Ready() bool { return r.phase.Load() == phaseReady }

// Stopping reports whether shutdown has begun, for handlers that should
// refuse new long-lived work (streams, websocket upgrades) while draining.
func (r *Readiness) Stopping() bool { return r.phase.Load() == phaseStopping }

// phaseName is the phase in the words /readyz uses.
func (r *Readiness) phaseName() string {
	switch r.phase.Load() {
	case phaseReady:
		return "ready"
	case phaseStopping:
		return "stopping"
	default:
		return "starting"
	}
}

// EventLogger wraps inner so that fx's own events drive r:
// *fxevent.Started without error marks the service ready, and
// *fxevent.Stopping (App.Run got a signal) or the first
// *fxevent.OnStopExecuting (App.Stop) turns it not-ready at once. The drain
// delay itself is a stop step (Drain), bounded by the stop's ctx. Every
// event is forwarded to inner; a nil inner drops them.
//
// Use it with fx.WithLogger:
//
//	fx.WithLogger(func(log *zap.Logger, r *lifecycle.Readiness) fxevent.Logger {
//		return lifecycle.EventLogger(&fxevent.ZapLogger{Logger: log}, r)
//	})
func EventLogger(inner fxevent.Logger, r *Readiness) fxevent.Logger {
	if inner == nil {
		inner = fxevent.NopLogger
	}
	return &readinessLogger{inner: inner, ready: r}
}

type readinessLogger struct {
	inner fxevent.Logger
	ready *Readiness
}

// LogEvent forwards e and updates readiness.
func (l *readinessLogger) LogEvent(e fxevent.Event) {
	switch ev := e.(type) {
	case *fxevent.Started:
		if ev.Err == nil && l.ready != nil {
			l.ready.MarkStarted()
		}
	case *fxevent.Stopping, *fxevent.OnStopExecuting:
		if l.ready != nil {
			l.ready.BeginStop()
		}
	}
	l.inner.LogEvent(e)
}
