package discovery

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// testOpts is a Config for tests: zero fields keep their defaults.
type testOpts struct{ TTL, RetryMin, RetryMax, RequestTimeout time.Duration }

func (o testOpts) config() Config {
	c := Config{}.Defaults()
	for _, f := range []struct {
		src time.Duration
		dst *config.Duration
	}{{o.TTL, &c.TTL}, {o.RetryMin, &c.RetryMin}, {o.RetryMax, &c.RetryMax}, {o.RequestTimeout, &c.RequestTimeout}} {
		if f.src != 0 {
			*f.dst = config.Duration(f.src)
		}
	}
	return c
}

// newTestRegistry builds a Registry on cli with o, or fails t.
func newTestRegistry(t testing.TB, cli *clientv3.Client, o testOpts, opts ...Option) *Registry {
	t.Helper()
	r, err := NewRegistry(cli, o.config(), opts...)
	require.NoError(t, err)
	return r
}

// regTestRegistry returns a Registry on cli that is closed at cleanup, before
// the client (cleanups run last-in first-out).
func regTestRegistry(t testing.TB, cli *clientv3.Client, o testOpts) *Registry {
	t.Helper()
	r := newTestRegistry(t, cli, o)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.Close(ctx)
	})
	return r
}

func TestRegistryValidation(t *testing.T) {
	good := ServiceInstance{ID: "i-1", Name: "im-repo", Addr: "127.0.0.1:9000"}
	tests := []struct {
		name  string
		edit  func(*ServiceInstance)
		field string // "" means valid
	}{
		{"valid", func(*ServiceInstance) {}, ""},
		{"valid hostname addr", func(s *ServiceInstance) { s.Addr = "repo-0.repo.svc:443" }, ""},
		{"valid ipv6 addr", func(s *ServiceInstance) { s.Addr = "[::1]:9000" }, ""},
		{"valid digits name", func(s *ServiceInstance) { s.Name = "3rd-party" }, ""},
		{"empty name", func(s *ServiceInstance) { s.Name = "" }, "name"},
		{"upper-case name", func(s *ServiceInstance) { s.Name = "ImRepo" }, "name"},
		{"underscore name", func(s *ServiceInstance) { s.Name = "im_repo" }, "name"},
		{"slash name", func(s *ServiceInstance) { s.Name = "im/repo" }, "name"},
		{"leading dash name", func(s *ServiceInstance) { s.Name = "-repo" }, "name"},
		{"trailing dash name", func(s *ServiceInstance) { s.Name = "repo-" }, "name"},
		{"long name", func(s *ServiceInstance) { s.Name = string(make([]byte, 64)) }, "name"},
		{"empty id", func(s *ServiceInstance) { s.ID = "" }, "id"},
		{"slash id", func(s *ServiceInstance) { s.ID = "a/b" }, "id"},
		{"space id", func(s *ServiceInstance) { s.ID = "a b" }, "id"},
		{"empty addr", func(s *ServiceInstance) { s.Addr = "" }, "addr"},
		{"no port", func(s *ServiceInstance) { s.Addr = "127.0.0.1" }, "addr"},
		{"no host", func(s *ServiceInstance) { s.Addr = ":9000" }, "addr"},
		{"port zero", func(s *ServiceInstance) { s.Addr = "127.0.0.1:0" }, "addr"},
		{"port too big", func(s *ServiceInstance) { s.Addr = "127.0.0.1:70000" }, "addr"},
		{"named port", func(s *ServiceInstance) { s.Addr = "127.0.0.1:http" }, "addr"},
	}
	// Validation happens before any I/O, so a client that never connects
	// proves Register does not reach etcd with bad input.
	r := &Registry{entries: map[string]*entry{}}
	r.setConfig(Config{}.Defaults())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inst := good
			tt.edit(&inst)
			err := inst.Validate()
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, lifecycle.ErrValidation)
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, tt.field, ie.Field)
			assert.Equal(t, RegistryComponent, ie.Component)

			err = r.Register(context.Background(), inst)
			assert.ErrorIs(t, err, lifecycle.ErrValidation)
		})
	}
}

