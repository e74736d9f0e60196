package locking

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/gochat/im-infra/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig is Defaults with every prefix under the test's own name, so
// tests sharing a server never see each other's keys, and the given TTL for
// elections and IDs (0 keeps the default).
func testConfig(t testing.TB, ttl time.Duration) Config {
	c := Config{}.Defaults()
	c.Locks.Prefix = "/test-locks/" + t.Name() + "/"
	c.Election.Prefix = "/test-elections/" + t.Name() + "/"
	c.IDs.Prefix = "/test-ids/" + t.Name() + "/"
	if ttl != 0 {
		c.Election.TTL = config.Duration(ttl)
		c.IDs.TTL = config.Duration(ttl)
	}
	return c
}

// newTestLocker is a Locker on cli with a prefix unique to t, closed at
// cleanup.
func newTestLocker(t *testing.T, cli *clientv3.Client) *Locker {
	t.Helper()
	l, err := NewLocker(cli, testConfig(t, 0))
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}
