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
	direct := coordtest.RawClient(t, e.DirectEndpoint()) // keeps working while clients are cut off
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

// Across an etcd restart the value goes forward only: every update it
// applies is newer than the last, none twice, and it ends on the last one
// written. Updates that land while it reloads may be applied together (a
// reload reads the current document), which is what a config needs: the
// latest, never an older one.
func TestValueMovesForwardAcrossRestart(t *testing.T) {
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
	// Get is published before subscribers run, so wait on what the
	// subscriber saw, not on Get.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1] == 60
	}, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 60, v.Get().N)
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(seen); i++ {
		assert.Less(t, seen[i-1], seen[i], "applied in order and never twice: %v", seen)
	}
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

// Faster where peers are slow: after a long outage, every Value of the
// service applies what etcd holds at once, not after its own retry backoff
// (1s here): the client's monitor notices etcd answering within tens of
// milliseconds and wakes the Values waiting to reload (Source.Recovered).
// The Values start while etcd is down, so they are in that wait; Values
// whose watch survived the outage resume with the connection, which the
// monitor's forced reconnects also hasten.
// BenchmarkConfigReconvergeAfterOutage measures the worst case over 20
// outages.
func TestValuesApplyEtcdConfigSoonAfterOutage(t *testing.T) {
	e := coordtest.StartEtcd(t)
	direct := coordtest.RawClient(t, e.DirectEndpoint())
	e.Stop()
	c := cliNew(t, cliConfig(e))
	_ = c.Start(context.Background())
	src := NewSource(c)
	ctx := context.Background()
	var values []*config.Value[cfgSchema]
	for _, name := range []string{"a", "b", "c"} {
		v := config.NewValue[cfgSchema](name, src, cfgIdentity, config.WithRetry(time.Second, time.Second))
		require.NoError(t, v.Start(ctx))
		require.True(t, v.Degraded())
		t.Cleanup(func() { _ = v.Stop(context.Background()) })
		values = append(values, v)
	}
	time.Sleep(2500 * time.Millisecond) // every Value now waits out its 1s backoff
	require.NoError(t, e.RestartDisconnected())
	for _, name := range []string{"a", "b", "c"} {
		_, err := direct.Put(ctx, config.Key("dev", "svc", name), `{"n":9}`)
		require.NoError(t, err)
	}
	require.NoError(t, e.Reconnect())
	back := time.Now()
	require.Eventually(t, func() bool {
		for _, v := range values {
			if v.Get().N != 9 {
				return false
			}
		}
		return true
	}, 5*time.Second, time.Millisecond)
	took := time.Since(back)
	t.Logf("every Value applied etcd's config %v after etcd answered", took)
	assert.Less(t, took, 400*time.Millisecond, "woken by the monitor, not by their own 1s backoff")
}
