package locking

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// newTestAllocator is an allocator over an ID space unique to t.
func newTestAllocator(t *testing.T, cli *clientv3.Client, max int) *IDAllocator {
	t.Helper()
	cfg := testConfig(t, 2*time.Second)
	cfg.IDs.Max = max
	a, err := NewIDAllocator(cli, "svc", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

func TestIDAllocatorValidation(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	tests := []struct {
		name    string
		cli     *clientv3.Client
		service string
		edit    func(*Config)
		field   string
	}{
		{"nil client", nil, "s", func(*Config) {}, "client"},
		{"no service or prefix", cli, "", func(*Config) {}, "service"},
		{"nested service", cli, "a/b", func(*Config) {}, "service"},
		{"relative prefix", cli, "s", func(c *Config) { c.IDs.Prefix = "ids/" }, "ids.prefix"},
		{"negative max", cli, "s", func(c *Config) { c.IDs.Max = -1 }, "ids.max"},
		{"huge max", cli, "s", func(c *Config) { c.IDs.Max = 1 << 20 }, "ids.max"},
		{"sub-second ttl", cli, "s", func(c *Config) { c.IDs.TTL = config.Duration(time.Millisecond) }, "ids.ttl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{}.Defaults()
			tc.edit(&cfg)
			a, err := NewIDAllocator(tc.cli, tc.service, cfg)
			assert.Nil(t, a)
			require.ErrorIs(t, err, lifecycle.ErrValidation)
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, tc.field, ie.Field)
		})
	}
	t.Run("defaults", func(t *testing.T) {
		a, err := NewIDAllocator(cli, "im-logic", Config{}.Defaults())
		require.NoError(t, err)
		assert.Equal(t, "/ids/im-logic/", a.Prefix())
		assert.Equal(t, DefaultIDMax, a.Max())
		assert.NotEmpty(t, a.Holder())
	})
}

func TestIDAllocatorConcurrentDistinct(t *testing.T) {
	const n = 12
	e := coordtest.StartEtcd(t)
	// Three instances, each with its own client, start at once.
	allocs := []*IDAllocator{
		newTestAllocator(t, coordtest.RawClient(t, e.Endpoints()...), 64),
		newTestAllocator(t, coordtest.RawClient(t, e.Endpoints()...), 64),
		newTestAllocator(t, coordtest.RawClient(t, e.Endpoints()...), 64),
	}
	ctx := context.Background()
	var (
		mu  sync.Mutex
		ids []int
		wg  sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			id, err := allocs[i%len(allocs)].AcquireID(ctx)
			if assert.NoError(t, err) {
				mu.Lock()
				ids = append(ids, id.ID())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Ints(ids)
	want := make([]int, n)
	for i := range want {
		want[i] = i + 1
	}
	assert.Equal(t, want, ids, "the n smallest IDs, each once")
}

func TestIDAllocatorExhaustedAndReuse(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	a := newTestAllocator(t, cli, 3)
	ctx := context.Background()

	var got []*InstanceID
	for want := 1; want <= 3; want++ {
		id, err := a.AcquireID(ctx)
		require.NoError(t, err)
		assert.Equal(t, want, id.ID())
		got = append(got, id)
	}
	_, err := a.AcquireID(ctx)
	require.ErrorIs(t, err, ErrIDsExhausted)
	assert.Len(t, keysUnder(t, cli, a.Prefix()), 3, "the refused acquire left nothing behind")

	require.NoError(t, got[1].Release(ctx))
	assert.True(t, isClosed(got[1].Done()))
	assert.NoError(t, got[1].Release(ctx), "a second Release is a no-op")
	id, err := a.AcquireID(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, id.ID(), "a released ID is handed out again")
	g, err := cli.Get(ctx, id.Key())
	require.NoError(t, err)
	assert.Equal(t, a.Holder(), string(g.Kvs[0].Value))
}

func TestIDAllocatorLeaseLoss(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	a := newTestAllocator(t, coordtest.RawClient(t, e.Endpoints()...), 8)
	b := newTestAllocator(t, coordtest.RawClient(t, e.Endpoints()...), 8)
	ctx := context.Background()

	id, err := a.AcquireID(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, id.ID())
	g, err := cli.Get(ctx, id.Key())
	require.NoError(t, err)
	_, err = cli.Revoke(ctx, clientv3.LeaseID(g.Kvs[0].Lease))
	require.NoError(t, err)
	select {
	case <-id.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("holder not told its ID's lease was lost")
	}
	other, err := b.AcquireID(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, other.ID(), "the lost ID is free for another instance")
	assert.NoError(t, id.Release(ctx), "releasing a lost ID is not an error")
	g, err = cli.Get(ctx, other.Key())
	require.NoError(t, err)
	require.Len(t, g.Kvs, 1, "the old holder's Release must not free the new holder's ID")
}
