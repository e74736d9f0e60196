package coord

import (
	"context"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/discovery"
	"github.com/gochat/im-infra/modules/coord/locking"
)

// ModuleName names the module in logs, health and errors.
const ModuleName = "coord"

// Module wires coord into an fx app. It needs a *zap.Logger and a
// lifecycle.Identity and provides: Config (from IMINFRA_ETCD_*), *Client,
// the raw client as `*clientv3.Client` named "etcd", *Source (also as
// config.Source), *Center and the "coord" health checker; and, through
// discovery.Module and locking.Module, the registry, discovery, the gRPC
// resolver builder, locks, elections and instance IDs.
//
// The client's hooks are registered when the client is constructed, which is
// before anything that depends on it, so its OnStop (Close) runs after theirs
// (deregistration, unlock, ID release): fx stops hooks in reverse order.
var Module = fx.Module(ModuleName,
	fx.Provide(
		loadEnvConfig,
		newLifecycleClient,
		fx.Annotate((*Client).Raw, fx.ResultTags(`name:"etcd"`)),
		fx.Annotate(NewSource, fx.As(fx.Self()), fx.As(new(config.Source))),
		NewCenter,
	),
	discovery.Module,
	locking.Module,
)

func loadEnvConfig(e lifecycle.Environ) (Config, error) { return LoadConfig(e.Env) }

// newLifecycleClient builds the client (phase 1, no network) and ties it to
// the app: OnStart probes etcd and never fails the start, because an etcd
// outage must not stop a service that can run on its snapshot; OnStop closes
// the client.
func newLifecycleClient(lc fx.Lifecycle, cfg Config, log *zap.Logger, agg *lifecycle.Aggregator) (*Client, error) {
	log = log.Named(ModuleName)
	c, err := NewClient(cfg, WithLogger(log))
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
