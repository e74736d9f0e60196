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

func TestPutRefusedFailsTheTest(t *testing.T) {
	app := fxinfratest.New(t)
	ft := &fakeT{TB: t}
	func() {
		defer func() { _ = recover() }()
		app.Put(ft, "clog", `{"level":"loud"}`)
	}()
	assert.True(t, ft.failed, "a refused document fails the test")
}

// fakeT records Fatalf instead of ending the test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(string, ...any) {
	f.failed = true
	panic("fatal")
}
