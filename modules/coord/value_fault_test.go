package coord

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// valueOn starts a config.Value of component "comp" for svc/dev on e, the
// way the fx module does: the client's probe and monitor first.
func valueOn(t *testing.T, e *devstack.Etcd, log *zap.Logger) *config.Value[cfgSchema] {
	t.Helper()
	c := cliNew(t, cliConfig(e))
	_ = c.Start(context.Background())
	opts := []config.ValueOption{config.WithRetry(20*time.Millisecond, 200*time.Millisecond)}
	if log != nil {
		opts = append(opts, config.WithLogger(log))
	}
	v := config.NewValue[cfgSchema]("comp", NewSource(c), cfgIdentity, opts...)
	require.NoError(t, v.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, v.Stop(context.Background())) })
	return v
}

var (
	valGlobal  = config.GlobalKey("dev", "comp")
	valService = config.Key("dev", "svc", "comp")
)

// directClient bypasses the proxy, so it keeps working while e is
// Disconnected from the clients under test.
func directClient(t *testing.T, e *devstack.Etcd) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.DirectEndpoint()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// etcdState parses what etcd holds now, as a fresh process would.
func etcdState(t *testing.T, cli *clientv3.Client) cfgSchema {
	t.Helper()
	var layers []config.Layer
	for _, k := range []string{valGlobal, valService} {
		resp, err := cli.Get(context.Background(), k)
		require.NoError(t, err)
		l := config.Layer{Key: k}
		if len(resp.Kvs) > 0 {
			l.Data = resp.Kvs[0].Value
		}
		layers = append(layers, l)
	}
	want, err := config.Parse[cfgSchema]("comp", layers...)
	require.NoError(t, err)
	return want
}

func TestValueCompactionWhileDisconnected(t *testing.T) {
	e := coordtest.StartEtcd(t)
	direct := directClient(t, e)
	ctx := context.Background()
	_, err := direct.Put(ctx, valGlobal, `{"n":2}`)
	require.NoError(t, err)
	_, err = direct.Put(ctx, valService, `{"n":3}`)
	require.NoError(t, err)
	v := valueOn(t, e, nil)
	require.Equal(t, 3, v.Get().N)

	e.Disconnect()
	for i := 10; i < 20; i++ {
		_, err = direct.Put(ctx, valService, fmt.Sprintf(`{"n":%d,"level":"warn"}`, i))
		require.NoError(t, err)
	}
	_, err = direct.Delete(ctx, valService)
	require.NoError(t, err)
	resp, err := direct.Put(ctx, valGlobal, `{"n":20,"level":"debug"}`)
	require.NoError(t, err)
	// Compact away every revision the Value's watch would resume from.
	_, err = direct.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
	require.NoError(t, err)
	require.NoError(t, e.Reconnect())

	want := etcdState(t, direct)
	require.Equal(t, cfgSchema{Level: "debug", N: 20, M: 2}, want)
	require.Eventually(t, func() bool { return v.Get() == want }, 5*time.Second, 5*time.Millisecond,
		"after a compaction the Value reloads and ends equal to etcd")
}

func TestValueWatchResumesWithoutGapsAfterRestart(t *testing.T) {
	e := coordtest.StartEtcd(t)
	v := valueOn(t, e, nil)
	var (
		mu    sync.Mutex
		seen  []int
		first = true
	)
	defer v.Subscribe(func(_, n cfgSchema) {
		mu.Lock()
		defer mu.Unlock()
		if first { // the value at subscription time
			first = false
			return
		}
		seen = append(seen, n.N)
	})()
	writer := coordtest.RawClient(t, e.Endpoints()...)
	ctx := context.Background()
	for i := 1; i <= 20; i++ {
		_, err := writer.Put(ctx, valService, fmt.Sprintf(`{"n":%d}`, i))
		require.NoError(t, err)
	}
	e.Stop()
	require.NoError(t, e.Restart())
	for i := 21; i <= 60; i++ {
		_, err := writer.Put(ctx, valService, fmt.Sprintf(`{"n":%d}`, i))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return v.Get().N == 60 }, 5*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	want := make([]int, 60)
	for i := range want {
		want[i] = i + 1
	}
	assert.Equal(t, want, seen, "every update applied once, in order, across the restart")
}

func TestValueOnEtcdRefusesBadDocumentsAndFallsBack(t *testing.T) {
	e := coordtest.StartEtcd(t)
	writer := coordtest.RawClient(t, e.Endpoints()...)
	ctx := context.Background()
	_, err := writer.Put(ctx, valGlobal, `{"n":4}`)
	require.NoError(t, err)
	_, err = writer.Put(ctx, valService, `{"n":5}`)
	require.NoError(t, err)
	core, logs := observer.New(zap.WarnLevel)
	v := valueOn(t, e, zap.New(core))
	require.Equal(t, 5, v.Get().N)

	for i, bad := range []string{`{"n":`, `{"n":"five"}`, `{"n":-5}`, `{"n":6,"extra":1}`} {
		_, err = writer.Put(ctx, valService, bad)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return v.Rejected() == int64(i+1) }, 2*time.Second, 2*time.Millisecond, bad)
		assert.Equal(t, 5, v.Get().N, "last good value kept after %s", bad)
	}
	assert.Len(t, logs.FilterMessageSnippet("config refused").All(), 4)

	_, err = writer.Delete(ctx, valService)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return v.Get().N == 4 }, 2*time.Second, 2*time.Millisecond,
		"a deleted service key falls back to the global layer")
}
