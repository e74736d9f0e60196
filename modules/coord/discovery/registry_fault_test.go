package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// Issue 6 item 5: a key deleted while its lease lives is written again;
// Registered and health show the gap, and both edges are logged.
func TestRegistryRestoresKeyDeletedWhileLeaseLives(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	other := coordtest.RawClient(t, e.Endpoints()...)
	core, logs := observer.New(zap.InfoLevel)
	// A slow first retry makes the gap long enough to observe.
	reg := newTestRegistry(t, cli, testOpts{TTL: 10 * time.Second, RetryMin: time.Second, RetryMax: 2 * time.Second}, WithLogger(zap.New(core)))
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	health := NewHealthChecker(reg)
	ctx := coordtest.Ctx(t, 20*time.Second)
	inst := ServiceInstance{ID: "d1", Name: "reg-deleted", Addr: "127.0.0.1:7003"}
	require.NoError(t, reg.Register(ctx, inst))
	key := ServiceKey(inst.Name, inst.ID)
	lease := regTestLease(t, other, key)

	_, err := other.Delete(ctx, key)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !reg.Registered(inst.ID) }, 2*time.Second, 5*time.Millisecond,
		"Registered turns false while the key is gone")
	st := health.Check(ctx)
	assert.Equal(t, lifecycle.Degraded, st.State)
	assert.Equal(t, []string{inst.ID}, st.Details["reregistering"])

	require.Eventually(t, func() bool { return reg.Registered(inst.ID) }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, lifecycle.Healthy, health.Check(ctx).State)
	assert.Equal(t, lease, regTestLease(t, other, key), "restored under the same, still living lease")
	got, err := NewDiscovery(other).Discover(ctx, inst.Name)
	require.NoError(t, err)
	assert.Equal(t, []ServiceInstance{inst}, got)
	assert.Equal(t, 1, logs.FilterMessageSnippet("deleted").FilterLevelExact(zap.WarnLevel).Len(), "the deletion is logged")
	assert.Equal(t, 1, logs.FilterMessageSnippet("restored").FilterLevelExact(zap.InfoLevel).Len(), "the restoration is logged")
}

// endedCtx is a context that has already ended.
func endedCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// Issue 6 item 6: Deregister and Close with an ended ctx still remove the
// instance at once, and a second call is harmless.
func TestRegistryDeregisterWithEndedContext(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	reg := regTestRegistry(t, cli, testOpts{TTL: 30 * time.Second})
	ctx := coordtest.Ctx(t, 10*time.Second)
	a := ServiceInstance{ID: "a", Name: "reg-ended", Addr: "127.0.0.1:7004"}
	b := ServiceInstance{ID: "b", Name: "reg-ended", Addr: "127.0.0.1:7005"}
	require.NoError(t, reg.Register(ctx, a))
	require.NoError(t, reg.Register(ctx, b))

	require.NoError(t, reg.Deregister(endedCtx(), "a"))
	got, err := NewDiscovery(cli).Discover(ctx, "reg-ended")
	require.NoError(t, err)
	assert.Equal(t, []ServiceInstance{b}, got, "deregistered at once, not after the 30s TTL")

	require.NoError(t, reg.Close(endedCtx()))
	got, err = NewDiscovery(cli).Discover(ctx, "reg-ended")
	require.NoError(t, err)
	assert.Empty(t, got, "Close with an ended ctx still removes every instance")
	require.NoError(t, reg.Close(endedCtx()), "a second Close is harmless")
}

// Issue 6 item 8: with etcd down, Register does not fail (a service that
// registers at start must still start): it returns at once, keeps trying in
// the background, and health says degraded until the instance is in etcd.
func TestRegistryRegisterWithEtcdDownRetriesInBackground(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	reg := regTestRegistry(t, cli, testOpts{TTL: 5 * time.Second, RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	health := NewHealthChecker(reg)
	e.Stop()
	inst := ServiceInstance{ID: "d1", Name: "reg-down", Addr: "127.0.0.1:7002"}

	start := time.Now()
	require.NoError(t, reg.Register(coordtest.Ctx(t, 5*time.Second), inst), "etcd being down is not the caller's error")
	assert.Less(t, time.Since(start), time.Second, "Register does not wait for etcd")
	assert.False(t, reg.Registered(inst.ID))
	st := health.Check(context.Background())
	assert.Equal(t, lifecycle.Degraded, st.State)
	assert.Equal(t, []string{inst.ID}, st.Details["reregistering"])

	require.NoError(t, e.Restart())
	require.Eventually(t, func() bool { return reg.Registered(inst.ID) }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, lifecycle.Healthy, health.Check(context.Background()).State)
	got, err := NewDiscovery(coordtest.RawClient(t, e.Endpoints()...)).Discover(coordtest.Ctx(t, 5*time.Second), inst.Name)
	require.NoError(t, err)
	assert.Equal(t, []ServiceInstance{inst}, got)
}
