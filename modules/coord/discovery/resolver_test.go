package discovery

import (
	"context"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// regTestGRPCServer serves the standard health service on a free port and
// returns its address; it is stopped at cleanup.
func regTestGRPCServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// regTestCallPeers makes n health calls and counts which server answered.
func regTestCallPeers(t *testing.T, ctx context.Context, conn *grpc.ClientConn, n int) map[string]int {
	t.Helper()
	hc := healthpb.NewHealthClient(conn)
	seen := make(map[string]int)
	for range n {
		var p peer.Peer
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := hc.Check(callCtx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
		cancel()
		if err != nil {
			seen["error"]++
			continue
		}
		seen[p.Addr.String()]++
	}
	return seen
}

func TestResolverBalancesOverLiveInstances(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	reg := regTestRegistry(t, cli, testOpts{TTL: 30 * time.Second})
	ctx := coordtest.Ctx(t, 60*time.Second)
	addrA, addrB := regTestGRPCServer(t), regTestGRPCServer(t)
	require.NoError(t, reg.Register(ctx, ServiceInstance{ID: "a", Name: "svc", Addr: addrA}))
	require.NoError(t, reg.Register(ctx, ServiceInstance{ID: "b", Name: "svc", Addr: addrB}))

	conn, err := grpc.NewClient("etcd:///svc",
		grpc.WithResolvers(NewResolverBuilder(cli)),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	// round_robin starts picking as soon as one backend is ready, so give
	// the second a moment before demanding an even spread.
	var seen map[string]int
	require.Eventually(t, func() bool {
		seen = regTestCallPeers(t, ctx, conn, 20)
		return seen[addrA] > 0 && seen[addrB] > 0 && seen["error"] == 0
	}, 10*time.Second, 50*time.Millisecond, "calls reach both: %v", seen)
	seen = regTestCallPeers(t, ctx, conn, 20)
	assert.Equal(t, map[string]int{addrA: 10, addrB: 10}, seen, "round robin over two ready backends")

	require.NoError(t, reg.Deregister(ctx, "a"))
	require.Eventually(t, func() bool {
		seen = regTestCallPeers(t, ctx, conn, 20)
		return seen[addrB] == 20
	}, 10*time.Second, 50*time.Millisecond, "after deregister only b: %v", seen)

	// While etcd is down the last known instances keep serving calls.
	e.Stop()
	assert.Equal(t, map[string]int{addrB: 20}, regTestCallPeers(t, ctx, conn, 20))
	require.NoError(t, e.Restart())
	require.NoError(t, reg.Register(ctx, ServiceInstance{ID: "a", Name: "svc", Addr: addrA}))
	require.Eventually(t, func() bool {
		seen = regTestCallPeers(t, ctx, conn, 20)
		return seen[addrA] > 0 && seen[addrB] > 0
	}, 20*time.Second, 50*time.Millisecond, "a re-registered after restart: %v", seen)
}

// regFakeConn records what a resolver reports.
type regFakeConn struct {
	resolver.ClientConn // unused methods panic, which the test would see
	mu                  sync.Mutex
	states              []resolver.State
	errs                []error
}

func (c *regFakeConn) UpdateState(s resolver.State) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.states = append(c.states, s)
	return nil
}

func (c *regFakeConn) ReportError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err)
}

func (c *regFakeConn) ParseServiceConfig(string) *serviceconfig.ParseResult { return nil }

func (c *regFakeConn) last() (resolver.State, int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.states) == 0 {
		return resolver.State{}, 0, len(c.errs)
	}
	return c.states[len(c.states)-1], len(c.states), len(c.errs)
}

func regTarget(name string) resolver.Target {
	return resolver.Target{URL: url.URL{Scheme: ResolverScheme, Path: "/" + name}}
}

func TestResolverStateCarriesMetadataAndEmptySet(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	reg := regTestRegistry(t, cli, testOpts{TTL: 30 * time.Second})
	ctx := coordtest.Ctx(t, 20*time.Second)
	b := NewResolverBuilder(cli)
	assert.Equal(t, "etcd", b.Scheme())

	cc := &regFakeConn{}
	r, err := b.Build(regTarget("resolver-md"), cc, resolver.BuildOptions{})
	require.NoError(t, err)
	defer r.Close()
	r.ResolveNow(resolver.ResolveNowOptions{})

	// An empty service still yields a state, so gRPC fails calls instead of
	// waiting for a resolver that has nothing to say.
	require.Eventually(t, func() bool { _, n, _ := cc.last(); return n == 1 }, 5*time.Second, 10*time.Millisecond)
	st, _, _ := cc.last()
	assert.Empty(t, st.Endpoints)

	inst := ServiceInstance{ID: "m", Name: "resolver-md", Addr: "127.0.0.1:9", Metadata: map[string]string{"zone": "z2"}}
	require.NoError(t, reg.Register(ctx, inst))
	require.Eventually(t, func() bool { st, _, _ = cc.last(); return len(st.Endpoints) == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, "127.0.0.1:9", st.Endpoints[0].Addresses[0].Addr)
	got, ok := InstanceFromEndpoint(st.Endpoints[0])
	require.True(t, ok)
	assert.Equal(t, inst, got)
	_, ok = InstanceFromEndpoint(resolver.Endpoint{})
	assert.False(t, ok)
}

func TestResolverBuildNeverBlocksOnEtcd(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	e.Stop()

	cc := &regFakeConn{}
	start := time.Now()
	r, err := NewResolverBuilder(cli).Build(regTarget("resolver-down"), cc, resolver.BuildOptions{})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 100*time.Millisecond)
	// The failed first read is reported so calls fail fast instead of hanging.
	require.Eventually(t, func() bool { _, _, n := cc.last(); return n > 0 }, 15*time.Second, 20*time.Millisecond)
	cc.mu.Lock()
	assert.ErrorIs(t, cc.errs[0], lifecycle.ErrTimeout)
	cc.mu.Unlock()

	require.NoError(t, e.Restart())
	require.Eventually(t, func() bool { _, n, _ := cc.last(); return n > 0 }, 20*time.Second, 20*time.Millisecond)
	r.Close()
}

func TestResolverRejectsBadTarget(t *testing.T) {
	for _, name := range []string{"", "Bad_Name", "a/b"} {
		_, err := NewResolverBuilder(nil).Build(regTarget(name), &regFakeConn{}, resolver.BuildOptions{})
		assert.ErrorIs(t, err, lifecycle.ErrValidation, "target %q", name)
	}
}
