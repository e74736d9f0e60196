package coord

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// cliConfig is a Config for e with short timeouts suited to tests.
func cliConfig(e *devstack.Etcd) Config {
	c := Defaults()
	c.Endpoints = e.Endpoints()
	c.ProbeTimeout = config.Duration(500 * time.Millisecond)
	c.DialTimeout = config.Duration(time.Second)
	return c
}

// cliNew builds a Client closed at cleanup.
func cliNew(t testing.TB, cfg Config, opts ...Option) *Client {
	t.Helper()
	c, err := NewClient(cfg, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestClientProbeConnected(t *testing.T) {
	e := coordtest.StartEtcd(t)
	c := cliNew(t, cliConfig(e))
	assert.False(t, c.Connected(), "not connected before the first probe")
	require.NoError(t, c.Probe(context.Background()))
	assert.True(t, c.Connected())
	assert.NotNil(t, c.Raw())
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is idempotent")
	assert.False(t, c.Connected())
}

func TestClientEtcdDown(t *testing.T) {
	e := coordtest.StartEtcd(t)
	e.Stop()
	cfg := cliConfig(e)
	cfg.ProbeTimeout = config.Duration(300 * time.Millisecond)

	start := time.Now()
	c := cliNew(t, cfg)
	assert.Less(t, time.Since(start), 100*time.Millisecond, "construction must not touch the network")

	start = time.Now()
	err := c.Probe(context.Background())
	took := time.Since(start)
	require.Error(t, err)
	assert.Less(t, took, 100*time.Millisecond, "a refused connection fails the probe at once")
	assert.True(t, errors.Is(err, lifecycle.ErrConnection), "got %v", err)
	assert.False(t, c.Connected())

	// Health says degraded, never unhealthy.
	st := NewHealthChecker(c).Check(context.Background())
	assert.Equal(t, lifecycle.Degraded, st.State)
	assert.Equal(t, DegradedMessage, st.Message)

	// Once etcd is back the next probe (and health) turns healthy.
	require.NoError(t, e.Restart())
	require.Eventually(t, func() bool { return c.Probe(context.Background()) == nil }, 5*time.Second, 20*time.Millisecond)
	assert.True(t, c.Connected())
	st = NewHealthChecker(c).Check(context.Background())
	assert.Equal(t, lifecycle.Healthy, st.State)
	assert.Equal(t, "coord", NewHealthChecker(c).Name())
}

func TestClientBadTLSFiles(t *testing.T) {
	cfg := Defaults()
	cfg.Endpoints = []string{"https://127.0.0.1:2379"}
	cfg.TLS.CAFile = t.TempDir() + "/missing.pem"
	_, err := NewClient(cfg)
	require.Error(t, err)
	assert.True(t, errors.Is(err, lifecycle.ErrConfig), "got %v", err)
	var ie *lifecycle.InfraError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, "tls.caFile", ie.Field)

	_, err = NewClient(Defaults())
	assert.True(t, errors.Is(err, lifecycle.ErrValidation), "an invalid config is refused: %v", err)
}

// TestClientReconnectAfterRestart checks that the short gRPC backoff brings
// the client back well within a second of etcd answering, and logs the raw
// clientv3 figure (default backoff) measured against the same server.
func TestClientReconnectAfterRestart(t *testing.T) {
	e := coordtest.StartEtcd(t)
	c := cliNew(t, cliConfig(e))
	raw := coordtest.RawClient(t, e.Endpoints()...)
	require.NoError(t, c.Probe(context.Background()))

	e.Stop()
	// Let both clients notice and enter their reconnect backoff, as in a
	// real outage that lasts a few seconds.
	time.Sleep(1500 * time.Millisecond)
	require.NoError(t, e.Restart())
	back := time.Now()

	measure := func(cli *clientv3.Client) time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := cli.Get(ctx, "k")
		require.NoError(t, err)
		return time.Since(back)
	}
	type result struct {
		d   time.Duration
		who string
	}
	res := make(chan result, 2)
	go func() { res <- result{measure(c.Raw()), "coord"} }()
	go func() { res <- result{measure(raw), "raw"} }()
	got := map[string]time.Duration{}
	for range 2 {
		r := <-res
		got[r.who] = r.d
	}
	t.Logf("first successful Get after etcd restart: coord client %v, raw clientv3 (default backoff) %v", got["coord"], got["raw"])
	assert.Less(t, got["coord"], time.Second)
}

func TestClientAuthIsLazyAndSecret(t *testing.T) {
	const pw = "correct-horse-battery-staple"
	e := coordtest.StartEtcd(t)
	admin := coordtest.RawClient(t, e.Endpoints()...)
	ctx := context.Background()
	_, err := admin.UserAdd(ctx, "root", "root-pw")
	require.NoError(t, err)
	_, err = admin.UserGrantRole(ctx, "root", "root")
	require.NoError(t, err)
	_, err = admin.UserAdd(ctx, "svc", pw)
	require.NoError(t, err)
	_, err = admin.RoleAdd(ctx, "cfg")
	require.NoError(t, err)
	_, err = admin.RoleGrantPermission(ctx, "cfg", "/config/", clientv3.GetPrefixRangeEnd("/config/"), clientv3.PermissionType(clientv3.PermReadWrite))
	require.NoError(t, err)
	_, err = admin.UserGrantRole(ctx, "svc", "cfg")
	require.NoError(t, err)
	_, err = admin.AuthEnable(ctx)
	require.NoError(t, err)

	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)

	cfg := cliConfig(e)
	cfg.Username, cfg.Password = "svc", pw
	// etcd checks passwords with bcrypt, which takes seconds under -race.
	cfg.ProbeTimeout = config.Duration(10 * time.Second)
	good := cliNew(t, cfg, WithLogger(log))
	require.NoError(t, good.Probe(ctx), "permission denied on the probe key still proves etcd answers")
	cen := NewCenter(good)
	_, err = cen.Set(ctx, "/config/dev/global/x", []byte(`{}`))
	require.NoError(t, err)
	_, ok, err := cen.Get(ctx, "/config/dev/global/x")
	require.NoError(t, err)
	assert.True(t, ok)

	bad := cfg
	bad.Password = config.Secret(pw + "-wrong")
	wrong := cliNew(t, bad, WithLogger(log))
	_, err = NewCenter(wrong).Set(ctx, "/config/dev/global/x", []byte(`{}`))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), pw)
	assert.True(t, errors.Is(err, lifecycle.ErrConfig), "wrong credentials are a CONFIG error: %v", err)
	t.Logf("wrong password: %v", err)

	// With etcd down, an authenticated client is still built at once.
	e.Stop()
	start := time.Now()
	down := cliNew(t, cfg, WithLogger(log))
	assert.Less(t, time.Since(start), 100*time.Millisecond)
	require.Error(t, down.Probe(ctx))

	for _, entry := range logs.All() {
		assert.NotContains(t, entry.Message, pw)
		assert.NotContains(t, fmt.Sprint(entry.ContextMap()), pw)
	}
}

// A nil option is no option: NewClient(cfg, nil) was the old signature
// (cfg, *zap.Logger) and callers still write it.
func TestClientNilOptionIsNoOption(t *testing.T) {
	cfg := Defaults()
	cfg.Endpoints = []string{"http://127.0.0.1:1"}
	c, err := NewClient(cfg, nil)
	require.NoError(t, err)
	require.NoError(t, c.Close())
}
