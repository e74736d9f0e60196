package devstack_test

import (
	"context"
	"net"
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

func TestEtcdClusterSurvivesLeaderKill(t *testing.T) {
	c, err := devstack.StartEtcdCluster(devstack.EtcdClusterOptions{})
	require.NoError(t, err)
	defer c.Close()
	require.Len(t, c.Members(), 3)
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = cli.Put(ctx, "k", "v")
	require.NoError(t, err)

	lead, err := c.Leader(ctx)
	require.NoError(t, err)
	assert.True(t, lead.IsLeader())
	lead.Kill()
	assert.False(t, lead.Running())
	next, err := c.Leader(ctx)
	require.NoError(t, err)
	assert.NotSame(t, lead, next, "the survivors elect a new leader")
	resp, err := cli.Get(ctx, "k")
	require.NoError(t, err, "the client fails over to the survivors")
	assert.Equal(t, "v", string(resp.Kvs[0].Value))

	require.NoError(t, lead.Restart())
	assert.True(t, lead.Running())
	assert.Len(t, c.Endpoints(), 3)
	assert.Len(t, c.DirectEndpoints(), 3)
}

func TestEtcdBlackholeStallsWithoutRefusing(t *testing.T) {
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	require.NoError(t, err)
	defer e.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	ctx := context.Background()
	_, err = cli.Put(ctx, "k", "v")
	require.NoError(t, err)

	e.Blackhole()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	began := time.Now()
	_, err = cli.Get(short, "k")
	cancel()
	require.Error(t, err)
	assert.GreaterOrEqual(t, time.Since(began), 250*time.Millisecond, "a blackhole is silent: the call waits for its own deadline")

	require.NoError(t, e.Reconnect())
	got, err := cli.Get(ctx, "k")
	require.NoError(t, err, "healed: the stalled connection carries on")
	assert.Equal(t, "v", string(got.Kvs[0].Value))
}

func TestEtcdRestartDisconnected(t *testing.T) {
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	require.NoError(t, err)
	defer e.Close()
	e.Stop()
	require.NoError(t, e.RestartDisconnected())
	assert.True(t, e.Running())
	direct, err := clientv3.New(clientv3.Config{Endpoints: []string{e.DirectEndpoint()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer direct.Close()
	ctx := context.Background()
	_, err = direct.Put(ctx, "k", "written while clients are cut off")
	require.NoError(t, err)

	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = cli.Get(short, "k")
	cancel()
	require.Error(t, err, "clients stay cut off until Reconnect")
	require.NoError(t, e.Reconnect())
	resp, err := cli.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "written while clients are cut off", string(resp.Kvs[0].Value))
}

func TestEtcdOnAFixedClientAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	_, err = devstack.StartEtcd(devstack.EtcdOptions{ClientAddr: addr})
	require.ErrorIs(t, err, devstack.ErrAddrInUse, "a taken address fails at once")
	require.NoError(t, ln.Close())

	e, err := devstack.StartEtcd(devstack.EtcdOptions{ClientAddr: addr})
	require.NoError(t, err)
	defer e.Close()
	assert.Equal(t, "http://"+addr, e.Endpoint())
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = cli.Put(ctx, "k", "v")
	require.NoError(t, err)
}