func TestRegistryRegisterDiscoverDeregister(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	reg := regTestRegistry(t, cli, testOpts{TTL: 5 * time.Second})
	disc := NewDiscovery(cli)
	ctx := coordtest.Ctx(t, 10*time.Second)

	a := ServiceInstance{ID: "a", Name: "reg-basic", Addr: "10.0.0.1:9000", Metadata: map[string]string{"zone": "z1"}}
	b := ServiceInstance{ID: "b", Name: "reg-basic", Addr: "10.0.0.2:9000"}
	require.NoError(t, reg.Register(ctx, a))
	require.NoError(t, reg.Register(ctx, b))
	assert.True(t, reg.Registered("a"))
	assert.False(t, reg.Registered("nope"))

	got, err := disc.Discover(ctx, "reg-basic")
	require.NoError(t, err)
	assert.Equal(t, []ServiceInstance{a, b}, got)

	// The key carries a lease with the configured TTL.
	resp, err := cli.Get(ctx, ServiceKey("reg-basic", "a"))
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	require.NoError(t, err)
	assert.Equal(t, int64(5), ttl.GrantedTTL)

	err = reg.Register(ctx, ServiceInstance{ID: "a", Name: "reg-basic", Addr: "10.0.0.9:1"})
	assert.ErrorIs(t, err, lifecycle.ErrValidation, "duplicate ID")

	require.NoError(t, reg.Deregister(ctx, "a"))
	assert.False(t, reg.Registered("a"))
	got, err = disc.Discover(ctx, "reg-basic")
	require.NoError(t, err)
	assert.Equal(t, []ServiceInstance{b}, got)

	assert.NoError(t, reg.Deregister(ctx, "a"), "a second Deregister is harmless")
	assert.Zero(t, reg.Reregistrations())
}

func TestRegistryCloseRevokesAllAndLeavesNoGoroutines(t *testing.T) {
	e := coordtest.StartEtcd(t)
	check := coordtest.RawClient(t, e.Endpoints()...)
	// Everything started from here on (client, registry, keepers) must be
	// gone once the registry and its client are closed.
	ignore := goleak.IgnoreCurrent()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	ctx := coordtest.Ctx(t, 10*time.Second)

	reg := newTestRegistry(t, cli, testOpts{TTL: 2 * time.Second})
	for _, id := range []string{"x", "y", "z"} {
		require.NoError(t, reg.Register(ctx, ServiceInstance{ID: id, Name: "reg-close", Addr: "127.0.0.1:1000"}))
	}
	require.NoError(t, reg.Close(ctx))
	require.NoError(t, reg.Close(ctx), "Close is idempotent")
	assert.False(t, reg.Registered("x"))

	resp, err := check.Get(ctx, ServiceKeyPrefix+"reg-close/", clientv3.WithPrefix())
	require.NoError(t, err)
	assert.Empty(t, resp.Kvs, "Close revokes the leases at once")
	leases, err := check.Leases(ctx)
	require.NoError(t, err)
	assert.Empty(t, leases.Leases)

	err = reg.Register(ctx, ServiceInstance{ID: "late", Name: "reg-close", Addr: "127.0.0.1:1000"})
	assert.ErrorIs(t, err, lifecycle.ErrInternal, "register after close")

	require.NoError(t, cli.Close())
	goleak.VerifyNone(t, ignore)
}

func TestRegistryReregistersAfterLeaseRevoked(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	other := coordtest.RawClient(t, e.Endpoints()...)
	reg := regTestRegistry(t, cli, testOpts{TTL: 5 * time.Second, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	ctx := coordtest.Ctx(t, 15*time.Second)
	inst := ServiceInstance{ID: "r1", Name: "reg-revoke", Addr: "127.0.0.1:7000"}
	require.NoError(t, reg.Register(ctx, inst))

	key := ServiceKey(inst.Name, inst.ID)
	before := regTestLease(t, other, key)
	// An operator (or a bug elsewhere) revokes the lease: the key vanishes
	// and the server answers the next keepalive with TTL 0.
	_, err := other.Revoke(ctx, before)
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		return reg.Reregistrations() == 1 && reg.Registered(inst.ID)
	}, 10*time.Second, 20*time.Millisecond)
	after := regTestLease(t, other, key)
	assert.NotEqual(t, before, after)
	got, err := NewDiscovery(other).Discover(ctx, inst.Name)
	require.NoError(t, err)
	assert.Equal(t, []ServiceInstance{inst}, got)
}

