package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/gochat/im-infra/fxinfratest"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/cache"
)

// Nothing asks for cache.Cache: no client, no config needed (there is no
// Redis address here, which a built client would refuse), no checker.
func TestModuleBuildsNothingUnlessAskedFor(t *testing.T) {
	var agg *lifecycle.Aggregator
	app := fxinfratest.New(t, fxinfratest.WithFx(fx.Populate(&agg)))
	rep := agg.Check(context.Background())
	_, ok := rep.Checks[cache.ModuleName]
	assert.False(t, ok, "no cache health checker")
	assert.Zero(t, app.Logs.Count("connected to redis"))
}

// Asked for: the client connects at start, its checker is registered, and
// live config changes apply while restart-only ones are logged.
func TestModuleOnTheTestKit(t *testing.T) {
	var (
		c   cache.Cache
		agg *lifecycle.Aggregator
	)
	app := fxinfratest.New(t,
		fxinfratest.WithRedis(),
		fxinfratest.WithFx(fx.Populate(&c, &agg)),
	)
	entry := app.Logs.Require(t, "connected to redis")
	assert.Equal(t, cache.ModuleName, entry.ContextMap()["module"])
	assert.Contains(t, entry.ContextMap(), "elapsed")

	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "k", "v", time.Minute))
	v, err := c.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v", v)

	rep := agg.Check(ctx)
	require.Contains(t, rep.Checks, cache.ModuleName)
	assert.Equal(t, lifecycle.Healthy, rep.Checks[cache.ModuleName].State)

	// Live: commandTimeout. Restart-only: pool.size (logged, not applied).
	// The global layer merges under the service document WithRedis seeded.
	app.PutGlobal(t, cache.ModuleName, `{"commandTimeout":"750ms","pool":{"size":20}}`)
	applied := app.Logs.Require(t, "applied cache config change")
	assert.Equal(t, "commandTimeout", applied.ContextMap()["field"])
	restart := app.Logs.Require(t, "apply only after a restart")
	assert.Equal(t, []any{"pool.size"}, restart.ContextMap()["fields"])
	assert.Equal(t, "warn", restart.Level.String())

	// A refused document leaves the running client alone.
	err = app.TryPut(cache.ModuleName, `{"addresses":[],"keyPrefix":"x:"}`)
	require.ErrorIs(t, err, lifecycle.ErrValidation)
	require.NoError(t, c.Ping(ctx))
}
