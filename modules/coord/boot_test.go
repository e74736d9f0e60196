package coord

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// Faster where peers are slow: a service whose etcd refuses connections is
// up, degraded, within 200ms, whatever the probe timeout (default 3s).
func TestModuleBootsDegradedFastWhenEtcdRefuses(t *testing.T) {
	e := coordtest.StartEtcd(t)
	e.Stop() // the port now refuses connections
	var out cfgModuleOut
	var v *config.Value[cfgSchema]
	app := moduleApp(t, zap.NewNop(), map[string]string{EnvEndpoints: e.Endpoint()},
		fx.Provide(config.ProvideValue[cfgSchema]("comp")),
		fx.Populate(&out, &v),
	)
	start := time.Now()
	app.RequireStart()
	took := time.Since(start)
	t.Logf("started degraded in %v", took)
	assert.Less(t, took, 200*time.Millisecond, "ready within 200ms with etcd refusing connections")
	assert.True(t, v.Degraded())
	assert.Equal(t, lifecycle.Degraded, NewHealthChecker(out.Client).Check(context.Background()).State)
	app.RequireStop()
}

// A blackholed endpoint never refuses: the probe is then bounded by its
// timeout, and the start with it.
func TestClientProbeOfBlackholedEtcdBoundedByProbeTimeout(t *testing.T) {
	e := coordtest.StartEtcd(t)
	e.Blackhole()
	cfg := cliConfig(e)
	cfg.ProbeTimeout = config.Duration(300 * time.Millisecond)
	c := cliNew(t, cfg)
	start := time.Now()
	require.Error(t, c.Start(context.Background()))
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, 250*time.Millisecond, "a blackhole does not answer at all")
	assert.Less(t, took, 800*time.Millisecond, "bounded by probeTimeout")
	assert.False(t, c.Connected())
	require.NoError(t, e.Reconnect())
}

// recoveryNotifier is config.RecoveryNotifier.
type recoveryNotifier interface{ Recovered() <-chan struct{} }

// Faster where peers are slow: after a long outage the Source says at once
// that etcd answers again, so config.Value reloads without sleeping out
// its backoff.
func TestSourceRecoveredClosesSoonAfterEtcdAnswers(t *testing.T) {
	e := coordtest.StartEtcd(t)
	c := cliNew(t, cliConfig(e))
	require.NoError(t, c.Start(context.Background()))
	var src any = NewSource(c)
	n, ok := src.(recoveryNotifier)
	require.True(t, ok, "Source implements config.RecoveryNotifier")

	for _, outage := range []time.Duration{2 * time.Second, 500 * time.Millisecond} {
		e.Stop()
		require.Eventually(t, func() bool { return !c.Connected() }, 3*time.Second, 5*time.Millisecond)
		recovered := n.Recovered()
		select {
		case <-recovered:
			t.Fatal("Recovered closed while etcd is down")
		case <-time.After(outage):
		}
		require.NoError(t, e.Restart())
		back := time.Now()
		select {
		case <-recovered:
			t.Logf("outage %v: recovery signalled %v after etcd answered", outage, time.Since(back))
			assert.Less(t, time.Since(back), 150*time.Millisecond)
		case <-time.After(3 * time.Second):
			t.Fatal("Recovered not closed after etcd answered")
		}
		assert.True(t, c.Connected())
	}
}
