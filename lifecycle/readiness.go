package lifecycle

import (
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/fx/fxevent"
)

// The phases of a Readiness. They only move forward.
const (
	phaseStarting int32 = iota
	phaseReady
	phaseStopping
)

// Readiness tells whether the service should receive traffic. It moves one
// way only: not started -> ready (once the whole app has started) -> stopping
// (as soon as shutdown begins). The zero value is usable and not ready.
type Readiness struct {
	phase    atomic.Int32
	drain    atomic.Int64 // time.Duration
	stopOnce sync.Once
}

// NewReadiness returns a Readiness that is not ready yet.
func NewReadiness() *Readiness { return &Readiness{} }

// MarkStarted makes the service ready. It does nothing once stopping has
// begun, so a late Started event cannot bring a stopping service back.
func (r *Readiness) MarkStarted() { r.phase.CompareAndSwap(phaseStarting, phaseReady) }

// SetDrainDelay sets how long the first BeginStop waits after turning
// not-ready. The wait gives load balancers time to see /readyz fail (and
// endpoints controllers time to remove the instance) before the service's
// own OnStop hooks close listeners and clients. Negative counts as zero.
func (r *Readiness) SetDrainDelay(d time.Duration) { r.drain.Store(int64(max(d, 0))) }

// BeginStop turns the service not-ready at once and, on its first call only,
// then sleeps the drain delay. Concurrent callers block until that first
// call's delay is over, so nothing proceeds with shutdown before the drain.
// The delay is skipped when the service never became ready (a failed start
// rolling back), because no load balancer is sending it traffic.
func (r *Readiness) BeginStop() {
	r.stopOnce.Do(func() {
		prev := r.phase.Swap(phaseStopping)
		if d := time.Duration(r.drain.Load()); prev == phaseReady && d > 0 {
			time.Sleep(d)
		}
	})
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

// EventLogger wraps inner so that fx's own events drive r: *fxevent.Started
// without error marks the service ready, and *fxevent.Stopping or the first
// *fxevent.OnStopExecuting begins the stop. fx has no hook that runs before
// the first OnStop hook, but it logs these events synchronously on the
// goroutine that runs the hooks, so BeginStop's drain delay happens before any
// OnStop hook. Stopping is only emitted by App.Run on a signal or Shutdown;
// App.Stop (and fxtest's RequireStop) goes straight to the hooks, hence
// OnStopExecuting. Every event is forwarded to inner; a nil inner drops them.
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

// LogEvent forwards e and updates readiness. For Stopping the signal is
// logged before the drain; for OnStopExecuting the drain comes first so the
// log line is stamped when the hook really starts.
func (l *readinessLogger) LogEvent(e fxevent.Event) {
	switch ev := e.(type) {
	case *fxevent.Started:
		l.inner.LogEvent(e)
		if ev.Err == nil && l.ready != nil {
			l.ready.MarkStarted()
		}
	case *fxevent.Stopping:
		l.inner.LogEvent(e)
		if l.ready != nil {
			l.ready.BeginStop()
		}
	case *fxevent.OnStopExecuting:
		if l.ready != nil {
			l.ready.BeginStop()
		}
		l.inner.LogEvent(e)
	default:
		l.inner.LogEvent(e)
	}
}
