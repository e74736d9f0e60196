package coord

import (
	"context"
	"time"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
	"github.com/gochat/im-infra/modules/coord/discovery"
	"github.com/gochat/im-infra/modules/coord/locking"
)

// ModuleName names the module in logs, health and errors.
const ModuleName = "coord"

// EtcdName is the fx name of the raw etcd client. A constructor that needs
// it takes it in its fx.In struct as
//
//	Etcd *clientv3.Client `name:"etcd"`
//
// and code holding a *Client calls Client.Raw.
const EtcdName = "etcd"

// Module is coord's one fx entry point. It reads the etcd connection from
// the lifecycle.Environ (IMINFRA_ETCD_*) and provides *Client, the raw
// *clientv3.Client named "etcd" (EtcdName), *Source (also as
// config.Source), *Center and the "coord" health check; and, through
// discovery.Module and locking.Module, *discovery.Registry (with its
// "registry" health check and config component), *discovery.Discovery,
// *discovery.ResolverBuilder, *locking.Locker, *locking.Elector and
// *locking.IDAllocator (with config component "locking"). fx builds only
// what something asks for.
//
// The client's hooks are registered when the client is constructed, which
// is before anything that depends on it, so its OnStop (Close) runs after
// theirs (deregistration, unlock, resign, ID release): fx stops hooks in
// reverse order.
var Module = fx.Module(ModuleName,
	fx.Provide(
		loadEnvConfig,
		newFx,
		fx.Annotate((*Client).Raw, fx.ResultTags(`name:"`+EtcdName+`"`)),
		fx.Annotate(NewSource, fx.As(fx.Self()), fx.As(new(config.Source))),
		NewCenter,
	),
	discovery.Module,
	locking.Module,
)

func loadEnvConfig(e lifecycle.Environ) (Config, error) { return LoadConfig(e.Env) }

type fxParams struct {
	fx.In

	Lifecycle fx.Lifecycle
	Config    Config
	Logger    *zap.Logger
	Health    *lifecycle.Aggregator
}

// newFx builds the client (phase 1, no network) and ties it to the app:
// OnStart probes etcd and never fails the start, because an etcd outage
// must not stop a service that can run on its snapshot; OnStop closes the
// client.
func newFx(p fxParams) (*Client, error) {
	log := clog.ModuleLogger(p.Logger, ModuleName)
	c, err := NewClient(p.Config, WithLogger(log))
	if err != nil {
		return nil, err
	}
	p.Health.Add(NewHealthChecker(c))
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			began := time.Now()
			if err := c.Start(ctx); err != nil {
				log.Warn("etcd unreachable at start; running degraded until it answers",
					zap.Strings("endpoints", c.safeEndpoints()), zap.Duration("took", time.Since(began)), zap.Error(err))
				return nil
			}
			log.Info("connected to etcd", zap.Strings("endpoints", c.safeEndpoints()), zap.Duration("took", time.Since(began)))
			return nil
		},
		OnStop: func(context.Context) error {
			began := time.Now()
			err := c.Close()
			log.Info("etcd client closed", zap.Duration("took", time.Since(began)))
			return err
		},
	})
	return c, nil
}
