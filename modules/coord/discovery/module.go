package discovery

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
)

// ModuleName names the package in logs, errors and its fx module.
const ModuleName = "discovery"

// RegistryComponent names the Registry's config component and its health
// checker.
const RegistryComponent = "registry"

// Module provides *Registry (with its "registry" health check and its
// *config.Value[Config] of component "registry"), *Discovery and
// *ResolverBuilder, on the *clientv3.Client named "etcd" that coord.Module
// provides (coord.Module includes this module). The Registry leaves etcd
// when the app's stop begins (lifecycle.Readiness.OnDrain), so peers that
// resolve the service stop routing to this instance during the drain, not
// after it; its OnStop deregisters whatever is left (an app.Stop without a
// drain).
var Module = fx.Module(ModuleName,
	fx.Provide(
		config.ProvideValue[Config](RegistryComponent),
		newFxRegistry,
		newFxDiscovery,
		newFxResolverBuilder,
	),
)

type fxRegistryParams struct {
	fx.In

	Lifecycle fx.Lifecycle
	Etcd      *clientv3.Client `name:"etcd"`
	Config    *config.Value[Config]
	Logger    *zap.Logger
	Health    *lifecycle.Aggregator
	Readiness *lifecycle.Readiness `optional:"true"`
}

func newFxRegistry(p fxRegistryParams) (*Registry, error) {
	log := clog.ModuleLogger(p.Logger, ModuleName)
	r, err := NewRegistry(p.Etcd, p.Config.Get(), WithLogger(log))
	if err != nil {
		return nil, err
	}
	p.Health.Add(NewHealthChecker(r))
	if p.Readiness != nil {
		p.Readiness.OnDrain(func(ctx context.Context) {
			n := r.count()
			if err := r.Close(ctx); err != nil {
				log.Warn("leaving the registry as the drain began failed; the keys expire with their leases", zap.Error(err))
				return
			}
			if n > 0 {
				log.Info("left the registry as the drain began", zap.Int("instances", n))
			}
		})
	}
	var cancel func()
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			// At once with the loaded config, then on every change; every
			// field applies from the next grant, attempt or request on.
			cancel = p.Config.Subscribe(func(_, cfg Config) { r.setConfig(cfg) })
			return nil
		},
		OnStop: func(ctx context.Context) error {
			if cancel != nil {
				cancel()
			}
			began := time.Now()
			n := r.count()
			err := r.Close(ctx)
			if n > 0 {
				log.Info("registry closed", zap.Int("instances", n), zap.Duration("took", time.Since(began)))
			}
			return err
		},
	})
	return r, nil
}

type fxClientParams struct {
	fx.In

	Etcd   *clientv3.Client `name:"etcd"`
	Logger *zap.Logger
}

func newFxDiscovery(p fxClientParams) *Discovery {
	return NewDiscovery(p.Etcd, WithLogger(clog.ModuleLogger(p.Logger, ModuleName)))
}

func newFxResolverBuilder(p fxClientParams) *ResolverBuilder {
	return NewResolverBuilder(p.Etcd, WithLogger(clog.ModuleLogger(p.Logger, ModuleName)))
}
