package discovery_test

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/coord/discovery"
)

// regExampleEtcd starts an embedded etcd and a client on it for an example.
func regExampleEtcd() (*clientv3.Client, func()) {
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	if err != nil {
		panic(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		panic(err)
	}
	return cli, func() { _ = cli.Close(); e.Close() }
}

// A service registers itself at start and deregisters at stop; peers
// discover it by name.
func ExampleRegistry() {
	cli, stop := regExampleEtcd()
	defer stop()
	ctx := context.Background()

	reg, err := discovery.NewRegistry(cli, discovery.Config{}.Defaults())
	if err != nil {
		panic(err)
	}
	err = reg.Register(ctx, discovery.ServiceInstance{
		ID: "im-repo-0", Name: "im-repo", Addr: "10.0.0.7:9000",
		Metadata: map[string]string{"zone": "z1"},
	})
	if err != nil {
		panic(err)
	}

	instances, err := discovery.NewDiscovery(cli).Discover(ctx, "im-repo")
	if err != nil {
		panic(err)
	}
	for _, inst := range instances {
		fmt.Println(inst.ID, inst.Addr, inst.Metadata["zone"])
	}

	// In OnStop, before the etcd client closes.
	if err := reg.Close(ctx); err != nil {
		panic(err)
	}
	// Output: im-repo-0 10.0.0.7:9000 z1
}

// Watch first reports the instances already registered, then each change.
func ExampleDiscovery_Watch() {
	cli, stop := regExampleEtcd()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	reg, err := discovery.NewRegistry(cli, discovery.Config{}.Defaults())
	if err != nil {
		panic(err)
	}
	defer func() { _ = reg.Close(context.Background()) }()
	if err := reg.Register(ctx, discovery.ServiceInstance{ID: "a", Name: "im-logic", Addr: "10.0.0.1:9000"}); err != nil {
		panic(err)
	}

	events, err := discovery.NewDiscovery(cli).Watch(ctx, "im-logic")
	if err != nil {
		panic(err)
	}
	ev := <-events
	fmt.Println(ev.Type, ev.Instance.ID)

	if err := reg.Register(ctx, discovery.ServiceInstance{ID: "b", Name: "im-logic", Addr: "10.0.0.2:9000"}); err != nil {
		panic(err)
	}
	ev = <-events
	fmt.Println(ev.Type, ev.Instance.ID)

	if err := reg.Deregister(ctx, "a"); err != nil {
		panic(err)
	}
	ev = <-events
	fmt.Println(ev.Type, ev.Instance.ID)
	// Output:
	// added a
	// added b
	// removed a
}

// A gRPC client balances over the live instances of a service.
func ExampleNewResolverBuilder() {
	cli, stop := regExampleEtcd()
	defer stop()

	conn, err := grpc.NewClient("etcd:///im-repo",
		grpc.WithResolvers(discovery.NewResolverBuilder(cli)),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	fmt.Println(conn.Target())
	// Output: etcd:///im-repo
}
