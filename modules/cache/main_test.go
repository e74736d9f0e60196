package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/devstack"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// rueidis' cluster client closes the connections a topology refresh
		// replaced after a 5s grace, in a goroutine that Close does not
		// wait for; it ends by itself.
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
	)
}

// testRedis returns the Redis the tests use: IMINFRA_TEST_REDIS, or
// 127.0.0.1:6379 when it answers; otherwise (unless
// IMINFRA_TEST_REQUIRE_REAL=1, which makes that a failure) a devstack
// server of the test's own: redis-server from PATH, else miniredis.
func testRedis(t testing.TB) (addr string, miniredis bool) {
	t.Helper()
	addr, err := devstack.TestRedisAddr()
	if err == nil {
		return addr, false
	}
	if devstack.RequireReal() {
		t.Fatalf("%v and %s=1", err, devstack.EnvRequireReal)
	}
	r, err := devstack.StartRedis(devstack.RedisOptions{})
	require.NoError(t, err)
	t.Cleanup(r.Close)
	return r.Addr(), r.Miniredis()
}

// needServerBinary skips (or fails under IMINFRA_TEST_REQUIRE_REAL=1) a
// test that starts its own redis-server processes.
func needServerBinary(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range append([]string{"redis-server"}, names...) {
		if _, err := exec.LookPath(n); err != nil {
			if devstack.RequireReal() {
				t.Fatalf("%s is not on PATH and %s=1", n, devstack.EnvRequireReal)
			}
			t.Skipf("%s is not on PATH", n)
		}
	}
}

// startOwnRedis starts a redis-server of the test's own (for restarts).
func startOwnRedis(t testing.TB, opts devstack.RedisOptions) *devstack.Redis {
	t.Helper()
	needServerBinary(t)
	opts.RequireServer = true
	r, err := devstack.StartRedis(opts)
	require.NoError(t, err)
	t.Cleanup(r.Close)
	return r
}

var unsafeKeyChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// testPrefix is a key prefix no other test (or test process) uses.
func testPrefix(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "iminfra-test:" + unsafeKeyChars.ReplaceAllString(t.Name(), "_") + ":" + hex.EncodeToString(b[:]) + ":"
}

// testConfig is a config for addr with a prefix of the test's own.
func testConfig(t testing.TB, addrs ...string) Config {
	cfg := Config{}.Defaults()
	cfg.Addresses = addrs
	cfg.KeyPrefix = testPrefix(t)
	return cfg
}

// newTestClient connects to the shared test Redis with a prefix of the
// test's own, and at cleanup deletes the test's keys and closes.
func newTestClient(t testing.TB, mutate ...func(*Config)) *Client {
	t.Helper()
	addr, _ := testRedis(t)
	cfg := testConfig(t, addr)
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := New(context.Background(), cfg)
	require.NoError(t, err)
	prefix := cfg.KeyPrefix
	rc := c.Client()
	t.Cleanup(func() {
		deleteKeys(t, rc, prefix)
		require.NoError(t, c.Close())
	})
	return c
}

// deleteKeys removes every key starting with prefix from each master (the
// shared Redis is never flushed).
func deleteKeys(t testing.TB, rc rueidis.Client, prefix string) {
	t.Helper()
	if prefix == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes := map[string]rueidis.Client{"": rc}
	if rc.Mode() == rueidis.ClientModeCluster {
		nodes = rc.Nodes()
	}
	for _, n := range nodes {
		var cursor uint64
		for {
			e, err := n.Do(ctx, n.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				t.Logf("cleanup scan: %v", err)
				break
			}
			for _, k := range e.Elements {
				_ = n.Do(ctx, n.B().Del().Key(k).Build()).Error()
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
}

// rawClient is a plain rueidis client on addr (another "process").
func rawClient(t testing.TB, addr string, disableCache bool) rueidis.Client {
	t.Helper()
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: disableCache})
	require.NoError(t, err)
	t.Cleanup(rc.Close)
	return rc
}

// startMiniredis runs an in-process miniredis (no CLIENT TRACKING).
func startMiniredis(t testing.TB) string {
	t.Helper()
	r, err := devstack.StartRedis(devstack.RedisOptions{Miniredis: true})
	require.NoError(t, err)
	t.Cleanup(r.Close)
	return r.Addr()
}

// observedLogger records every line at debug and above.
func observedLogger() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	return zap.New(core), logs
}
