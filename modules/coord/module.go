package coord

import (
	"context"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/resolver"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// Module wires coord into an fx app. It needs a *zap.Logger and a
// lifecycle.Identity and provides: Config (from IMINFRA_ETCD_*), *Client and
// its *clientv3.Client, *Source (also as config.Source), *Center, the "coord"
// health checker, *Registry (and its "registry" health checker), *Discovery, the "etcd" gRPC resolver.Builder,
// *Locker and *IDAllocator (IDs of the identity's service).
//
// The client's hooks are registered when the client is constructed, which is
// before anything that depends on it, so its OnStop (Close) runs after theirs
// (deregistration, unlock, ID release): fx stops hooks in reverse order.
var Module = fx.Module(component,
	fx.Provide(
		loadEnvConfig,
		newLifecycleClient,
		(*Client).Raw,
		fx.Annotate(NewSource, fx.As(fx.Self()), fx.As(new(config.Source))),
		NewCenter,
		newLifecycleRegistry,
		newDiscovery,
		newResolverBuilder,
		newLifecycleLocker,
		newLifecycleIDAllocator,
	),
)

// The constructors below register their OnStop when built, which is after
// the client's, so each one releases its leases before the client closes.

func newLifecycleRegistry(lc fx.Lifecycle, cli *clientv3.Client, log *zap.Logger, agg *lifecycle.Aggregator) *Registry {
	r := NewRegistry(cli, log.Named(component), RegistryOptions{})
	lc.Append(fx.Hook{OnStop: r.Close})
	agg.Add(NewRegistryChecker(r))
	return r
}

func newDiscovery(cli *clientv3.Client, log *zap.Logger) *Discovery {
	return NewDiscovery(cli, log.Named(component))
}

// newResolverBuilder provides the "etcd" gRPC resolver for
// grpc.WithResolvers; it needs a client, so it cannot be registered globally.
func newResolverBuilder(cli *clientv3.Client) resolver.Builder { return NewResolverBuilder(cli) }

func newLifecycleLocker(lc fx.Lifecycle, cli *clientv3.Client, log *zap.Logger) (*Locker, error) {
	l, err := NewLocker(cli, log.Named(component), LockerOptions{})
	if err != nil {
		return nil, err
	}
	lc.Append(fx.Hook{OnStop: l.Close})
	return l, nil
}

func newLifecycleIDAllocator(lc fx.Lifecycle, cli *clientv3.Client, id lifecycle.Identity, log *zap.Logger) (*IDAllocator, error) {
	a, err := NewIDAllocator(cli, log.Named(component), IDAllocatorOptions{Service: id.Service, Holder: id.Instance})
	if err != nil {
		return nil, err
	}
	lc.Append(fx.Hook{OnStop: a.Close})
	return a, nil
}

func loadEnvConfig(e lifecycle.Environ) (Config, error) { return LoadConfig(e.Getenv) }

// newLifecycleClient builds the client (phase 1, no network) and ties it to
// the app: OnStart probes etcd and never fails the start, because an etcd
// outage must not stop a service that can run on its snapshot; OnStop closes
// the client.
func newLifecycleClient(lc fx.Lifecycle, cfg Config, log *zap.Logger, agg *lifecycle.Aggregator) (*Client, error) {
	log = log.Named(component)
	c, err := NewClient(cfg, log)
	if err != nil {
		return nil, err
	}
	agg.Add(NewHealthChecker(c))
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			if err := c.Start(ctx); err != nil {
				log.Warn("etcd unreachable at start; running degraded until it answers",
					zap.Strings("endpoints", c.safeEndpoints()),
					zap.Duration("probe_timeout", cfg.ProbeTimeout.Std()),
					zap.Error(err))
				return nil
			}
			log.Info("connected to etcd", zap.Strings("endpoints", c.safeEndpoints()))
			return nil
		},
		OnStop: func(context.Context) error { return c.Close() },
	})
	return c, nil
}
