package devstack_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/devstack"
)

// An embedded etcd for a test or a dev run: real server, free port, gone
// at Close; Stop and Restart keep its data, as an outage would.
func ExampleStartEtcd() {
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = cli.Put(ctx, "/config/dev/svc/clog", `{"level":"debug"}`)
	fmt.Println(strings.HasPrefix(e.Endpoint(), "http://127.0.0.1:"), err)

	e.Stop()
	fmt.Println(e.Restart())
	resp, err := cli.Get(ctx, "/config/dev/svc/clog")
	fmt.Println(string(resp.Kvs[0].Value), err)
	// Output:
	// true <nil>
	// <nil>
	// {"level":"debug"} <nil>
}
