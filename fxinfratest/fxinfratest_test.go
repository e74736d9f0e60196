package fxinfratest_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/goleak"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/fxinfratest"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewPutAndParallelApps(t *testing.T) {
	for _, name := range []string{"svc-a", "svc-b"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var log *clog.Logger
			app := fxinfratest.New(t, fxinfratest.WithService(name), fxinfratest.WithFx(fx.Populate(&log)))
			assert.Equal(t, name, app.Identity().Service)

			resp, err := http.Get("http://" + app.AdminAddr() + "/readyz")
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)

			orders := clog.ModuleLogger(log, "orders")
			assert.False(t, orders.Core().Enabled(zapcore.DebugLevel))
			app.Put(t, "clog", `{"levels":{"orders":"debug"}}`)
			assert.True(t, orders.Core().Enabled(zapcore.DebugLevel), "applied when Put returns")
			app.Logs.Require(t, "config applied")

			app.Delete(t, "clog")
			assert.False(t, orders.Core().Enabled(zapcore.DebugLevel))
		})
	}
}

func TestTryPutReturnsTheRefusal(t *testing.T) {
	app := fxinfratest.New(t)
	err := app.TryPut("clog", `{"level":"loud"}`)
	var ie *lifecycle.InfraError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, "level", ie.Field)
	assert.Error(t, app.TryPut("nosuch", `{}`), "no Value would apply it")
}
