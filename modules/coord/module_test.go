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
)

type cfgModuleOut struct {
	fx.In
	Client   *Client
	Raw      *clientv3.Client
	Source   config.Source
	Own      *Source
	Center   *Center
	Checkers []lifecycle.Checker `group:"health"`
}

func TestModuleWiringAndStopOrder(t *testing.T) {
	e := startEtcd(t)
	t.Setenv(EnvEndpoints, e.Endpoint())
	var out cfgModuleOut
	var clientOpenAtStop bool
	app := fxtest.New(t,
		Module,
		fx.Supply(zap.NewNop()),
		fx.Populate(&out),
		// Stands in for the registry: a user of the client registers its
		// hook later and so must stop while the client is still open.
		fx.Invoke(func(lc fx.Lifecycle, c *clientv3.Client) {
			lc.Append(fx.StopHook(func() { clientOpenAtStop = c.Ctx().Err() == nil }))
		}),
	)
	app.RequireStart()
	assert.True(t, out.Client.Connected())
	assert.Same(t, out.Client.Raw(), out.Raw)
	assert.Equal(t, "etcd", out.Source.Name())
	assert.Same(t, out.Own, out.Source)
	names := map[string]lifecycle.State{}
	for _, c := range out.Checkers {
		names[c.Name()] = c.Check(context.Background()).State
	}
	assert.Equal(t, map[string]lifecycle.State{"coord": lifecycle.Healthy, "registry": lifecycle.Healthy}, names)
	_, err := out.Center.Set(context.Background(), "/config/dev/svc/m", []byte("{}"))
	require.NoError(t, err)

	app.RequireStop()
	assert.True(t, clientOpenAtStop, "the client closes after the hooks of its users")
	assert.Error(t, out.Raw.Ctx().Err(), "the client is closed on stop")
}

func TestModuleStartsWithEtcdDown(t *testing.T) {
	e := startEtcd(t)
	e.Stop()
	t.Setenv(EnvEndpoints, e.Endpoint())
	t.Setenv(EnvProbeTimeout, "300ms")
	core, logs := observer.New(zapcore.InfoLevel)
	var checkers cfgModuleOut
	app := fxtest.New(t, Module, fx.Supply(zap.New(core)), fx.Populate(&checkers))
	start := time.Now()
	app.RequireStart()
	assert.Less(t, time.Since(start), time.Second, "start is bounded by the probe timeout")
	assert.False(t, checkers.Client.Connected())
	assert.Equal(t, 1, logs.FilterMessageSnippet("etcd unreachable at start").Len())
	states := map[string]lifecycle.State{}
	for _, c := range checkers.Checkers {
		states[c.Name()] = c.Check(context.Background()).State
	}
	assert.Equal(t, lifecycle.Degraded, states["coord"])
	assert.Equal(t, lifecycle.Healthy, states["registry"], "nothing registered, nothing lost")
	app.RequireStop()
}

func TestModuleRefusesMissingEndpoints(t *testing.T) {
	t.Setenv(EnvEndpoints, "")
	app := fx.New(Module, fx.Supply(zap.NewNop()), fx.Invoke(func(*Client) {}), fx.NopLogger)
	err := app.Err()
	require.Error(t, err)
	assert.Contains(t, err.Error(), EnvEndpoints)
}
