package fxinfra_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/fx"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/fxinfra"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord"
	"github.com/gochat/im-infra/modules/coord/discovery"
)

// A service: the infrastructure, then the service's own module, which
// registers itself for discovery at start. A real main calls
// fx.New(fxinfra.Module, orders).Run() and takes its settings from the
// process (IMINFRA_SERVICE, IMINFRA_ETCD_ENDPOINTS, ...); here they point at
// an etcd of the example's own.
func Example() {
	etcd, err := devstack.StartEtcd(devstack.EtcdOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer etcd.Close()
	dir, _ := os.MkdirTemp("", "fxinfra-example-")
	defer os.RemoveAll(dir)

	orders := fx.Module("orders",
		fx.Invoke(func(lc fx.Lifecycle, reg *discovery.Registry) {
			lc.Append(fx.StartHook(func(ctx context.Context) error {
				return reg.Register(ctx, discovery.ServiceInstance{ID: "orders-1", Name: "orders", Addr: "10.0.0.7:9000"})
			}))
		}),
	)
	var peers *discovery.Discovery
	app := fx.New(fxinfra.Module, orders, fx.Populate(&peers), fx.NopLogger,
		fx.Replace(lifecycle.MapEnviron(map[string]string{
			lifecycle.EnvService: "orders",
			lifecycle.EnvEnv:     "test",
			coord.EnvEndpoints:   etcd.Endpoint(),
			fxinfra.EnvAdminAddr: "127.0.0.1:0",
			fxinfra.EnvSnapshot:  filepath.Join(dir, "snapshot.json"),
		})),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	found, err := peers.Discover(ctx, "orders")
	fmt.Println(len(found), found[0].Addr, err)
	fmt.Println(app.Stop(ctx))
	// Output:
	// 1 10.0.0.7:9000 <nil>
	// <nil>
}
