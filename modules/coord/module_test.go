package coord

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/coordtest"
	"github.com/gochat/im-infra/modules/coord/discovery"
	"github.com/gochat/im-infra/modules/coord/locking"
)

type cfgModuleOut struct {
	fx.In
	Client *Client
	Raw    *clientv3.Client `name:"etcd"`
	Source config.Source
	Own    *Source
	Center *Center
	Health *lifecycle.Aggregator
}

// states runs the app's health checks.
func states(agg *lifecycle.Aggregator) map[string]lifecycle.State {
	out := map[string]lifecycle.State{}
	for name, st := range agg.Check(context.Background()).Checks {
		out[name] = st.State
	}
	return out
}

// withHealth supplies what lifecycle.Module would: an aggregator.
var withHealth = fx.Provide(func() *lifecycle.Aggregator { return lifecycle.NewAggregator(nil, lifecycle.AggregatorOptions{}) })

func TestModuleWiring(t *testing.T) {
	e := coordtest.StartEtcd(t)
	t.Setenv(EnvEndpoints, e.Endpoint())
	var out cfgModuleOut
	app := fxtest.New(t, Module, withHealth, fx.Supply(zap.NewNop(), testIdentity, lifecycle.ProcessEnviron()), fx.Populate(&out))
	app.RequireStart()
	assert.True(t, out.Client.Connected())
	assert.Same(t, out.Client.Raw(), out.Raw)
	assert.Equal(t, "etcd", out.Source.Name())
	assert.Same(t, out.Own, out.Source)
	assert.Equal(t, map[string]lifecycle.State{"coord": lifecycle.Healthy, "registry": lifecycle.Healthy}, states(out.Health))
	_, err := out.Center.Set(context.Background(), "/config/dev/svc/m", []byte("{}"))
	require.NoError(t, err)
	app.RequireStop()
	assert.Error(t, out.Raw.Ctx().Err(), "the client is closed on stop")
}

// TestModuleStopReleasesBeforeClientCloses runs the real Registry, Locker
// and IDAllocator of the module with long TTLs: after Stop, the instance,
// the lock and the ID are gone from etcd at once, which can only happen if
// each released its lease before the client closed.
func TestModuleStopReleasesBeforeClientCloses(t *testing.T) {
	e := coordtest.StartEtcd(t)
	t.Setenv(EnvEndpoints, e.Endpoint())
	watcher := coordtest.RawClient(t, e.Endpoints()...)
	var (
		out  cfgModuleOut
		lock *locking.Lock
		id   *locking.InstanceID
	)
	inst := discovery.ServiceInstance{ID: "svc-1", Name: "svc", Addr: "127.0.0.1:9000"}
	app := fxtest.New(t, Module,
		withHealth, fx.Supply(zap.NewNop(), testIdentity, lifecycle.ProcessEnviron()),
		fx.Populate(&out),
		fx.Invoke(func(lc fx.Lifecycle, reg *discovery.Registry, locker *locking.Locker, ids *locking.IDAllocator) {
			lc.Append(fx.StartHook(func(ctx context.Context) error {
				if err := reg.Register(ctx, inst); err != nil {
					return err
				}
				var err error
				if lock, err = locker.Acquire(ctx, "stop-order", 30*time.Second); err != nil {
					return err
				}
				id, err = ids.AcquireID(ctx)
				return err
			}))
		}),
	)
	app.RequireStart()
	ctx := coordtest.Ctx(t, 10*time.Second)
	for _, key := range []string{discovery.ServiceKey(inst.Name, inst.ID), lock.Key(), id.Key()} {
		resp, err := watcher.Get(ctx, key)
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1, key)
	}
	app.RequireStop()
	require.Error(t, out.Raw.Ctx().Err(), "the client is closed on stop")
	for _, key := range []string{discovery.ServiceKey(inst.Name, inst.ID), lock.Key(), id.Key()} {
		resp, err := watcher.Get(ctx, key)
		require.NoError(t, err)
		assert.Empty(t, resp.Kvs, "%s released on stop, not left to its lease", key)
	}
	leases, err := watcher.Leases(ctx)
	require.NoError(t, err)
	assert.Empty(t, leases.Leases, "every lease was revoked before the client closed")
}

// Issue 6 item 8: a service that registers in its OnStart starts while etcd
// refuses connections; the registry reports degraded until the instance is
// in etcd.
func TestModuleStartsWhenServiceRegistersWithEtcdDown(t *testing.T) {
	e := coordtest.StartEtcd(t)
	e.Stop()
	t.Setenv(EnvEndpoints, e.Endpoint())
	t.Setenv(EnvProbeTimeout, "300ms")
	var out cfgModuleOut
	var reg *discovery.Registry
	inst := discovery.ServiceInstance{ID: "svc-1", Name: "svc", Addr: "127.0.0.1:9000"}
	app := fxtest.New(t, Module,
		withHealth, fx.Supply(zap.NewNop(), testIdentity, lifecycle.ProcessEnviron()),
		fx.Populate(&out, &reg),
		fx.Invoke(func(lc fx.Lifecycle, reg *discovery.Registry) {
			lc.Append(fx.StartHook(func(ctx context.Context) error { return reg.Register(ctx, inst) }))
		}),
	)
	startCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, app.Start(startCtx), "the app starts with etcd down")
	t.Logf("started in %v", time.Since(start))
	assert.Equal(t, map[string]lifecycle.State{"coord": lifecycle.Degraded, "registry": lifecycle.Degraded}, states(out.Health))

	require.NoError(t, e.Restart())
	require.Eventually(t, func() bool { return reg.Registered(inst.ID) }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return states(out.Health)["coord"] == lifecycle.Healthy }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, lifecycle.Healthy, states(out.Health)["registry"])
	app.RequireStop()
}

func TestModuleStartsWithEtcdDown(t *testing.T) {
	e := coordtest.StartEtcd(t)
	e.Stop()
	t.Setenv(EnvEndpoints, e.Endpoint())
	t.Setenv(EnvProbeTimeout, "300ms")
	core, logs := observer.New(zapcore.InfoLevel)
	var checkers cfgModuleOut
	app := fxtest.New(t, Module, withHealth, fx.Supply(zap.New(core), testIdentity, lifecycle.ProcessEnviron()), fx.Populate(&checkers))
	start := time.Now()
	app.RequireStart()
	assert.Less(t, time.Since(start), time.Second, "start is bounded by the probe timeout")
	assert.False(t, checkers.Client.Connected())
	assert.Equal(t, 1, logs.FilterMessageSnippet("etcd unreachable at start").Len())
	st := states(checkers.Health)
	assert.Equal(t, lifecycle.Degraded, st["coord"])
	assert.Equal(t, lifecycle.Healthy, st["registry"], "nothing registered, nothing lost")
	app.RequireStop()
}

func TestModuleRefusesMissingEndpoints(t *testing.T) {
	t.Setenv(EnvEndpoints, "")
	app := fx.New(Module, withHealth, fx.Supply(zap.NewNop(), testIdentity, lifecycle.ProcessEnviron()), fx.Invoke(func(*Client) {}), fx.NopLogger)
	err := app.Err()
	require.Error(t, err)
	assert.Contains(t, err.Error(), EnvEndpoints)
}

var testIdentity = lifecycle.Identity{Service: "svc", Env: "dev", Instance: "svc-1", Version: "dev"}
