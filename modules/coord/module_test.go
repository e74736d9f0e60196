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
)

type cfgModuleOut struct {
	fx.In
	Client   *Client
	Raw      *clientv3.Client `name:"etcd"`
	Source   config.Source
	Own      *Source
	Center   *Center
	Health   *lifecycle.Aggregator
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

func TestModuleWiringAndStopOrder(t *testing.T) {
	e := coordtest.StartEtcd(t)
	t.Setenv(EnvEndpoints, e.Endpoint())
	var out cfgModuleOut
	var clientOpenAtStop bool
	app := fxtest.New(t,
		Module,
		withHealth, fx.Supply(zap.NewNop(), testIdentity, lifecycle.ProcessEnviron()),
		fx.Populate(&out),
		// Stands in for the registry: a user of the client registers its
		// hook later and so must stop while the client is still open.
		fx.Invoke(fx.Annotate(func(lc fx.Lifecycle, c *clientv3.Client) {
			lc.Append(fx.StopHook(func() { clientOpenAtStop = c.Ctx().Err() == nil }))
		}, fx.ParamTags(``, `name:"etcd"`))),
	)
	app.RequireStart()
	assert.True(t, out.Client.Connected())
	assert.Same(t, out.Client.Raw(), out.Raw)
	assert.Equal(t, "etcd", out.Source.Name())
	assert.Same(t, out.Own, out.Source)
	assert.Equal(t, map[string]lifecycle.State{"coord": lifecycle.Healthy, "registry": lifecycle.Healthy}, states(out.Health))
	_, err := out.Center.Set(context.Background(), "/config/dev/svc/m", []byte("{}"))
	require.NoError(t, err)

	app.RequireStop()
	assert.True(t, clientOpenAtStop, "the client closes after the hooks of its users")
	assert.Error(t, out.Raw.Ctx().Err(), "the client is closed on stop")
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
