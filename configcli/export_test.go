package configcli

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// RunWithClient is Run on an etcd client that is already logged in, instead
// of a connection of its own. Most tests use it because etcd checks a
// password with bcrypt, which takes about a second per login under -race.
// The flags' connection path (coord.NewClient, TLS, credentials) is tested
// by the runs that use Run.
func (c CLI) RunWithClient(ctx context.Context, client *clientv3.Client, args []string) int {
	return c.run(ctx, args, client)
}
