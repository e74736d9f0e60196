package coord_test

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord"
	"github.com/gochat/im-infra/modules/coord/discovery"
	"github.com/gochat/im-infra/modules/coord/locking"
)

// Bootstrap config comes from the environment; etcd cannot configure its
// own endpoints.
func ExampleLoadConfig() {
	env := map[string]string{
		coord.EnvEndpoints: "http://etcd-0:2379,http://etcd-1:2379",
		coord.EnvUsername:  "im-repo",
		coord.EnvPassword:  "s3cret",
	}
	cfg, err := coord.LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		panic(err)
	}
	fmt.Println(cfg.Endpoints, cfg.Username, cfg.Password, cfg.ProbeTimeout)
	// Output: [http://etcd-0:2379 http://etcd-1:2379] im-repo ****** 3s
}

// A config-cli style edit: read, change, write back only if nobody else
// wrote in between.
func ExampleCenter_CompareAndSet() {
	etcd, err := devstack.StartEtcd(devstack.EtcdOptions{})
	if err != nil {
		panic(err)
	}
	defer etcd.Close()
	cfg := coord.Defaults()
	cfg.Endpoints = etcd.Endpoints()
	cli, err := coord.NewClient(cfg)
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	center := coord.NewCenter(cli)
	ctx := context.Background()

	key := "/config/dev/im-repo/cache"
	if _, err := center.SetJSON(ctx, key, []byte(`{"ttl":"1m"}`)); err != nil {
		panic(err)
	}
	cur, _, err := center.Get(ctx, key)
	if err != nil {
		panic(err)
	}
	ok, err := center.CompareAndSet(ctx, key, []byte(`{"ttl":"5m"}`), cur.ModRevision)
	fmt.Println("first edit:", ok, err)
	ok, err = center.CompareAndSet(ctx, key, []byte(`{"ttl":"9m"}`), cur.ModRevision)
	fmt.Println("stale edit:", ok, err)
	hist, _ := center.History(ctx, key, 10)
	for _, e := range hist {
		fmt.Printf("v%d %s\n", e.Version, e.Value)
	}
	// Output:
	// first edit: true <nil>
	// stale edit: false <nil>
	// v2 {"ttl":"5m"}
	// v1 {"ttl":"1m"}
}

// A service module written against coord.Module: it registers the instance
// at start (in the background if etcd is down), runs a job only while it
// leads, and uses the raw etcd client, named "etcd" in the graph, for what
// coord does not wrap.
func Example_module() {
	etcd, err := devstack.StartEtcd(devstack.EtcdOptions{})
	if err != nil {
		panic(err)
	}
	defer etcd.Close()

	type deps struct {
		fx.In
		Lifecycle fx.Lifecycle
		Registry  *discovery.Registry
		Elector   *locking.Elector
		Etcd      *clientv3.Client `name:"etcd"`
	}
	orders := fx.Module("orders", fx.Invoke(func(d deps) error {
		scheduler, err := d.Elector.NewElection("orders-scheduler")
		if err != nil {
			return err
		}
		d.Lifecycle.Append(fx.StartHook(func(ctx context.Context) error {
			if err := d.Registry.Register(ctx, discovery.ServiceInstance{ID: "orders-1", Name: "orders", Addr: "10.0.0.7:9000"}); err != nil {
				return err
			}
			fmt.Println("registered:", d.Registry.Registered("orders-1"))
			if err := scheduler.Campaign(ctx, "orders-1"); err != nil {
				return err
			}
			fmt.Println("leading:", scheduler.IsLeader())
			resp, err := d.Etcd.Get(ctx, discovery.ServiceKeyPrefix+"orders/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				return err
			}
			fmt.Println("instances in etcd:", resp.Count)
			return nil
		}))
		return nil
	}))

	app := fx.New(
		lifecycle.Module, config.Module, coord.Module,
		fx.Replace(lifecycle.MapEnviron(map[string]string{
			lifecycle.EnvService: "orders", lifecycle.EnvEnv: "dev", lifecycle.EnvInstance: "orders-1",
			coord.EnvEndpoints: etcd.Endpoint(),
		})),
		fx.Supply(zap.NewNop()),
		fx.NopLogger,
		orders,
	)
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		panic(err)
	}
	if err := app.Stop(ctx); err != nil {
		panic(err)
	}
	// Output:
	// registered: true
	// leading: true
	// instances in etcd: 1
}
