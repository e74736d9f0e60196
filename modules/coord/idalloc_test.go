package coord

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/lifecycle"
)

// idTestAllocator is an allocator over an ID space unique to t.
func idTestAllocator(t *testing.T, cli *clientv3.Client, max int) *IDAllocator {
	t.Helper()
	a, err := NewIDAllocator(cli, nopLogger(), IDAllocatorOptions{Prefix: "/test-ids/" + t.Name(), Max: max, TTL: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

func TestIDAllocatorValidation(t *testing.T) {
	e := startEtcd(t)
	cli := rawClient(t, e)
	tests := []struct {
		name  string
		cli   *clientv3.Client
		opts  IDAllocatorOptions
		field string
	}{
		{"nil client", nil, IDAllocatorOptions{Service: "s"}, "client"},
		{"no service or prefix", cli, IDAllocatorOptions{}, "service"},
		{"nested service", cli, IDAllocatorOptions{Service: "a/b"}, "service"},
		{"relative prefix", cli, IDAllocatorOptions{Prefix: "ids/"}, "prefix"},
		{"negative max", cli, IDAllocatorOptions{Service: "s", Max: -1}, "max"},
		{"huge max", cli, IDAllocatorOptions{Service: "s", Max: 1 << 20}, "max"},
		{"sub-second ttl", cli, IDAllocatorOptions{Service: "s", TTL: time.Millisecond}, "ttl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewIDAllocator(tc.cli, nil, tc.opts)
			assert.Nil(t, a)
			require.ErrorIs(t, err, lifecycle.ErrValidation)
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, tc.field, ie.Field)
		})
	}
	t.Run("defaults", func(t *testing.T) {
		a, err := NewIDAllocator(cli, nil, IDAllocatorOptions{Service: "im-logic"})
		require.NoError(t, err)
		o := a.Options()
		assert.Equal(t, "/ids/im-logic/", o.Prefix)
		assert.Equal(t, DefaultIDMax, o.Max)
		assert.Equal(t, DefaultIDTTL, o.TTL)
		assert.NotEmpty(t, o.Holder)
	})
}

func TestIDAllocatorConcurrentDistinct(t *testing.T) {
	const n = 12
	e := startEtcd(t)
	// Three instances, each with its own client, start at once.
	allocs := []*IDAllocator{
		idTestAllocator(t, rawClient(t, e), 64),
		idTestAllocator(t, rawClient(t, e), 64),
		idTestAllocator(t, rawClient(t, e), 64),
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
	e := startEtcd(t)
	cli := rawClient(t, e)
	a := idTestAllocator(t, cli, 3)
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
	assert.Len(t, lkKeys(t, cli, a.Options().Prefix), 3, "the refused acquire left nothing behind")

	require.NoError(t, got[1].Release(ctx))
	assert.True(t, lkClosed(got[1].Done()))
	assert.NoError(t, got[1].Release(ctx), "a second Release is a no-op")
	id, err := a.AcquireID(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, id.ID(), "a released ID is handed out again")
	g, err := cli.Get(ctx, id.Key())
	require.NoError(t, err)
	assert.Equal(t, a.Options().Holder, string(g.Kvs[0].Value))
}

func TestIDAllocatorLeaseLoss(t *testing.T) {
	e := startEtcd(t)
	cli := rawClient(t, e)
	a := idTestAllocator(t, rawClient(t, e), 8)
	b := idTestAllocator(t, rawClient(t, e), 8)
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
