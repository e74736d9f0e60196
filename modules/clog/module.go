package clog

import (
	"context"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// ModuleName names clog's config component ("clog") and its fx module.
const ModuleName = "clog"

// TeeName is the fx name under which a test can supply a zapcore.Core that
// receives every entry of the app's logging, through every config change
// (clogtest does).
const TeeName = "clog.tee"

// Module gives the app its own logging state and provides its root *Logger
// (bootstrapped for the lifecycle.Identity in the graph: console in dev,
// JSON elsewhere) and the live *config.Value[Config] of component "clog". On
// start it applies that config (the production logger) and re-applies it on
// every change; on stop it flushes the logs. The package facade (L, For,
// Info, ...) follows the app while it lives, so two apps in one process (as
// parallel tests) keep separate loggers, levels and outputs.
var Module = fx.Module(ModuleName,
	fx.Provide(
		newAppLogging,
		func(a *appLogging) *Logger { return a.root },
		config.ProvideValue[Config](ModuleName),
	),
	fx.Invoke(applyConfigLive),
)

// appLogging is one app's logging state.
type appLogging struct {
	hub   *hub
	root  *Logger
	began time.Time
}

type appLoggingParams struct {
	fx.In

	Identity  lifecycle.Identity
	Lifecycle fx.Lifecycle
	Tee       zapcore.Core `name:"clog.tee" optional:"true"`
}

func newAppLogging(p appLoggingParams) *appLogging {
	st := initialState(p.Identity.Env)
	st.tee = p.Tee
	st.base = st.withTee(st.raw)
	h := newHub(st)
	h.bootstrap(p.Identity)
	install(h)
	a := &appLogging{hub: h, root: newLogger(h.ref, "", nil), began: time.Now()}
	ModuleLogger(a.root, ModuleName).Info("bootstrap logger ready; the production config is applied at start",
		zap.String("version", p.Identity.Version))
	// Appended first (the logger is the first thing an app builds), so it
	// runs last on stop: every other component can still log its stop.
	p.Lifecycle.Append(fx.StopHook(func() error {
		err := h.cur.Load().base.Sync()
		uninstall(h)
		if st := h.cur.Load(); st.sink != nil {
			_ = st.sink.Close()
		}
		return err
	}))
	return a
}

// applyConfigLive runs in phase 2, after the config Value's own OnStart.
func applyConfigLive(lc fx.Lifecycle, v *config.Value[Config], a *appLogging) {
	log := ModuleLogger(a.root, ModuleName)
	var cancel func()
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			first := true
			cancel = v.Subscribe(func(_, cfg Config) {
				// A config that cannot be applied (an unwritable file) must
				// not keep the service down: it keeps logging as before and
				// says why.
				if err := a.hub.apply(cfg); err != nil {
					log.Warn("logging config not applied; keeping the current logger", zap.Error(err))
					return
				}
				if first {
					log.Info("production logger applied", zap.String("level", cfg.Level), zap.String("format", cfg.Format),
						zap.String("output", cfg.Output), zap.Duration("since_bootstrap", time.Since(a.began)))
				}
				first = false
			})
			return nil
		},
		OnStop: func(context.Context) error {
			if cancel != nil {
				cancel()
			}
			return nil
		},
	})
}

// FxEventLogger logs fx's own events (provides, invokes, hooks) at debug
// level through l, so they stay out of production logs until l's level is
// lowered; failures are still logged at error level. Giving it
// ModuleLogger(root, "fx") lets levels.fx=debug turn them on live.
func FxEventLogger(l *Logger) fxevent.Logger {
	zl := &fxevent.ZapLogger{Logger: l}
	zl.UseLogLevel(zapcore.DebugLevel)
	return zl
}
