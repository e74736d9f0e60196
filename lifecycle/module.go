package lifecycle

import (
	"context"

	"go.opentelemetry.io/otel/metric"
	"go.uber.org/fx"
	"go.uber.org/zap"
)

// ModuleName names floor 1 in logs.
const ModuleName = "lifecycle"

// Module provides the phase-1 pieces of floor 1: the process Environ and
// Identity, the *Readiness, the health *Aggregator and the *ErrorHandler.
// It wires neither the admin server's config nor its hooks: fxinfra owns
// the admin config and the drain step.
//
// Checkers are registered with Aggregator.Add by the constructor of the
// component they check, never through a value group: a group would make fx
// build every component that has a checker, and a service that never asks
// for a cache must not start a Redis client.
var Module = fx.Module(ModuleName,
	fx.Provide(
		ProcessEnviron,
		identityFromEnviron,
		NewReadiness,
		newModuleAggregator,
		newModuleErrorHandler,
	),
)

func identityFromEnviron(e Environ) (Identity, error) { return LoadIdentity(e.Args, e.Getenv) }

// aggregatorParams lets fxinfra supply options and a logger.
type aggregatorParams struct {
	fx.In

	Options AggregatorOptions `optional:"true"`
	Logger  *zap.Logger       `optional:"true"`
}

func newModuleAggregator(p aggregatorParams) *Aggregator {
	opts := p.Options
	if opts.Logger == nil && p.Logger != nil {
		opts.Logger = p.Logger.Named("health")
	}
	return NewAggregator(nil, opts)
}

type errorHandlerParams struct {
	fx.In

	Meter metric.MeterProvider `optional:"true"`
}

func newModuleErrorHandler(p errorHandlerParams) *ErrorHandler { return NewErrorHandler(p.Meter) }

// RegisterAdmin ties s to lc: OnStart listens; OnStop first drains
// (Readiness.Drain: readiness off, OnDrain functions, the drain delay) while
// the server still answers /readyz with 503, then shuts it down. Register it
// after every other hook (fxinfra does) so that it starts last and stops
// first.
func RegisterAdmin(lc fx.Lifecycle, s *AdminServer, ready *Readiness) {
	lc.Append(fx.Hook{
		OnStart: s.Start,
		OnStop: func(ctx context.Context) error {
			ready.Drain(ctx)
			return s.Stop(ctx)
		},
	})
}
