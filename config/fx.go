package config

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// ValueParams is what ProvideValue's constructor takes from the fx graph.
// Logger and Snapshot are optional; fxinfra provides both.
type ValueParams struct {
	fx.In

	Source   Source
	Identity lifecycle.Identity
	Logger   *zap.Logger `optional:"true"`
	Snapshot *Snapshot   `optional:"true"`
}

// ProvideValue returns an fx constructor of *Value[T] for component, so every
// module makes its Value the same way:
//
//	fx.Provide(config.ProvideValue[Config]("cache"))
//
// The constructor does no I/O; the module starts the Value in its OnStart
// hook, which fx runs after the Source's own hooks.
func ProvideValue[T Schema[T]](component string, opts ...ValueOption) func(ValueParams) *Value[T] {
	return func(p ValueParams) *Value[T] {
		all := make([]ValueOption, 0, len(opts)+2)
		if p.Logger != nil {
			all = append(all, WithLogger(p.Logger))
		}
		if p.Snapshot != nil {
			all = append(all, WithSnapshot(p.Snapshot))
		}
		return NewValue[T](component, p.Source, p.Identity, append(all, opts...)...)
	}
}
