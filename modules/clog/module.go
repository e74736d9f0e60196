package clog

import (
	"context"
	"errors"
	"sync"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// FxModule provides the root *Logger (bootstrapped for the
// lifecycle.Identity in the graph) and the live *config.Value[Config] read
// from the config.Source in the graph under component "clog". On start it
// loads that config, applies it and re-applies it on every change; on stop
// it flushes the logs.
var FxModule = fx.Module("clog",
	fx.Provide(
		newFxLogger,
		config.ProvideValue[Config]("clog"),
	),
	fx.Invoke(registerHooks),
)

func newFxLogger(id lifecycle.Identity) *Logger {
	Bootstrap(id)
	return L()
}

// registerHooks runs in phase 2, after the config source's own OnStart.
func registerHooks(lc fx.Lifecycle, v *config.Value[Config], l *Logger) {
	// mu orders the first Apply against change callbacks, so a change that
	// lands while starting is applied after, not before, the value it
	// replaces. seen records that a callback already applied something:
	// loading documents at Start notifies, and then there is nothing left to do.
	var (
		mu     sync.Mutex
		seen   bool
		cancel func()
	)
	apply := func(cfg Config) {
		if err := Apply(cfg); err != nil {
			l.Warn("clog: config not applied; keeping the current logger", zap.Error(err))
		}
	}
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			cancel = v.Subscribe(func(_, cfg Config) {
				mu.Lock()
				defer mu.Unlock()
				seen = true
				apply(cfg)
			})
			if err := v.Start(ctx); err != nil {
				cancel()
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if !seen {
				// No document (or the source is down): apply the defaults or
				// snapshot. A logging config that cannot be applied (an
				// unwritable file) must not keep the service down; it keeps
				// logging to stderr and says why.
				apply(v.Get())
			}
			return nil
		},
		OnStop: func(ctx context.Context) error {
			if cancel != nil {
				cancel()
			}
			return errors.Join(v.Stop(ctx), Sync())
		},
	})
}

// FxEventLogger logs fx's own events (provides, invokes, hooks) at debug
// level through l, so they stay out of production logs until l's level is
// lowered; failures are still logged at error level. Giving it
// Module("fx") lets levels.fx=debug turn them on live.
func FxEventLogger(l *Logger) fxevent.Logger {
	zl := &fxevent.ZapLogger{Logger: l}
	zl.UseLogLevel(zapcore.DebugLevel)
	return zl
}
