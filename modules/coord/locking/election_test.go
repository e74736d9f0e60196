package locking

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// newTestElection is a candidate on its own client, closed at cleanup.
func newTestElection(t *testing.T, cli *clientv3.Client, ttl time.Duration) *Election {
	t.Helper()
	// The prefix is the test's own, so one name serves every test.
	e, err := NewElection(cli, "el", testConfig(t, ttl))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Close(ctx)
	})
	return e
}

// nextLeader reads the next observed value or fails after 5s.
func nextLeader(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case v, ok := <-ch:
		require.True(t, ok, "observe channel closed")
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("no leader observed")
		return ""
	}
}

func TestElectionValidation(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	tests := []struct {
		name  string
		cli   *clientv3.Client
		ename string
		ttl   time.Duration
		field string
	}{
		{"nil client", nil, "x", time.Second, "client"},
		{"empty name", cli, "", time.Second, "name"},
		{"nested name", cli, "a/b", time.Second, "name"},
		{"zero ttl", cli, "x", 0, "election.ttl"},
		{"sub-second ttl", cli, "x", 999 * time.Millisecond, "election.ttl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{}.Defaults()
			cfg.Election.TTL = config.Duration(tc.ttl)
			el, err := NewElection(tc.cli, tc.ename, cfg)
			assert.Nil(t, el)
			require.ErrorIs(t, err, lifecycle.ErrValidation)
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, tc.field, ie.Field)
		})
	}
}

func TestElectionHandover(t *testing.T) {
	e := coordtest.StartEtcd(t)
	c1 := newTestElection(t, coordtest.RawClient(t, e.Endpoints()...), 2*time.Second)
	c2 := newTestElection(t, coordtest.RawClient(t, e.Endpoints()...), 2*time.Second)
	watcher := newTestElection(t, coordtest.RawClient(t, e.Endpoints()...), 2*time.Second)
	ctx := context.Background()

	_, err := watcher.Leader(ctx)
	require.ErrorIs(t, err, ErrNoLeader)
	assert.False(t, c1.IsLeader())
	assert.True(t, isClosed(c1.Done()), "Done of a non-leader is closed")

	octx, stopObserve := context.WithCancel(ctx)
	defer stopObserve()
	obs := watcher.Observe(octx)

	require.NoError(t, c1.Campaign(ctx, "one"))
	assert.True(t, c1.IsLeader())
	assert.Equal(t, "one", nextLeader(t, obs))
	v, err := c2.Leader(ctx)
	require.NoError(t, err)
	assert.Equal(t, "one", v)

	won := make(chan error, 1)
	go func() { won <- c2.Campaign(ctx, "two") }()
	select {
	case err := <-won:
		t.Fatalf("second candidate won while the first leads: %v", err)
	case <-time.After(200 * time.Millisecond):
	}

	// Campaign while leading replaces the announced value.
	require.NoError(t, c1.Campaign(ctx, "one-b"))
	assert.Equal(t, "one-b", nextLeader(t, obs))
	_, err = c1.Guard(ctx, clientv3.OpPut("/test-data/"+t.Name(), "by-one"))
	require.NoError(t, err)

	done1 := c1.Done()
	require.NoError(t, c1.Resign(ctx))
	assert.True(t, isClosed(done1))
	select {
	case err := <-won:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("resign did not hand leadership over")
	}
	assert.True(t, c2.IsLeader())
	assert.False(t, c1.IsLeader())
	assert.Equal(t, "two", nextLeader(t, obs))
	_, err = c1.Guard(ctx, clientv3.OpPut("/test-data/"+t.Name(), "stale"))
	require.ErrorIs(t, err, ErrNotLeader)
	_, err = c2.Guard(ctx, clientv3.OpPut("/test-data/"+t.Name(), "by-two"))
	require.NoError(t, err)

	// Close resigns and ends observers.
	require.NoError(t, c2.Close(ctx))
	_, err = watcher.Leader(ctx)
	require.ErrorIs(t, err, ErrNoLeader)
	require.Error(t, c2.Campaign(ctx, "again"), "a closed election cannot campaign")
	require.NoError(t, watcher.Close(ctx))
	select {
	case _, ok := <-obs:
		assert.False(t, ok, "Close must end Observe")
	case <-time.After(5 * time.Second):
		t.Fatal("Observe not closed by Close")
	}
}

func TestElectionCancelledCampaignLeavesNoKey(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	leader := newTestElection(t, cli, 2*time.Second)
	waiter := newTestElection(t, coordtest.RawClient(t, e.Endpoints()...), 2*time.Second)
	ctx := context.Background()
	require.NoError(t, leader.Campaign(ctx, "a"))

	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err := waiter.Campaign(cctx, "b")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Len(t, keysUnder(t, cli, testConfig(t, 0).Election.Prefix+waiter.Name()+"/"), 1)
	assert.False(t, waiter.IsLeader())
}

func TestElectionDoneOnLeaseLoss(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cli := coordtest.RawClient(t, e.Endpoints()...)
	c1 := newTestElection(t, coordtest.RawClient(t, e.Endpoints()...), MinTTL)
	c2 := newTestElection(t, coordtest.RawClient(t, e.Endpoints()...), MinTTL)
	ctx := context.Background()

	require.NoError(t, c1.Campaign(ctx, "one"))
	keys := keysUnder(t, cli, testConfig(t, 0).Election.Prefix+c1.Name()+"/")
	require.Len(t, keys, 1)
	_, err := cli.Revoke(ctx, leaseOf(t, keys[0]))
	require.NoError(t, err)
	select {
	case <-c1.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("Done not closed after the leader's lease was lost")
	}
	assert.False(t, c1.IsLeader())
	_, err = c1.Guard(ctx, clientv3.OpPut("/test-data/"+t.Name(), "stale"))
	require.ErrorIs(t, err, ErrNotLeader)

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, c2.Campaign(cctx, "two"))
	// The deposed candidate can stand again on a fresh lease.
	won := make(chan error, 1)
	go func() { won <- c1.Campaign(cctx, "one-again") }()
	require.NoError(t, c2.Resign(ctx))
	require.NoError(t, <-won)
	v, err := c2.Leader(ctx)
	require.NoError(t, err)
	assert.Equal(t, "one-again", v)
}
