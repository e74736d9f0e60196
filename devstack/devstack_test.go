package devstack_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/devstack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEtcdStopRestartKeepsDataAndAddress(t *testing.T) {
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	require.NoError(t, err)
	defer e.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	ctx := context.Background()
	_, err = cli.Put(ctx, "k", "v")
	require.NoError(t, err)

	// An open watch must not slow the stop down: the proxy drops it.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_ = cli.Watch(wctx, "k")
	endpoint := e.Endpoint()
	began := time.Now()
	e.Stop()
	assert.Less(t, time.Since(began), 2*time.Second)
	assert.False(t, e.Running())

	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = cli.Get(short, "k")
	cancelShort()
	require.Error(t, err, "stopped means unreachable")

	require.NoError(t, e.Restart())
	assert.Equal(t, endpoint, e.Endpoint())
	resp, err := cli.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v", string(resp.Kvs[0].Value))
}