func TestRegistryReregistersAfterOutageLongerThanTTL(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	const ttl = 2 * time.Second
	core, logs := observer.New(zap.InfoLevel)
	reg := newTestRegistry(t, cli, testOpts{TTL: ttl, RetryMin: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, RequestTimeout: time.Second}, WithLogger(zap.New(core)))
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	ctx := coordtest.Ctx(t, 60*time.Second)
	inst := ServiceInstance{ID: "o1", Name: "reg-outage", Addr: "127.0.0.1:7001"}
	require.NoError(t, reg.Register(ctx, inst))
	key := ServiceKey(inst.Name, inst.ID)
	before := regTestLease(t, cli, key)
	health := NewHealthChecker(reg)
	require.Equal(t, lifecycle.Healthy, health.Check(ctx).State)

	start := time.Now()
	e.Stop()
	t.Logf("etcd stopped in %v", time.Since(start).Round(time.Millisecond))
	// With no renewal for a whole TTL the client gives the lease up, and the
	// registry must notice that while etcd is still down.
	require.Eventually(t, func() bool { return !reg.Registered(inst.ID) }, 5*time.Second, 20*time.Millisecond)
	t.Logf("loss detected %v after stop began", time.Since(start).Round(time.Millisecond))
	st := health.Check(ctx)
	assert.Equal(t, lifecycle.Degraded, st.State, "an instance peers cannot discover shows in /readyz")
	assert.Equal(t, []string{"o1"}, st.Details["reregistering"])
	time.Sleep(3 * ttl) // well past expiry by any clock
	require.NoError(t, e.Restart())
	restarted := time.Now()

	require.Eventually(t, func() bool { return reg.Registered(inst.ID) }, 20*time.Second, 20*time.Millisecond)
	t.Logf("re-registered %v after etcd restart", time.Since(restarted).Round(time.Millisecond))
	assert.Positive(t, reg.Reregistrations())
	assert.Equal(t, lifecycle.Healthy, health.Check(ctx).State)

	after := regTestLease(t, cli, key)
	assert.NotEqual(t, before, after, "the key is held by a fresh lease")
	// The registration is kept alive, not merely rewritten once: it outlives
	// several TTLs, and the old lease (which a restarted leader may have
	// extended) no longer holds it.
	time.Sleep(2*ttl + 500*time.Millisecond)
	got, err := NewDiscovery(cli).Discover(ctx, inst.Name)
	require.NoError(t, err)
	assert.Equal(t, []ServiceInstance{inst}, got)
	ttlResp, err := cli.TimeToLive(ctx, after)
	require.NoError(t, err)
	// TTL is whole seconds left, so 0 is a live 1s lease; -1 means gone.
	assert.GreaterOrEqual(t, ttlResp.TTL, int64(0))
	assert.True(t, reg.Registered(inst.ID))

	// Both the loss and the recovery are logged, never silent.
	assert.Equal(t, 1, logs.FilterMessageSnippet("registration lost").FilterLevelExact(zap.WarnLevel).Len())
	assert.Equal(t, 1, logs.FilterMessageSnippet("re-registered").FilterLevelExact(zap.InfoLevel).Len())
}

func regTestLease(t *testing.T, cli *clientv3.Client, key string) clientv3.LeaseID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "key %s", key)
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

func TestRegistryBackoffBounds(t *testing.T) {
	lo, hi := 100*time.Millisecond, 5*time.Second
	for attempt := range 40 {
		want := min(lo<<min(attempt, 20), hi)
		for range 50 {
			d := backoff(attempt, lo, hi)
			require.GreaterOrEqual(t, d, want/2, "attempt %d", attempt)
			require.LessOrEqual(t, d, want, "attempt %d", attempt)
		}
	}
}

// breakableWatcher passes watches through until broken, then ends every
// watch it handed out, as a watch stream that fails does.
type breakableWatcher struct {
	clientv3.Watcher
	broken chan struct{}
}

func (w *breakableWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	in := w.Watcher.Watch(ctx, key, opts...)
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		for {
			select {
			case <-w.broken:
				return
			case <-ctx.Done():
				return
			case wr, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- wr:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// A watch that breaks while etcd is down makes the registry watch again,
// and clientv3's Watch blocks until etcd answers; the lost lease must still
// be noticed within the TTL, not when etcd comes back.
func TestRegistryNoticesLeaseLossWhileItsWatchWaitsForEtcd(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	w := &breakableWatcher{Watcher: cli.Watcher, broken: make(chan struct{})}
	cli.Watcher = w
	const ttl = 2 * time.Second
	reg := newTestRegistry(t, cli, testOpts{TTL: ttl, RetryMin: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, RequestTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	inst := ServiceInstance{ID: "w1", Name: "reg-watch-outage", Addr: "127.0.0.1:7002"}
	require.NoError(t, reg.Register(coordtest.Ctx(t, 10*time.Second), inst))

	e.Stop()
	start := time.Now()
	close(w.broken)
	// clientv3 gives a lease up after a TTL without renewal, checked once a
	// second: TTL + 1 s, and a second of slack for a loaded machine.
	require.Eventually(t, func() bool { return !reg.Registered(inst.ID) }, ttl+2*time.Second, 20*time.Millisecond,
		"the loss is seen while etcd is still down")
	t.Logf("loss detected %v after the watch broke", time.Since(start).Round(time.Millisecond))
	require.NoError(t, e.Restart())
}

// A Register whose first attempt succeeded returns with the instance
// registered: Registered is true at once, not a moment later.
func TestRegistryRegisteredWhenRegisterReturns(t *testing.T) {
	// More Ps than cores: the OS then preempts the keeper's thread at any
	// instruction, which is what exposes an early return.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	reg := newTestRegistry(t, cli, testOpts{TTL: 30 * time.Second})
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	ctx := coordtest.Ctx(t, 30*time.Second)
	for i := range 200 {
		id := "i" + strconv.Itoa(i)
		require.NoError(t, reg.Register(ctx, ServiceInstance{ID: id, Name: "reg-at-once", Addr: "127.0.0.1:7003"}))
		require.True(t, reg.Registered(id), "registered when Register returned (instance %d)", i)
	}
}
