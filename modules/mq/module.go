package mq

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
const ModuleName = "mq"

// Module provides *mq.Client, read from the "mq" config component. fx
// builds it only if something asks for it: a service that never does dials
// no broker, needs no mq config and shows no "mq" health check.
//
// Consumers subscribed before the app starts (from an fx.Invoke or a
// constructor) join their groups once the client has connected. On stop
// the consumers drain, commit and leave their groups, then the producer is
// flushed, all within the stop ctx.
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

// newFx does no I/O: it builds the client, registers its checker and
// appends one hook. The Value's own hook runs before this one, so OnStart
// sees the loaded config.
func newFx(p fxParams) *Client {
	log := clog.ModuleLogger(p.Logger, ModuleName)
	opts := []Option{WithLogger(log), withErrorHandler(p.Errors.Handle)}
	if p.Meter != nil {
		opts = append(opts, WithMeterProvider(p.Meter))
	}
	if p.Tracer != nil {
		opts = append(opts, WithTracerProvider(p.Tracer))
	}
	c := newClient(p.Config.Get(), opts...)
	p.Health.Add(c.Checker())
	var cancel func()
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			cfg := p.Config.Get()
			c.cfg.Store(&cfg)
			if err := c.Start(ctx); err != nil {
				return err
			}
			// Called at once with the current config, then on every change.
			cancel = p.Config.Subscribe(func(_, cfg Config) {
				if err := c.Update(cfg); err != nil {
					log.Warn("mq: config change not applied", zap.Error(err))
				}
			})
			return nil
		},
		OnStop: func(ctx context.Context) error {
			if cancel != nil {
				cancel()
			}
			return c.Close(ctx) // logs what it stopped and how long it took
		},
	})
	return c
}
