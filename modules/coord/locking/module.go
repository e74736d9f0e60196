package locking

import (
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// ModuleName names the package in config keys, logs, errors and its fx
// module.
const ModuleName = "locking"

// Module provides *Locker and *IDAllocator (IDs of the identity's service)
// on the `*clientv3.Client` named "etcd" (coord.Module provides it and
// includes this module).
var Module = fx.Module(ModuleName,
	fx.Provide(
		newFxLocker,
		newFxIDAllocator,
	),
)

type fxClient struct {
	fx.In
	Etcd     *clientv3.Client `name:"etcd"`
	Logger   *zap.Logger
	Identity lifecycle.Identity
}

func newFxLocker(lc fx.Lifecycle, p fxClient) (*Locker, error) {
	l, err := NewLocker(p.Etcd, Config{}.Defaults(), WithLogger(p.Logger.Named(ModuleName)))
	if err != nil {
		return nil, err
	}
	lc.Append(fx.Hook{OnStop: l.Close})
	return l, nil
}

func newFxIDAllocator(lc fx.Lifecycle, p fxClient) (*IDAllocator, error) {
	a, err := NewIDAllocator(p.Etcd, p.Identity.Service, Config{}.Defaults(),
		WithLogger(p.Logger.Named(ModuleName)), WithHolder(p.Identity.Instance))
	if err != nil {
		return nil, err
	}
	lc.Append(fx.Hook{OnStop: a.Close})
	return a, nil
}
