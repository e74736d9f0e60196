package devstack_test

import (
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/devstack"
)

// needRedisServer skips (or fails under IMINFRA_TEST_REQUIRE_REAL=1) when
// redis-server is not on PATH.
func needRedisServer(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if devstack.RequireReal() {
			t.Fatalf("redis-server is not on PATH and %s=1", devstack.EnvRequireReal)
		}
		t.Skip("redis-server is not on PATH")
	}
}

func TestRedisStopRestartKeepsDataAndAddress(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts devstack.RedisOptions
	}{
		{"redis-server", devstack.RedisOptions{RequireServer: true}},
		{"miniredis", devstack.RedisOptions{Miniredis: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.RequireServer {
				needRedisServer(t)
			}
			r, err := devstack.StartRedis(tc.opts)
			require.NoError(t, err)
			defer r.Close()
			assert.Equal(t, tc.opts.Miniredis, r.Miniredis())

			v, err := r.Do("SET", "k", "v")
			require.NoError(t, err)
			require.Equal(t, "OK", v)
			addr := r.Addr()

			require.NoError(t, r.Stop())
			assert.False(t, r.Running())
			_, err = r.Do("PING")
			require.Error(t, err, "a stopped server does not answer")

			require.NoError(t, r.Restart())
			assert.True(t, r.Running())
			assert.Equal(t, addr, r.Addr())
			v, err = r.Do("GET", "k")
			require.NoError(t, err)
			assert.Equal(t, "v", v, "data survives Stop/Restart")
		})
	}
}

func TestRedisPasswordAndArgs(t *testing.T) {
	needRedisServer(t)
	r, err := devstack.StartRedis(devstack.RedisOptions{Password: "s3cret", Args: []string{"--maxmemory", "10mb"}})
	require.NoError(t, err)
	defer r.Close()
	v, err := r.Do("CONFIG", "GET", "maxmemory")
	require.NoError(t, err)
	assert.Equal(t, []any{"maxmemory", "10485760"}, v)
	v, err = r.Do("CONFIG", "GET", "requirepass")
	require.NoError(t, err)
	assert.Equal(t, []any{"requirepass", "s3cret"}, v, "Do authenticates with the password")

	_, err = devstack.StartRedis(devstack.RedisOptions{Miniredis: true, Args: []string{"--x"}})
	require.Error(t, err, "Args need redis-server")
}

func TestRedisKillLosesUnsavedData(t *testing.T) {
	needRedisServer(t)
	r, err := devstack.StartRedis(devstack.RedisOptions{RequireServer: true})
	require.NoError(t, err)
	defer r.Close()
	_, err = r.Do("SET", "k", "v")
	require.NoError(t, err)
	r.Kill()
	require.NoError(t, r.Restart())
	v, err := r.Do("GET", "k")
	require.NoError(t, err)
	assert.Nil(t, v, "a crash saves nothing")
}

func TestRedisClusterAndSentinelStart(t *testing.T) {
	needRedisServer(t)
	began := time.Now()
	c, err := devstack.StartRedisCluster(devstack.RedisClusterOptions{})
	require.NoError(t, err)
	defer c.Close()
	require.Len(t, c.Addrs(), 3)
	info, err := c.Nodes()[0].Do("CLUSTER", "INFO")
	require.NoError(t, err)
	assert.Contains(t, info, "cluster_known_nodes:3")
	t.Logf("cluster ready in %s", time.Since(began))

	began = time.Now()
	s, err := devstack.StartRedisSentinel(devstack.RedisSentinelOptions{})
	require.NoError(t, err)
	defer s.Close()
	master, err := s.CurrentMaster()
	require.NoError(t, err)
	assert.Equal(t, s.Master().Addr(), master)
	t.Logf("sentinel ready in %s", time.Since(began))
}

func TestRedisPauseResume(t *testing.T) {
	needRedisServer(t)
	r, err := devstack.StartRedis(devstack.RedisOptions{RequireServer: true})
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, r.Pause())
	conn, err := net.Dial("tcp", r.Addr())
	require.NoError(t, err, "the kernel still accepts connections")
	defer conn.Close()
	_, err = conn.Write([]byte("PING\r\n"))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	_, err = conn.Read(make([]byte, 16))
	require.Error(t, err, "but a paused server answers nothing")
	require.NoError(t, r.Resume())
	v, err := r.Do("PING")
	require.NoError(t, err)
	assert.Equal(t, "PONG", v)
}
