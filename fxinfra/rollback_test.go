package fxinfra_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/fxinfra"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog/clogtest"
	"github.com/gochat/im-infra/modules/coord"
	"github.com/gochat/im-infra/modules/coord/discovery"
)

// environ points an app at e without touching the process environment.
func environ(t *testing.T, e *devstack.Etcd) fx.Option {
	return fx.Replace(lifecycle.MapEnviron(map[string]string{
		lifecycle.EnvService:  "svc",
		lifecycle.EnvEnv:      "test",
		lifecycle.EnvInstance: "svc-1",
		coord.EnvEndpoints:    e.Endpoint(),
		fxinfra.EnvSnapshot:   filepath.Join(t.TempDir(), "snap.json"),
		fxinfra.EnvAdminAddr:  "127.0.0.1:0",
		coord.EnvProbeTimeout: "1s",
	}))
}

// An OnStart that fails in a later module rolls back everything started
// before it, and the failure is one error line naming the component.
func TestStartFailureRollsBackEverything(t *testing.T) {
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	require.NoError(t, err)
	defer e.Close()
	logs := clogtest.NewLogs()
	var client *coord.Client
	app := fx.New(fxinfra.Module, environ(t, e), logs.Option(), fx.Populate(&client),
		// Started first: registers the instance for discovery.
		fx.Module("orders", fx.Invoke(func(lc fx.Lifecycle, reg *discovery.Registry) {
			lc.Append(fx.StartHook(func(ctx context.Context) error {
				return reg.Register(ctx, discovery.ServiceInstance{ID: "svc-1", Name: "svc", Addr: "10.0.0.1:9000"})
			}))
		})),
		fx.Module("billing", fx.Invoke(func(lc fx.Lifecycle) {
			lc.Append(fx.StartHook(func() error {
				return lifecycle.ConnectionError("billing", "connect", errors.New("ledger unreachable"))
			}))
		})),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = app.Start(ctx)
	require.Error(t, err)
	assert.ErrorIs(t, err, lifecycle.ErrConnection)
	assert.Error(t, client.Raw().Ctx().Err(), "the etcd client was closed by the rollback")
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	resp, err := cli.Get(ctx, discovery.ServiceKey("svc", "svc-1"))
	require.NoError(t, err)
	assert.Empty(t, resp.Kvs, "the registration was removed by the rollback")
	line := logs.Require(t, "start failed")
	assert.Equal(t, "billing", line.ContextMap()["component"])
	assert.Len(t, logs.FilterLevelExact(zapcore.ErrorLevel).All(), 1, "exactly one error line")
}

// A hook that hangs is cut off by fx.StartTimeout, and the one error line
// names it. fx cannot roll back past a hook that never returns (the
// rollback waits for it), so, as under fx.App.Run, the process exits: the
// app runs in a child process of the test binary.
func TestStartTimeoutNamesTheHook(t *testing.T) {
	if os.Getenv("FXINFRA_HANG_CHILD") == "1" {
		hangingStart(t)
		return
	}
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	require.NoError(t, err)
	defer e.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStartTimeoutNamesTheHook$")
	cmd.Env = append(os.Environ(), "FXINFRA_HANG_CHILD=1", "FXINFRA_HANG_ETCD="+e.Endpoint())
	began := time.Now()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%s", out)
	assert.Equal(t, 1, exit.ExitCode())
	assert.Less(t, time.Since(began), 5*time.Second)
	var errorLines []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, `"level":"error"`) {
			errorLines = append(errorLines, line)
		}
	}
	require.Len(t, errorLines, 1, "%s", out)
	assert.Contains(t, errorLines[0], `"component":"fxinfra_test"`)
	assert.Contains(t, errorLines[0], "hangingHook")
	assert.Contains(t, errorLines[0], "start timeout")
}

// hangingStart runs an app whose hook hangs past a 1s start timeout, the
// way fx.App.Run does: a failed start exits 1.
func hangingStart(t *testing.T) {
	e := os.Getenv("FXINFRA_HANG_ETCD")
	app := fx.New(fxinfra.Module, fx.StartTimeout(time.Second),
		fx.Replace(lifecycle.MapEnviron(map[string]string{
			lifecycle.EnvService: "svc", lifecycle.EnvEnv: "test", coord.EnvEndpoints: e,
			fxinfra.EnvSnapshot: filepath.Join(t.TempDir(), "snap.json"), fxinfra.EnvAdminAddr: "127.0.0.1:0",
		})),
		fx.Invoke(hangingHook),
	)
	ctx, cancel := context.WithTimeout(context.Background(), app.StartTimeout())
	defer cancel()
	if err := app.Start(ctx); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

func hangingHook(lc fx.Lifecycle) {
	lc.Append(fx.StartHook(func(context.Context) error {
		select {} // ignores its ctx
	}))
}
