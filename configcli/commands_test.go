package configcli_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/configcli"
	"github.com/gochat/im-infra/modules/coord"
)

func TestInitSetDeleteWatch(t *testing.T) {
	c := startCluster(t)
	keys := []string{key("im-repo", "clog"), key("im-repo", "admin"), key("im-repo", "db")}

	t.Run("init writes every component's defaults once", func(t *testing.T) {
		res := c.op(t, "--service", "im-repo", "init", "--output", "json")
		require.Equal(t, 0, res.code, res.String())
		rev := int64(res.decode(t)["revision"].(float64))
		assert.Contains(t, res.err, `skipped store: its defaults are not a valid config here (field "dsn": required)`)
		assert.False(t, c.snapshot(t, key("im-repo", "store"))[key("im-repo", "store")].exists)
		got := c.snapshot(t, keys...)
		for _, k := range keys {
			require.True(t, got[k].exists, k)
			assert.Equal(t, rev, got[k].modRev, "one transaction")
		}
		assert.Contains(t, got[key("im-repo", "admin")].value, `"addr": "127.0.0.1:9090"`)
		assert.Contains(t, got[key("im-repo", "db")].value, `"timeout": "5s"`)

		res = c.op(t, "--service", "im-repo", "set", "db", `{"poolSize":2}`)
		require.Equal(t, 0, res.code, res.String())
		before := c.snapshot(t, keys...)
		res = c.op(t, "--service", "im-repo", "init")
		require.Equal(t, 1, res.code, res.String())
		assert.Contains(t, res.err, "3 document(s) exist already")
		assert.Contains(t, res.err, "--force")
		assert.Equal(t, before, c.snapshot(t, keys...), "nothing written")

		res = c.op(t, "--service", "im-repo", "init", "--force", "--components", "db")
		require.Equal(t, 0, res.code, res.String())
		assert.Contains(t, res.out, "put     "+key("im-repo", "db"))
		assert.Contains(t, c.snapshot(t, keys...)[key("im-repo", "db")].value, `"poolSize": 10`)
	})

	t.Run("set with --if-revision is a compare-and-swap", func(t *testing.T) {
		cur := c.snapshot(t, key("im-repo", "db"))[key("im-repo", "db")].modRev
		res := c.op(t, "--service", "im-repo", "set", "db", `{"poolSize":3}`, "--if-revision", itoa(cur-1))
		require.Equal(t, 1, res.code, res.String())
		assert.Contains(t, res.err, "someone changed it; nothing was written")
		res = c.op(t, "--service", "im-repo", "set", "db", `{"poolSize":3}`, "--if-revision", "0")
		require.Equal(t, 1, res.code, "0 means: only if it does not exist: %s", res)
		res = c.op(t, "--service", "im-repo", "set", "db", `{"poolSize":3}`, "--if-revision", itoa(cur))
		require.Equal(t, 0, res.code, res.String())
		res = c.op(t, "--service", "im-repo", "set", "db", "--file", "-", "--if-revision", itoa(cur))
		require.Equal(t, 2, res.code, "no document on stdin is a usage error: %s", res)
	})

	t.Run("set and delete are checked like import", func(t *testing.T) {
		res := c.op(t, "--service", "im-repo", "set", "db", `{"poolSize":0}`)
		require.Equal(t, 1, res.code, res.String())
		assert.Contains(t, res.err, key("im-repo", "db")+`: field "poolSize": must be > 0, got 0`)
		// A component each service must configure: the global layer may
		// leave the DSN out, a service may not.
		res = c.op(t, "--service", "global", "set", "store", `{"maxOpen":50}`)
		require.Equal(t, 0, res.code, res.String())
		assert.Contains(t, res.err, "every service that runs store needs a document of its own")
		res = c.op(t, "--service", "im-repo", "set", "store", `{"maxOpen":5}`)
		require.Equal(t, 1, res.code, res.String())
		assert.Contains(t, res.err, key("im-repo", "store")+" over "+config.GlobalKey(testEnv, "store")+`: field "dsn": required`)
		res = c.op(t, "--service", "im-repo", "set", "store", `{"dsn":"user:pw@tcp(db)/repo"}`)
		require.Equal(t, 0, res.code, res.String())
		res = c.op(t, "--service", "global", "set", "store", `{"maxOpen":"many"}`)
		require.Equal(t, 1, res.code, "a global document is still decoded strictly: %s", res)

		res = c.op(t, "--service", "im-repo", "set", "cache", `{}`)
		require.Equal(t, 1, res.code, res.String())
		assert.Contains(t, res.err, `unknown component "cache"`)
		res = c.op(t, "--service", "im-repo", "set", "cache", `{"addr":"x"}`, "--allow-unknown")
		require.Equal(t, 0, res.code, res.String())
		res = c.op(t, "--service", "im-repo", "set", "cache", `[1]`, "--allow-unknown")
		require.Equal(t, 1, res.code, "even unknown, a document is a JSON object: %s", res)

		// im-repo's own path is all that makes the global output=file valid
		// for it: deleting it is refused.
		res = c.op(t, "--service", "im-repo", "set", "clog", `{"file":{"path":"/var/log/repo.log"}}`)
		require.Equal(t, 0, res.code, res.String())
		_, err := c.root.Put(ctx(t, 5*time.Second), config.GlobalKey(testEnv, "clog"), `{"output":"file"}`)
		require.NoError(t, err)
		res = c.op(t, "--service", "im-repo", "delete", "clog")
		require.Equal(t, 1, res.code, res.String())
		assert.Contains(t, res.err, `field "file.path": required when output is file`)
		assert.True(t, c.snapshot(t, key("im-repo", "clog"))[key("im-repo", "clog")].exists)
		_, err = c.root.Delete(ctx(t, 5*time.Second), config.GlobalKey(testEnv, "clog"))
		require.NoError(t, err)
		res = c.op(t, "--service", "im-repo", "delete", "clog")
		require.Equal(t, 0, res.code, res.String())
		res = c.op(t, "--service", "im-repo", "delete", "clog")
		require.Equal(t, 1, res.code, res.String())
		assert.Contains(t, res.err, "no document at "+key("im-repo", "clog"))
	})

	t.Run("watch streams changes until interrupted", func(t *testing.T) {
		wctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out, errOut syncBuffer
		done := make(chan int, 1)
		go func() {
			args := append(c.as(configcli.OperatorUser), "--env", testEnv, "--service", "im-repo", "watch")
			done <- configcli.CLI{Components: components, Out: &out, Err: &errOut}.Run(wctx, args)
		}()
		eventually(t, 20*time.Second, func() bool { return strings.Contains(errOut.String(), "watching /config/test/im-repo/") },
			"watch started: %s", errOut.String())
		res := c.op(t, "--service", "im-repo", "set", "db", `{"poolSize":7,"password":"pw-watch"}`, "--output", "json")
		rev := revisionOf(t, res)
		res = c.op(t, "--service", "im-repo", "delete", "admin")
		require.Equal(t, 0, res.code, res.String())
		eventually(t, 20*time.Second, func() bool { return strings.Contains(out.String(), "DELETE") }, "events streamed: %s", out.String())
		cancel()
		select {
		case code := <-done:
			assert.Equal(t, 0, code, "an interrupted watch ends cleanly")
		case <-time.After(10 * time.Second):
			t.Fatal("watch did not stop")
		}
		s := out.String()
		assert.Regexp(t, `rev `+itoa(rev)+`  \d{4}-\d\d-\d\dT\S+  PUT    `+key("im-repo", "db"), s)
		assert.Contains(t, s, "poolSize: 3 → 7")
		assert.Contains(t, s, "+ password: \"******\"")
		assert.Contains(t, s, "DELETE "+key("im-repo", "admin"))
		assert.NotContains(t, s, "pw-watch")
	})

	t.Run("audit lists every write with its revision and user", func(t *testing.T) {
		res := c.op(t, "audit", "--output", "json", "--limit", "0")
		require.Equal(t, 0, res.code, res.String())
		recs := res.decode(t)["records"].([]any)
		ops := make([]string, len(recs))
		for i, r := range recs {
			rec := r.(map[string]any)
			ops[i] = rec["op"].(string)
			assert.Equal(t, configcli.OperatorUser, rec["user"])
			assert.NotEmpty(t, rec["osUser"])
			assert.Greater(t, rec["revision"].(float64), rec["baseRevision"].(float64))
		}
		assert.Equal(t, []string{"init", "set", "init", "set", "set", "set", "set", "set", "delete", "set", "delete"}, ops)
		res = c.op(t, "audit", "--limit", "1")
		require.Equal(t, 0, res.code, res.String())
		assert.Regexp(t, `^\d{4}-\S+  rev \d+  config-operator  delete  -`+key("im-repo", "admin")+`\n$`, res.out)
	})

	t.Run("exit codes and messages", func(t *testing.T) {
		closed := closedPort(t)
		tests := []struct {
			name string
			args []string
			code int
			want string
		}{
			{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
			{"unknown flag", []string{"get", "--nope"}, 2, "unknown flag: --nope"},
			{"no env", append(c.as(configcli.OperatorUser), "--service", "im-repo", "get", "db"), 2, "no environment: pass --env or set IMINFRA_ENV"},
			{"unknown env", []string{"--env", "moon", "validate", "--path", "."}, 2, `unknown env "moon"`},
			{"bad output", []string{"--output", "yaml", "audit"}, 2, `--output "yaml": want text or json`},
			{"no endpoints", []string{"audit"}, 2, "no etcd endpoints: pass --endpoints or set IMINFRA_ETCD_ENDPOINTS"},
			{"bad endpoint", []string{"--endpoints", "ftp://x:1", "audit"}, 2, "--endpoints"},
			{"unreachable", []string{"--endpoints", closed, "--timeout", "300ms", "audit"}, 3, "did not answer within 300ms"},
			{"wrong password", []string{"--endpoints", c.endpoints[0], "--user", configcli.OperatorUser, "--password", "wrong-pw-123", "audit"}, 3,
				`etcd rejected the credentials of user "config-operator"`},
			{"no user", []string{"--endpoints", c.endpoints[0], "audit"}, 3, "etcd has authentication enabled: pass --user and --password"},
			{"validation", append(c.as(configcli.OperatorUser), "--env", testEnv, "--service", "im-repo", "set", "db", `{"poolSize":-1}`), 1, "nothing was written"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				res := cli(t, "", tc.args...)
				assert.Equal(t, tc.code, res.code, res.String())
				assert.Contains(t, res.err, tc.want)
				assert.NotContains(t, res.err, "goroutine", "no stack traces")
				assert.NotContains(t, res.err, "wrong-pw-123", "no password in a message")
			})
		}
	})

	t.Run("global flags come from the environment", func(t *testing.T) {
		t.Setenv(coord.EnvEndpoints, strings.Join(c.endpoints, ","))
		t.Setenv(coord.EnvUsername, configcli.OperatorUser)
		t.Setenv(coord.EnvPassword, c.passwords[configcli.OperatorUser])
		t.Setenv("IMINFRA_ENV", testEnv)
		t.Setenv("IMINFRA_SERVICE", "im-repo")
		t.Setenv(configcli.EnvOutput, "json")
		res := cli(t, "", "get", "db")
		require.Equal(t, 0, res.code, res.String())
		assert.Equal(t, key("im-repo", "db"), res.decode(t)["key"])
		res = cli(t, "", "--service", "im-logic", "--output", "text", "get", "db")
		assert.Equal(t, 1, res.code, "a flag wins over its variable: %s", res)
		assert.Contains(t, res.err, "no document at "+key("im-logic", "db"))
	})
}

// closedPort is an address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "http://" + addr
}
