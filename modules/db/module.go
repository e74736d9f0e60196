package db

import (
	"context"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
)

// ModuleName names the module in config keys, logs, health and errors.
const ModuleName = "db"

// Module provides *DB from the "db" config component. The pool is opened
// (in OnStart) only if something asks for *DB; a service without a
// database needs no db config and shows no db health check.
var Module = fx.Module(ModuleName,
	fx.Provide(
		config.ProvideValue[Config](ModuleName),
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

// newFx does no I/O: it builds an unopened DB, registers its checker and
// appends one hook. The Value's own hook runs first, so OnStart sees the
// loaded config. A service that migrates does it in its own OnStart, which
// runs after this one because it depends on *DB.
func newFx(p fxParams) *DB {
	log := clog.ModuleLogger(p.Logger, ModuleName)
	d := newDB(options{log: log, meter: p.Meter, tracer: p.Tracer})
	p.Health.Add(NewHealthChecker(d))
	var cancel func()
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			if err := d.open(ctx, p.Config.Get()); err != nil {
				return p.Errors.Handle(ctx, err)
			}
			// Called at once with the current config (a change that landed
			// since Get applies here), then on every change, in order.
			cancel = p.Config.Subscribe(func(_, cfg Config) {
				if err := d.Apply(cfg); err != nil {
					log.Warn("db config change not applied", zap.Error(err))
				}
			})
			return nil
		},
		OnStop: func(ctx context.Context) error {
			if cancel != nil {
				cancel()
			}
			return p.Errors.Handle(ctx, d.closeWithin(ctx))
		},
	})
	return d
}

// closeWithin closes d, giving up waiting when ctx ends (the pool then
// finishes closing in the background).
func (d *DB) closeWithin(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- d.Close() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return lifecycle.TimeoutError(ModuleName, "close", ctx.Err())
	}
}
