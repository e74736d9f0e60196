package lifecycle

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
)

type pingChecker struct{}

func (pingChecker) Name() string                 { return "ping" }
func (pingChecker) Check(context.Context) Status { return Status{State: Degraded} }

func newPingChecker() *pingChecker { return &pingChecker{} }

func TestModuleProvidesIdentityReadinessAggregator(t *testing.T) {
	t.Setenv(EnvService, "im-test")
	t.Setenv(EnvEnv, "test")
	t.Setenv(EnvInstance, "t-1")

	var (
		id    Identity
		ready *Readiness
		agg   *Aggregator
	)
	app := fxtest.New(t,
		Module,
		fx.Invoke(func(agg *Aggregator) { agg.Add(newPingChecker()) }),
		fx.Supply(AggregatorOptions{Timeout: 300 * time.Millisecond}),
		fx.Populate(&id, &ready, &agg),
	)
	app.RequireStart()
	defer app.RequireStop()

	// os.Args of the test binary holds -test.* flags, which are ignored.
	assert.Equal(t, Identity{Service: "im-test", Env: "test", Instance: "t-1", Version: "dev"}, id)
	require.NotNil(t, ready)
	assert.Equal(t, 300*time.Millisecond, agg.opts.Timeout, "AggregatorOptions from the graph are used")
	assert.Equal(t, DefaultCacheTTL, agg.opts.CacheTTL)

	rep := agg.Check(t.Context())
	assert.Equal(t, Degraded, rep.State)
	assert.Contains(t, rep.Checks, "ping")
}

func TestModuleIdentityErrorFailsTheApp(t *testing.T) {
	t.Setenv(EnvService, "Not_A_Label")
	app := fx.New(Module, fx.NopLogger, fx.Invoke(func(Identity) {}))
	err := app.Err()
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrValidation)
}

func TestModuleWithoutCheckersOrOptions(t *testing.T) {
	var agg *Aggregator
	fxtest.New(t, Module, fx.Populate(&agg))
	assert.Equal(t, DefaultCheckTimeout, agg.opts.Timeout)
	assert.Equal(t, Healthy, agg.Check(t.Context()).State)
}
