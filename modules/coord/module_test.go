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

// moduleApp is coord.Module on its own, with what lifecycle.Module and
// clog.Module would supply (an aggregator, a logger, the identity) and
// env as the app's environment.
func moduleApp(t *testing.T, log *zap.Logger, env map[string]string, opts ...fx.Option) *fxtest.App {
	t.Helper()
	return fxtest.New(t, append([]fx.Option{Module, withHealth, fx.NopLogger,
		fx.Supply(log, testIdentity, lifecycle.MapEnviron(env))}, opts...)...)
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
	var (
		out    cfgModuleOut
		reg    *discovery.Registry
		disc   *discovery.Discovery
		rb     *discovery.ResolverBuilder
		locker *locking.Locker
		el     *locking.Elector
		ids    *locking.IDAllocator
	)
	app := moduleApp(t, zap.NewNop(), map[string]string{EnvEndpoints: e.Endpoint()},
		fx.Populate(&out, &reg, &disc, &rb, &locker, &el, &ids))
	app.RequireStart()
	assert.True(t, out.Client.Connected())
	assert.Same(t, out.Client.Raw(), out.Raw)
	assert.Equal(t, "etcd", out.Source.Name())
	assert.Same(t, out.Own, out.Source)
	assert.Equal(t, map[string]lifecycle.State{"coord": lifecycle.Healthy, "registry": lifecycle.Healthy}, states(out.Health))
	assert.Equal(t, discovery.ResolverScheme, rb.Scheme())
	assert.Equal(t, locking.DefaultLockPrefix, locker.Prefix())
	assert.Equal(t, "/ids/svc/", ids.Prefix())
	assert.Equal(t, testIdentity.Instance, ids.Holder())
	election, err := el.NewElection("wiring")
	require.NoError(t, err)
	require.NoError(t, election.Campaign(coordtest.Ctx(t, 5*time.Second), "svc-1"))
	_, err = out.Center.Set(context.Background(), "/config/dev/svc/m", []byte("{}"))
	require.NoError(t, err)
	app.RequireStop()
	assert.Error(t, out.Raw.Ctx().Err(), "the client is closed on stop")
	assert.False(t, election.IsLeader(), "the Elector resigned its elections on stop")
}

// fx builds only what is asked for: coord.Module alone builds the client,
// not the registry, its config Value or its health check.
func TestModuleBuildsOnlyWhatIsAskedFor(t *testing.T) {
	e := coordtest.StartEtcd(t)
	var out cfgModuleOut
	app := moduleApp(t, zap.NewNop(), map[string]string{EnvEndpoints: e.Endpoint()}, fx.Populate(&out))
	app.RequireStart()
	assert.Equal(t, map[string]lifecycle.State{"coord": lifecycle.Healthy}, states(out.Health))
	app.RequireStop()
}

// Settings come from the config components "registry" and "locking":
// prefixes from the documents at start, TTLs live.
func TestModuleTakesSettingsFromConfig(t *testing.T) {
	e := coordtest.StartEtcd(t)
	raw := coordtest.RawClient(t, e.Endpoints()...)
	ctx := coordtest.Ctx(t, 20*time.Second)
	_, err := raw.Put(ctx, config.Key("dev", "svc", "locking"), `{"locks":{"prefix":"/svc-locks/"},"ids":{"max":7,"ttl":"3s"}}`)
	require.NoError(t, err)
	_, err = raw.Put(ctx, config.GlobalKey("dev", "registry"), `{"ttl":"4s"}`)
	require.NoError(t, err)
	var (
		reg    *discovery.Registry
		locker *locking.Locker
		ids    *locking.IDAllocator
	)
	app := moduleApp(t, zap.NewNop(), map[string]string{EnvEndpoints: e.Endpoint()}, fx.Populate(&reg, &locker, &ids))
	app.RequireStart()
	defer app.RequireStop()
	assert.Equal(t, "/svc-locks/", locker.Prefix())
	assert.Equal(t, 7, ids.Max())
	id, err := ids.AcquireID(ctx)
	require.NoError(t, err)
	require.NoError(t, reg.Register(ctx, discovery.ServiceInstance{ID: "svc-1", Name: "svc", Addr: "127.0.0.1:9000"}))
	ttlOf := func(key string) int64 {
		resp, err := raw.Get(ctx, key)
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1)
		ttl, err := raw.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
		require.NoError(t, err)
		return ttl.GrantedTTL
	}
	assert.EqualValues(t, 3, ttlOf(id.Key()))
	assert.EqualValues(t, 4, ttlOf(discovery.ServiceKey("svc", "svc-1")))

	// A live change applies to the next grant; a prefix change waits for
	// a restart.
	_, err = raw.Put(ctx, config.Key("dev", "svc", "locking"), `{"locks":{"prefix":"/moved/"},"ids":{"max":7,"ttl":"5s"}}`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		next, err := ids.AcquireID(ctx)
		if err != nil {
			return false
		}
		defer func() { _ = next.Release(ctx) }()
		return ttlOf(next.Key()) == 5
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, "/svc-locks/", locker.Prefix(), "the lock prefix needs a restart")
}

// TestModuleStopReleasesBeforeClientCloses runs the real Registry, Locker
// and IDAllocator of the module with long TTLs: after Stop, the instance,
// the lock and the ID are gone from etcd at once, which can only happen if
// each released its lease before the client closed.
func TestModuleStopReleasesBeforeClientCloses(t *testing.T) {
	e := coordtest.StartEtcd(t)
	watcher := coordtest.RawClient(t, e.Endpoints()...)
	var (
		out  cfgModuleOut
		lock *locking.Lock
		id   *locking.InstanceID
	)
	inst := discovery.ServiceInstance{ID: "svc-1", Name: "svc", Addr: "127.0.0.1:9000"}
	app := moduleApp(t, zap.NewNop(), map[string]string{EnvEndpoints: e.Endpoint()},
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
	var out cfgModuleOut
	var reg *discovery.Registry
	inst := discovery.ServiceInstance{ID: "svc-1", Name: "svc", Addr: "127.0.0.1:9000"}
	app := moduleApp(t, zap.NewNop(), map[string]string{EnvEndpoints: e.Endpoint(), EnvProbeTimeout: "300ms"},
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
	core, logs := observer.New(zapcore.InfoLevel)
	var checkers cfgModuleOut
	var reg *discovery.Registry
	app := moduleApp(t, zap.New(core), map[string]string{EnvEndpoints: e.Endpoint(), EnvProbeTimeout: "300ms"}, fx.Populate(&checkers, &reg))
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
	app := fx.New(Module, withHealth, fx.Supply(zap.NewNop(), testIdentity, lifecycle.MapEnviron(nil)), fx.Invoke(func(*Client) {}), fx.NopLogger)
	err := app.Err()
	require.Error(t, err)
	assert.Contains(t, err.Error(), EnvEndpoints)
}

var testIdentity = lifecycle.Identity{Service: "svc", Env: "dev", Instance: "svc-1", Version: "dev"}
