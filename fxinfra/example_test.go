package fxinfra_test

import (
	"context"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/fxinfra"
	"github.com/gochat/im-infra/modules/clog"
	"github.com/gochat/im-infra/modules/coord"
)

// A service main: the infrastructure, then the service's own module. Run
// blocks until SIGINT/SIGTERM and then stops everything in order.
func Example() {
	orders := fx.Module("orders",
		fx.Invoke(func(lc fx.Lifecycle, log *clog.Logger, reg *coord.Registry) {
			lc.Append(fx.Hook{OnStart: func(ctx context.Context) error {
				log.Info("orders ready", zap.String("addr", "10.0.0.7:9000"))
				return reg.Register(ctx, coord.ServiceInstance{ID: "orders-1", Name: "orders", Addr: "10.0.0.7:9000"})
			}})
		}),
	)
	app := fx.New(fxinfra.Module, orders)
	_ = app // app.Run() in a real main
}
