package config

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// ModuleName names the config floor in logs and health.
const ModuleName = "config"

// Module provides the app's *Values (every Value made by ProvideValue) and
// registers its "config" health checker. The Source and the Snapshot come
// from elsewhere: modules/coord provides the etcd Source, fxinfra the
// Snapshot.
var Module = fx.Module(ModuleName,
	fx.Provide(NewValues),
	fx.Invoke(func(agg *lifecycle.Aggregator, vs *Values) { agg.Add(vs) }),
)

// ValueParams is what ProvideValue's constructor takes from the fx graph.
// Logger, Snapshot and Values are optional; fxinfra provides all three.
type ValueParams struct {
	fx.In

	Lifecycle fx.Lifecycle
	Source    Source
	Identity  lifecycle.Identity
	Logger    *zap.Logger `optional:"true"`
	Snapshot  *Snapshot   `optional:"true"`
	Values    *Values     `optional:"true"`
}

// ProvideValue returns an fx constructor of *Value[T] for component, so every
// module makes its Value the same way:
//
//	fx.Provide(config.ProvideValue[Config]("cache"))
//
// The constructor does no I/O. It registers the Value's own hooks: OnStart
// loads and starts watching (fx runs it after the Source's hooks, since the
// Source is built first, and before the hooks of whatever uses the Value);
// OnStop ends the watch. So a Value in the graph is always started: nobody
// can forget it and run on defaults unawares. Read changes with Subscribe.
func ProvideValue[T Schema[T]](component string, opts ...ValueOption) func(ValueParams) *Value[T] {
	return func(p ValueParams) *Value[T] {
		all := make([]ValueOption, 0, len(opts)+2)
		if p.Logger != nil {
			all = append(all, WithLogger(p.Logger))
		}
		if p.Snapshot != nil {
			all = append(all, WithSnapshot(p.Snapshot))
		}
		v := NewValue[T](component, p.Source, p.Identity, append(all, opts...)...)
		p.Lifecycle.Append(fx.Hook{OnStart: v.Start, OnStop: v.Stop})
		if p.Values != nil {
			p.Values.add(v)
		}
		return v
	}
}
