package coord_test

import (
	"context"
	"fmt"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/coord"
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
