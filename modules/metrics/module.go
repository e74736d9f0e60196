package metrics

import (
	"context"
	"fmt"
	"net/http"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
)

// ModuleName names the module in config keys, logs, health and errors.
const ModuleName = "metrics"

// Module provides *Provider and, from it, the metric.MeterProvider,
// trace.TracerProvider and propagation.TextMapPropagator that the other
// modules take. It is built in every app that includes it (it costs no
// network), so the Prometheus endpoint is always served on the admin
// server.
var Module = fx.Module(ModuleName,
	fx.Provide(
		config.ProvideValue[Config](ModuleName),
		newFx,
		func(p *Provider) metric.MeterProvider { return p.MeterProvider() },
		func(p *Provider) trace.TracerProvider { return p.TracerProvider() },
		func(p *Provider) propagation.TextMapPropagator { return p.Propagator() },
	),
	fx.Invoke(func(*Provider) {}),
)

type fxParams struct {
	fx.In

	Lifecycle fx.Lifecycle
	Config    *config.Value[Config]
	Identity  lifecycle.Identity
	Logger    *zap.Logger
	Health    *lifecycle.Aggregator
	Values    *config.Values         `optional:"true"`
	Admin     *lifecycle.AdminServer `optional:"true"` // nil: mount Provider.Handler yourself
}

// newFx builds the Provider in phase 1 (no I/O) and registers one hook.
// OnStart reads the config (its Value started first), builds the SDK,
// mounts the endpoint on the admin server (which listens later) and
// follows config changes; OnStop shuts the SDK down within the stop ctx.
func newFx(p fxParams) (*Provider, error) {
	log := clog.ModuleLogger(p.Logger, ModuleName)
	prov, err := newProvider(WithLogger(log), WithIdentity(p.Identity), WithHealth(p.Health), WithConfigValues(p.Values))
	if err != nil {
		return nil, err
	}
	var cancel func()
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			cfg := p.Config.Get()
			if err := prov.Start(ctx, cfg); err != nil {
				return err
			}
			if p.Admin != nil {
				if err := mount(p.Admin, cfg.Path, prov.Handler()); err != nil {
					_ = prov.Shutdown(ctx)
					return err
				}
			}
			cancel = p.Config.Subscribe(func(_, cur Config) { prov.Reconfigure(cur) })
			return nil
		},
		OnStop: func(ctx context.Context) error {
			if cancel != nil {
				cancel()
			}
			return prov.Shutdown(ctx)
		},
	})
	return prov, nil
}

// mount registers h for GET (and HEAD) at path. ServeMux panics on a
// pattern that clashes with one already registered; that is a config
// error here, not a crash.
func mount(admin *lifecycle.AdminServer, path string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = lifecycle.ConfigError(ModuleName, "path", fmt.Sprintf("cannot serve metrics at %s: %v", path, r), nil)
		}
	}()
	admin.Handle("GET "+path, h)
	return nil
}
