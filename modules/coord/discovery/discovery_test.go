package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// regNextEvent waits for one event; ok is false if the channel closed.
func regNextEvent(t *testing.T, ch <-chan DiscoveryEvent) (DiscoveryEvent, bool) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		return ev, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no discovery event within 10s")
		return DiscoveryEvent{}, false
	}
}

func regExpectEvent(t *testing.T, ch <-chan DiscoveryEvent, typ DiscoveryEventType, inst ServiceInstance) {
	t.Helper()
	ev, ok := regNextEvent(t, ch)
	require.True(t, ok, "channel closed early")
	assert.Equal(t, DiscoveryEvent{Type: typ, Instance: inst}, ev)
}

func TestDiscoverValidatesName(t *testing.T) {
	d := NewDiscovery(nil)
	for _, name := range []string{"", "Bad", "a/b", "-x"} {
		_, err := d.Discover(context.Background(), name)
		assert.ErrorIs(t, err, lifecycle.ErrValidation, "Discover(%q)", name)
		_, err = d.Watch(context.Background(), name)
		assert.ErrorIs(t, err, lifecycle.ErrValidation, "Watch(%q)", name)
	}
}

func TestDiscoverEmptyAndForeignEntries(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	ctx := coordtest.Ctx(t, 10*time.Second)
	d := NewDiscovery(cli)

	got, err := d.Discover(ctx, "disc-none")
	require.NoError(t, err)
	assert.Empty(t, got)

	// What etcd's naming/endpoints writes is discovered too; garbage and
	// nested keys are skipped, and a name is not a prefix of another name.
	for k, v := range map[string]string{
		ServiceKeyPrefix + "disc-foreign/ep1":     `{"Op":0,"Addr":"10.1.1.1:80","Metadata":{"v":2}}`,
		ServiceKeyPrefix + "disc-foreign/bad":     `not json`,
		ServiceKeyPrefix + "disc-foreign/noaddr":  `{"Op":0}`,
		ServiceKeyPrefix + "disc-foreign/x/y":     `{"Addr":"10.1.1.2:80"}`,
		ServiceKeyPrefix + "disc-foreign-two/ep9": `{"Addr":"10.1.1.9:80"}`,
	} {
		_, err := cli.Put(ctx, k, v)
		require.NoError(t, err)
	}
	got, err = d.Discover(ctx, "disc-foreign")
	require.NoError(t, err)
	assert.Equal(t, []ServiceInstance{{ID: "ep1", Name: "disc-foreign", Addr: "10.1.1.1:80"}}, got)
}

func TestDiscoverWatchEvents(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	reg := regTestRegistry(t, cli, testOpts{TTL: 5 * time.Second})
	d := NewDiscovery(cli)
	ctx := coordtest.Ctx(t, 30*time.Second)

	a := ServiceInstance{ID: "a", Name: "disc-watch", Addr: "10.0.0.1:1"}
	b := ServiceInstance{ID: "b", Name: "disc-watch", Addr: "10.0.0.2:1", Metadata: map[string]string{"w": "1"}}
	require.NoError(t, reg.Register(ctx, a))

	wctx, stop := context.WithCancel(ctx)
	ch, err := d.Watch(wctx, "disc-watch")
	require.NoError(t, err)
	regExpectEvent(t, ch, InstanceAdded, a) // the current set first

	require.NoError(t, reg.Register(ctx, b))
	regExpectEvent(t, ch, InstanceAdded, b)

	// A rewrite with new metadata is an update; an identical rewrite (what a
	// re-registration does) is no event at all.
	b2 := b
	b2.Metadata = map[string]string{"w": "2"}
	v, err := encode(b2)
	require.NoError(t, err)
	va, err := encode(a)
	require.NoError(t, err)
	// WithIgnoreLease keeps the registry's lease on the keys.
	_, err = cli.Put(ctx, ServiceKey("disc-watch", "a"), va, clientv3.WithIgnoreLease())
	require.NoError(t, err)
	_, err = cli.Put(ctx, ServiceKey("disc-watch", "b"), v, clientv3.WithIgnoreLease())
	require.NoError(t, err)
	regExpectEvent(t, ch, InstanceUpdated, b2)

	require.NoError(t, reg.Deregister(ctx, "a"))
	regExpectEvent(t, ch, InstanceRemoved, a)

	stop()
	for {
		if _, ok := regNextEvent(t, ch); !ok {
			break // closed when ctx ends
		}
	}
}

