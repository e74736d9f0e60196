package coord_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"

	"github.com/gochat/im-infra/fxinfratest"
	"github.com/gochat/im-infra/modules/coord/coordtest"
	"github.com/gochat/im-infra/modules/coord/discovery"
)

// Issue 6 item 10: the instance leaves the registry when stopping begins,
// so peers that resolve it through etcd:/// stop routing to it during the
// drain, not after it; the service's own stop hooks run after the drain.
func TestRegistryLeavesWhenStoppingBegins(t *testing.T) {
	const drain = time.Second
	inst := discovery.ServiceInstance{ID: "svc-1", Name: "svc", Addr: "127.0.0.1:9000"}
	var serviceStopped time.Time
	app := fxinfratest.New(t,
		fxinfratest.WithConfig("admin", `{"addr":"127.0.0.1:0","drainDelay":"1s"}`),
		fxinfratest.WithFx(fx.Invoke(func(lc fx.Lifecycle, reg *discovery.Registry) {
			lc.Append(fx.Hook{
				OnStart: func(ctx context.Context) error { return reg.Register(ctx, inst) },
				OnStop:  func(context.Context) error { serviceStopped = time.Now(); return nil },
			})
		})),
	)
	watcher := coordtest.RawClient(t, app.EtcdEndpoints()...)
	ctx := coordtest.Ctx(t, 20*time.Second)
	key := discovery.ServiceKey(inst.Name, inst.ID)
	resp, err := watcher.Get(ctx, key)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "registered at start")
	wch := watcher.Watch(ctx, key, clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterPut())
	deleted := make(chan time.Time, 1)
	go func() {
		for wr := range wch {
			if len(wr.Events) > 0 {
				deleted <- time.Now()
				return
			}
		}
	}()

	began := time.Now()
	app.RequireStop()
	var gone time.Time
	select {
	case gone = <-deleted:
	case <-time.After(5 * time.Second):
		t.Fatal("the instance was never removed")
	}
	t.Logf("stop took %v; instance gone %v and service stop hook %v after stop began",
		time.Since(began), gone.Sub(began), serviceStopped.Sub(began))
	assert.Less(t, gone.Sub(began), drain/2, "the instance leaves as stopping begins")
	assert.GreaterOrEqual(t, serviceStopped.Sub(began), drain, "the service's own stop hooks run after the drain")
	assert.True(t, gone.Before(serviceStopped))
}
