package cache

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
)

// ModuleName names the module in config keys, logs, health and errors.
const ModuleName = "cache"

// Module provides Cache from the "cache" config component. The Redis
// client (with its config Value, health checker and hooks) is built only
// if something asks for Cache.
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
	Errors    *lifecycle.ErrorHandler
	Meter     metric.MeterProvider `optional:"true"`
	Tracer    trace.TracerProvider `optional:"true"`
}

// newFx does no I/O: it builds the unconnected client, registers its
// checker and appends one hook. The Value's own hook runs before this one,
// so OnStart sees the loaded config.
func newFx(p fxParams) (Cache, error) {
	log := clog.ModuleLogger(p.Logger, ModuleName)
	c, err := newClient(WithLogger(log), WithMeterProvider(p.Meter), WithTracerProvider(p.Tracer), WithErrorHandler(p.Errors))
	if err != nil {
		return nil, err
	}
	p.Health.Add(NewHealthChecker(c))
	var cancel func()
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			// start validates, connects within ctx and dialTimeout, and
			// logs "connected to redis" with the elapsed time.
			if err := c.start(ctx, p.Config.Get()); err != nil {
				return err
			}
			// Called at once with (current, current), which changes
			// nothing, then on every applied change.
			cancel = p.Config.Subscribe(func(_, cfg Config) {
				if err := c.UpdateConfig(cfg); err != nil {
					log.Warn("cache config change not applied", zap.Error(err))
				}
			})
			return nil
		},
		OnStop: func(ctx context.Context) error {
			if cancel != nil {
				cancel()
			}
			began := time.Now()
			done := make(chan error, 1)
			go func() { done <- c.Close() }()
			select {
			case err := <-done:
				return err
			case <-ctx.Done():
				// Close goes on (each step is bounded by commandTimeout or
				// loadTimeout); the app's stop must not wait past its ctx.
				log.Warn("cache close did not finish within the stop timeout", zap.Duration("waited", time.Since(began)))
				return lifecycle.TimeoutError(ModuleName, "stop", ctx.Err())
			}
		},
	})
	return c, nil
}
