package discovery

import (
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// ModuleName names the package in logs, errors and its fx module.
const ModuleName = "discovery"

// RegistryComponent names the Registry's config component and its health
// checker.
const RegistryComponent = "registry"

// Module provides *Registry (and its "registry" health checker),
// *Discovery and *ResolverBuilder on the `*clientv3.Client` named "etcd"
// (coord.Module provides it and includes this module).
var Module = fx.Module(ModuleName,
	fx.Provide(
		newFxRegistry,
		newFxDiscovery,
		newFxResolverBuilder,
	),
)

type fxClient struct {
	fx.In
	Etcd   *clientv3.Client `name:"etcd"`
	Logger *zap.Logger
}

func newFxRegistry(lc fx.Lifecycle, p fxClient, agg *lifecycle.Aggregator) (*Registry, error) {
	r, err := NewRegistry(p.Etcd, Config{}.Defaults(), WithLogger(p.Logger.Named(ModuleName)))
	if err != nil {
		return nil, err
	}
	agg.Add(NewHealthChecker(r))
	lc.Append(fx.Hook{OnStop: r.Close})
	return r, nil
}

func newFxDiscovery(p fxClient) *Discovery {
	return NewDiscovery(p.Etcd, WithLogger(p.Logger.Named(ModuleName)))
}

func newFxResolverBuilder(p fxClient) *ResolverBuilder {
	return NewResolverBuilder(p.Etcd, WithLogger(p.Logger.Named(ModuleName)))
}
