package fxinfra_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/fxinfra"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup points a service named "svc" in env "test" at e.
func setup(t *testing.T, e *devstack.Etcd) {
	t.Setenv("IMINFRA_SERVICE", "svc")
	t.Setenv("IMINFRA_ENV", "test")
	t.Setenv("IMINFRA_INSTANCE", "svc-1")
	t.Setenv("IMINFRA_ETCD_ENDPOINTS", e.Endpoint())
	t.Setenv("IMINFRA_ETCD_PROBE_TIMEOUT", "1s")
	t.Setenv(fxinfra.EnvSnapshot, filepath.Join(t.TempDir(), "snapshot.json"))
}

func put(t *testing.T, e *devstack.Etcd, key, val string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = cli.Put(ctx, key, val)
	require.NoError(t, err)
}

func get(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var body map[string]any
	_ = json.Unmarshal(b, &body)
	return resp.StatusCode, body
}

func TestServiceLifecycleOnEtcd(t *testing.T) {
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	require.NoError(t, err)
	defer e.Close()
	setup(t, e)
	put(t, e, "/config/test/svc/admin", `{"addr":"127.0.0.1:0","drainDelay":"150ms"}`)
	put(t, e, "/config/test/global/clog", `{"level":"info","format":"json"}`)

	// A module logger made before the app exists must follow the live config.
	early := clog.For("orders")

	var (
		admin    *lifecycle.AdminServer
		stopSeen int
		stopAt   time.Time
	)
	var stopBegan time.Time
	app := fxtest.New(t,
		fxinfra.Module,
		fx.Populate(&admin),
		fx.Invoke(func(lc fx.Lifecycle) {
			lc.Append(fx.Hook{OnStop: func(context.Context) error {
				stopAt = time.Now()
				stopSeen, _ = get(t, "http://"+admin.Addr()+"/readyz")
				return nil
			}})
		}),
	)
	app.RequireStart()
	url := "http://" + admin.Addr()

	code, body := get(t, url+"/readyz")
	require.Equal(t, http.StatusOK, code, body)
	checks := body["checks"].(map[string]any)
	assert.Equal(t, "healthy", checks["coord"].(map[string]any)["status"])
	code, _ = get(t, url+"/healthz")
	assert.Equal(t, http.StatusOK, code)

	assert.False(t, early.Core().Enabled(zapcore.DebugLevel))
	changed := time.Now()
	put(t, e, "/config/test/svc/clog", `{"levels":{"orders":"debug"}}`)
	require.Eventually(t, func() bool { return early.Core().Enabled(zapcore.DebugLevel) }, time.Second, time.Millisecond)
	assert.Less(t, time.Since(changed), 100*time.Millisecond)

	stopBegan = time.Now()
	app.RequireStop()
	assert.Equal(t, http.StatusServiceUnavailable, stopSeen, "readiness is off before the service's stop hooks run")
	assert.GreaterOrEqual(t, stopAt.Sub(stopBegan), 150*time.Millisecond, "drain delay honoured")
}

func TestServiceStartsWithEtcdDown(t *testing.T) {
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	require.NoError(t, err)
	defer e.Close()
	setup(t, e)
	put(t, e, "/config/test/svc/admin", `{"addr":"127.0.0.1:0"}`)
	put(t, e, "/config/test/svc/clog", `{"levels":{"billing":"warn"}}`)

	// First run: config loads and lands in the snapshot.
	first := fxtest.New(t, fxinfra.Module)
	first.RequireStart()
	first.RequireStop()

	e.Stop()
	var admin *lifecycle.AdminServer
	app := fxtest.New(t, fxinfra.Module, fx.Populate(&admin))
	began := time.Now()
	app.RequireStart()
	assert.Less(t, time.Since(began), 3*time.Second, "start is bounded with etcd down")
	assert.False(t, clog.For("billing").Core().Enabled(zapcore.InfoLevel), "snapshot applied")

	code, body := get(t, "http://"+admin.Addr()+"/readyz")
	assert.Equal(t, http.StatusOK, code, "degraded is still ready")
	assert.Equal(t, "degraded", body["checks"].(map[string]any)["coord"].(map[string]any)["status"])

	require.NoError(t, e.Restart())
	put(t, e, "/config/test/svc/clog", `{"levels":{"billing":"debug"}}`)
	require.Eventually(t, func() bool { return clog.For("billing").Core().Enabled(zapcore.DebugLevel) },
		5*time.Second, 10*time.Millisecond, "etcd's config applied once it answers")
	require.Eventually(t, func() bool {
		_, body := get(t, "http://"+admin.Addr()+"/readyz")
		return body["checks"].(map[string]any)["coord"].(map[string]any)["status"] == "healthy"
	}, 5*time.Second, 50*time.Millisecond)
	app.RequireStop()
}
