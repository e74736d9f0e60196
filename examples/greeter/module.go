package greeter

import (
	"context"
	"time"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
)

// ModuleName names the module in config keys, logs, health and errors.
const ModuleName = "greeter"

// Module provides *Greeter. It is built only if something asks for it.
var Module = fx.Module(ModuleName,
	fx.Provide(
		config.ProvideValue[Config](ModuleName), // starts and stops itself
		newFx,
	),
)

type fxParams struct {
	fx.In

	Lifecycle fx.Lifecycle
	Config    *config.Value[Config]
	Logger    *zap.Logger
	Health    *lifecycle.Aggregator
}

// newFx does no I/O: it builds the greeter, registers its checker and
// appends one hook. The Value's own hook runs before this one, so OnStart
// sees the loaded config.
func newFx(p fxParams) *Greeter {
	log := clog.ModuleLogger(p.Logger, ModuleName)
	g := newGreeter(p.Config.Get, log)
	p.Health.Add(g)
	var cancel func()
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			began := time.Now()
			// Called at once with the current config, then on every change.
			cancel = p.Config.Subscribe(func(old, cfg Config) {
				if old.Interval != cfg.Interval {
					g.SetInterval(cfg.Interval.Std())
				}
			})
			g.Start()
			log.Info("greeter started", zap.String("message", p.Config.Get().Message),
				zap.Duration("interval", p.Config.Get().Interval.Std()), zap.Duration("took", time.Since(began)))
			return nil
		},
		OnStop: func(ctx context.Context) error {
			cancel()
			err := g.Stop(ctx)
			log.Info("greeter stopped", zap.Int64("greeted", g.Greeted()))
			return err
		},
	})
	return g
}
