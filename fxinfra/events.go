package fxinfra

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
)

// eventLogger is the app's fx event logger. Every fx event goes to the "fx"
// module logger at debug (levels.fx=debug shows the provide/invoke/hook
// log). What an operator needs goes to info: ready in X ms, stopping (and
// the signal), stopped in X ms. A start that fails prints exactly one error
// line, naming the component and the problem, without fx's provide list or
// a stack trace.
//
// It is built before anything else in the app, so it must not fail: until
// the app's own logger exists it writes through a bootstrap logger made
// from the process's flags and environment.
type eventLogger struct {
	created time.Time

	app      atomic.Pointer[zap.Logger] // the app's root logger, once built
	fallback *zap.Logger

	mu        sync.Mutex
	hook      string // the OnStart hook running now
	stopBegan time.Time
}

func newEventLogState(env lifecycle.Environ) *eventLogger {
	// The identity may be invalid (that error is reported as the start
	// failure); the bootstrap logger only borrows whatever fields it has.
	id, _ := lifecycle.LoadIdentity(env.Args, env.Getenv)
	return &eventLogger{created: time.Now(), fallback: clog.NewBootstrap(id)}
}

func newEventLogger(l *eventLogger, ready *lifecycle.Readiness) fxevent.Logger {
	return lifecycle.EventLogger(l, ready)
}

// useAppLogger switches the event logger to the app's own logger. It is a
// root-level invoke, which fx runs once the modules have built theirs.
func useAppLogger(l *clog.Logger, ev *eventLogger, ready *lifecycle.Readiness) {
	ev.app.Store(l)
	ready.SetLogger(clog.ModuleLogger(l, ModuleName))
}

func (l *eventLogger) logger() *zap.Logger {
	if a := l.app.Load(); a != nil {
		return a
	}
	return l.fallback
}

// info is fxinfra's own logger: no stack traces, they are not what an
// operator needs from a start failure.
func (l *eventLogger) info() *zap.Logger {
	return clog.ModuleLogger(l.logger(), ModuleName).WithOptions(zap.AddStacktrace(zapcore.FatalLevel + 1))
}

func (l *eventLogger) LogEvent(e fxevent.Event) {
	debug := &fxevent.ZapLogger{Logger: clog.ModuleLogger(l.logger(), "fx")}
	debug.UseLogLevel(zapcore.DebugLevel)
	debug.UseErrorLevel(zapcore.DebugLevel)
	debug.LogEvent(e)

	switch ev := e.(type) {
	case *fxevent.OnStartExecuting:
		l.mu.Lock()
		// FunctionName, not CallerName: hooks are appended through
		// lifecycle.DrainFirst, which every CallerName would name.
		l.hook = ev.FunctionName
		l.mu.Unlock()
	case *fxevent.OnStartExecuted:
		if ev.Err == nil {
			l.mu.Lock()
			l.hook = ""
			l.mu.Unlock()
		}
	case *fxevent.Started:
		if ev.Err != nil {
			l.startFailed(ev.Err)
			return
		}
		l.info().Info("ready", zap.Duration("took", time.Since(l.created).Round(time.Millisecond)))
	case *fxevent.Stopping:
		l.beginStop()
		l.info().Info("stopping", zap.String("signal", strings.ToUpper(ev.Signal.String())))
	case *fxevent.OnStopExecuting:
		if l.beginStop() {
			l.info().Info("stopping")
		}
	case *fxevent.Stopped:
		l.mu.Lock()
		took := time.Since(l.stopBegan)
		l.mu.Unlock()
		if ev.Err != nil {
			l.info().Warn("stopped with errors", zap.Duration("took", took.Round(time.Millisecond)), zap.Error(ev.Err))
			return
		}
		l.info().Info("stopped", zap.Duration("took", took.Round(time.Millisecond)))
	}
}

func (l *eventLogger) beginStop() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopBegan.IsZero() {
		return false
	}
	l.stopBegan = time.Now()
	return true
}

// startFailed prints the one line a failed start gets: the component, the
// field and the message of the InfraError behind it, or the hook that hung.
func (l *eventLogger) startFailed(err error) {
	l.mu.Lock()
	hook := l.hook
	l.mu.Unlock()
	fields := []zap.Field{}
	var ie *lifecycle.InfraError
	switch {
	case errors.As(err, &ie):
		fields = append(fields, zap.String("component", ie.Component))
		if ie.Field != "" {
			fields = append(fields, zap.String("field", ie.Field))
		}
		fields = append(fields, zap.String("error", ie.Error()))
	case errors.Is(err, context.DeadlineExceeded) && hook != "":
		fields = append(fields, zap.String("component", componentOf(hook)), zap.String("hook", hook),
			zap.String("error", "the OnStart hook did not finish within the start timeout (fx.StartTimeout)"))
	default:
		if hook != "" {
			fields = append(fields, zap.String("component", componentOf(hook)), zap.String("hook", hook))
		}
		fields = append(fields, zap.String("error", innermost(err).Error()))
	}
	l.info().Error("start failed", fields...)
}

// componentOf names the package of a function such as
// "github.com/gochat/im-infra/modules/coord.newFx.func1".
func componentOf(fn string) string {
	pkg := fn
	if i := strings.LastIndexByte(pkg, '/'); i >= 0 {
		pkg = pkg[i+1:]
	}
	if i := strings.IndexByte(pkg, '.'); i >= 0 {
		pkg = pkg[:i]
	}
	return pkg
}

// innermost is the last error of err's chain: fx and dig wrap constructor
// errors in sentences about the provide graph that an operator cannot act on.
func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