func TestDiscoverWatchResumesAfterEtcdRestart(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	reg := regTestRegistry(t, cli, testOpts{TTL: 30 * time.Second})
	d := NewDiscovery(cli)
	ctx := coordtest.Ctx(t, 60*time.Second)

	ch, err := d.Watch(ctx, "disc-restart")
	require.NoError(t, err)
	e.Stop()
	require.NoError(t, e.Restart())

	a := ServiceInstance{ID: "a", Name: "disc-restart", Addr: "10.0.0.1:1"}
	require.NoError(t, reg.Register(ctx, a))
	regExpectEvent(t, ch, InstanceAdded, a)
	require.NoError(t, reg.Deregister(ctx, "a"))
	regExpectEvent(t, ch, InstanceRemoved, a)
}

// TestDiscoverWatchReloadsAfterCompaction drives the watcher from a revision
// that etcd has compacted away, as happens when a watch was disconnected
// while changes were made and compacted: it must re-read and report the
// difference so its subscriber ends equal to etcd.
func TestDiscoverWatchReloadsAfterCompaction(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	ctx := coordtest.Ctx(t, 30*time.Second)
	put := func(id, addr string) {
		v, err := encode(ServiceInstance{ID: id, Name: "disc-compact", Addr: addr})
		require.NoError(t, err)
		_, err = cli.Put(ctx, ServiceKey("disc-compact", id), v)
		require.NoError(t, err)
	}
	put("a", "10.0.0.1:1")
	put("b", "10.0.0.2:1")

	w := newWatcher(cli, zap.NewNop(), "disc-compact")
	snap, rev, err := w.load(ctx)
	require.NoError(t, err)
	initial := w.apply(snap)
	require.Len(t, initial, 2)

	// Changes the watcher has not seen, then compaction past them.
	_, err = cli.Delete(ctx, ServiceKey("disc-compact", "a"))
	require.NoError(t, err)
	put("b", "10.0.0.22:1")
	put("c", "10.0.0.3:1")
	resp, err := cli.Get(ctx, "compact-marker")
	require.NoError(t, err)
	_, err = cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
	require.NoError(t, err)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	reloads := make(chan []DiscoveryEvent, 4)
	changes := make(chan []DiscoveryEvent, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(runCtx, rev+1, func(events []DiscoveryEvent, loaded bool) bool {
			if loaded {
				reloads <- events
			} else {
				changes <- events
			}
			return true
		})
	}()
	var got []DiscoveryEvent
	select {
	case got = <-reloads:
	case <-time.After(10 * time.Second):
		t.Fatal("no reload after compaction")
	}
	assert.Equal(t, []DiscoveryEvent{
		{Type: InstanceRemoved, Instance: ServiceInstance{ID: "a", Name: "disc-compact", Addr: "10.0.0.1:1"}},
		{Type: InstanceUpdated, Instance: ServiceInstance{ID: "b", Name: "disc-compact", Addr: "10.0.0.22:1"}},
		{Type: InstanceAdded, Instance: ServiceInstance{ID: "c", Name: "disc-compact", Addr: "10.0.0.3:1"}},
	}, got)

	// And it keeps following after the reload.
	put("d", "10.0.0.4:1")
	select {
	case got = <-changes:
		assert.Equal(t, []DiscoveryEvent{{Type: InstanceAdded, Instance: ServiceInstance{ID: "d", Name: "disc-compact", Addr: "10.0.0.4:1"}}}, got)
	case <-time.After(10 * time.Second):
		t.Fatal("no event after the reload")
	}
	stop()
	<-done
	assert.Len(t, w.known, 3)
}
