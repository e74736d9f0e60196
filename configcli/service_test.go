package configcli_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/configcli"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord"
)

// countingSource counts Loads: more than one means the Value reloaded
// instead of watching.
type countingSource struct {
	config.Source
	loads atomic.Int64
}

func (s *countingSource) Load(ctx context.Context, keys ...string) ([]config.Document, int64, error) {
	s.loads.Add(1)
	return s.Source.Load(ctx, keys...)
}

// serviceValue is a running service's view of component db: a
// config.Value on coord's etcd Source, connected as the service's own etcd
// user.
func (c *cluster) serviceValue(t *testing.T, service string) (*config.Value[dbConfig], *countingSource) {
	t.Helper()
	cfg := coord.Defaults()
	cfg.Endpoints = c.endpoints
	cfg.Username = configcli.ServiceUser(testEnv, service)
	cfg.Password = config.Secret(c.passwords[cfg.Username])
	client, err := coord.NewClient(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	src := &countingSource{Source: coord.NewSource(client)}
	id := lifecycle.Identity{Service: service, Env: testEnv, Instance: service + "-1", Version: "test"}
	v := config.NewValue[dbConfig]("db", src, id, config.WithRetry(20*time.Millisecond, 200*time.Millisecond))
	require.NoError(t, v.Start(ctx(t, 20*time.Second)))
	t.Cleanup(func() { _ = v.Stop(context.Background()) })
	require.False(t, v.Degraded(), "the service reads its config under its role")
	return v, src
}

func revisionOf(t *testing.T, res result) int64 {
	t.Helper()
	require.Equal(t, 0, res.code, res.String())
	return int64(res.decode(t)["revision"].(float64))
}

func TestRollbackIsAppliedByARunningService(t *testing.T) {
	c := startCluster(t, "im-repo")
	v, _ := c.serviceValue(t, "im-repo")
	assert.Equal(t, 10, v.Get().PoolSize)

	rev1 := revisionOf(t, c.op(t, "--service", "im-repo", "set", "db", `{"poolSize":11}`, "--output", "json"))
	eventually(t, 10*time.Second, func() bool { return v.Get().PoolSize == 11 }, "first write applied")
	rev2 := revisionOf(t, c.op(t, "--service", "im-repo", "set", "db", `{"poolSize":22,"addr":"db-2:3306"}`, "--output", "json"))
	eventually(t, 10*time.Second, func() bool { return v.Get().PoolSize == 22 }, "second write applied")

	res := c.op(t, "--service", "im-repo", "history", "db")
	require.Equal(t, 0, res.code, res.String())
	lines := strings.Split(strings.TrimSpace(res.out), "\n")
	require.GreaterOrEqual(t, len(lines), 4, res.String())
	assert.Regexp(t, `^rev \d+  PUT +\S+  config-operator  set$`, lines[0])
	assert.Contains(t, res.out, "poolSize: 11 → 22")
	assert.Contains(t, res.out, `+ addr: "db-2:3306"`)

	rolled := revisionOf(t, c.op(t, "--key", key("im-repo", "db"), "rollback", "--to-revision", itoa(rev1), "--output", "json"))
	eventually(t, 10*time.Second, func() bool { return v.Get().PoolSize == 11 && v.Get().Addr == "127.0.0.1:3306" },
		"the running service applies the rollback (has %+v)", v.Get())
	assert.Equal(t, `{"poolSize":11}`, c.snapshot(t, key("im-repo", "db"))[key("im-repo", "db")].value)
	assert.Greater(t, rolled, rev2)

	res = c.op(t, "audit", "--key", key("im-repo", "db"), "--output", "json")
	require.Equal(t, 0, res.code, res.String())
	recs := res.decode(t)["records"].([]any)
	require.Len(t, recs, 3)
	last := recs[2].(map[string]any)
	assert.Equal(t, "rollback", last["op"])
	assert.EqualValues(t, rolled, last["revision"], "the record is in the rollback's own revision")
	assert.EqualValues(t, rev1, last["detail"].(map[string]any)["toRevision"])

	// Back to before the key existed: a rollback deletes it, checked, and
	// the service falls back to the layers below.
	res = c.op(t, "--service", "im-repo", "rollback", "db", "--to-revision", itoa(rev1-1))
	require.Equal(t, 0, res.code, res.String())
	assert.Contains(t, res.err, "did not exist at revision")
	assert.Contains(t, res.out, "deleted "+key("im-repo", "db"))
	eventually(t, 10*time.Second, func() bool { return v.Get().PoolSize == 10 }, "back to defaults")

	// history reaches past the delete through its audit record, and a
	// rollback brings the key back.
	res = c.op(t, "--service", "im-repo", "history", "db", "--output", "json")
	require.Equal(t, 0, res.code, res.String())
	entries := res.decode(t)["entries"].([]any)
	require.Len(t, entries, 4, res.String())
	assert.Equal(t, "DELETE", entries[0].(map[string]any)["type"])
	assert.Equal(t, "rollback", entries[0].(map[string]any)["op"])
	res = c.op(t, "--service", "im-repo", "rollback", "db", "--to-revision", itoa(rev2))
	require.Equal(t, 0, res.code, res.String())
	eventually(t, 10*time.Second, func() bool { return v.Get().PoolSize == 22 }, "restored after the delete")

	// A compacted revision cannot be rolled back to.
	cur := c.snapshot(t, key("im-repo", "db"))[key("im-repo", "db")].modRev
	_, err := c.root.Compact(ctx(t, 5*time.Second), cur)
	require.NoError(t, err)
	res = c.op(t, "--service", "im-repo", "rollback", "db", "--to-revision", itoa(rev1))
	require.Equal(t, 1, res.code, res.String())
	assert.Contains(t, res.err, "has been compacted away")
	res = c.op(t, "--service", "im-repo", "history", "db")
	require.Equal(t, 0, res.code, res.String())
	assert.Contains(t, res.out, "compacted")
}

func TestServiceUserReadsOnlyItsOwnConfig(t *testing.T) {
	c := startCluster(t, "im-repo", "im-logic")
	v, src := c.serviceValue(t, "im-repo")
	res := c.op(t, "--service", "im-logic", "set", "db", `{"poolSize":7,"password":"logic-pw"}`)
	require.Equal(t, 0, res.code, res.String())

	repoUser := configcli.ServiceUser(testEnv, "im-repo")
	repo := c.client(t, repoUser)
	bg := ctx(t, 30*time.Second)
	_, err := repo.Get(bg, key("im-logic", "db"))
	assert.True(t, errors.Is(err, rpctypes.ErrPermissionDenied), "another service's config: %v", err)
	_, err = repo.Get(bg, "/config/"+testEnv+"/", clientv3.WithPrefix())
	assert.True(t, errors.Is(err, rpctypes.ErrPermissionDenied), "the whole env: %v", err)
	_, err = repo.Put(bg, key("im-repo", "db"), `{}`)
	assert.True(t, errors.Is(err, rpctypes.ErrPermissionDenied), "a service does not write config: %v", err)
	_, err = repo.Get(bg, c.auditPrefix(), clientv3.WithPrefix())
	assert.True(t, errors.Is(err, rpctypes.ErrPermissionDenied), "nor read the audit: %v", err)

	res = cli(t, "", append(c.as(repoUser), "--env", testEnv, "--service", "im-logic", "get", "db")...)
	require.Equal(t, 3, res.code, res.String())
	assert.Contains(t, res.err, `permission denied for etcd user "test.im-repo"`)
	assert.NotContains(t, res.out+res.err, "logic-pw")

	// The service still receives its own updates, of both its layers.
	res = c.op(t, "--service", "im-repo", "set", "db", `{"poolSize":33}`)
	require.Equal(t, 0, res.code, res.String())
	eventually(t, 10*time.Second, func() bool { return v.Get().PoolSize == 33 }, "own layer applied")
	res = c.op(t, "--service", "global", "set", "db", `{"tags":{"zone":"a"}}`)
	require.Equal(t, 0, res.code, res.String())
	eventually(t, 10*time.Second, func() bool { return v.Get().Tags["zone"] == "a" && v.Get().PoolSize == 33 }, "global layer applied")
	t.Logf("the Value loaded %d times for 2 updates (1 means the watch alone delivered them)", src.loads.Load())

	// What else the role grants: registry, locks, elections, its IDs.
	lease, err := repo.Grant(bg, 5)
	require.NoError(t, err)
	for _, k := range []string{"/services/im-repo/i-1", "/locks/orders/694d", "/elections/leader/694d", "/ids/im-repo/1"} {
		_, err := repo.Put(bg, k, "x", clientv3.WithLease(lease.ID))
		assert.NoError(t, err, k)
	}
	_, err = repo.Get(bg, "/services/", clientv3.WithPrefix())
	assert.NoError(t, err, "discovery reads every service")
	for _, k := range []string{"/services/im-logic/i-1", "/ids/im-logic/1"} {
		_, err := repo.Put(bg, k, "x")
		assert.True(t, errors.Is(err, rpctypes.ErrPermissionDenied), "%s: %v", k, err)
	}
	_, err = repo.Revoke(bg, lease.ID)
	assert.NoError(t, err, "revoking its lease needs write on every key under it")

	// auth init again, as root, adds a service and leaves the rest alone.
	res = cli(t, "", append(c.as("root"), "--env", testEnv, "auth", "init", "--services", "im-repo,im-gw", "--output", "json")...)
	require.Equal(t, 0, res.code, res.String())
	created := res.decode(t)["created"].([]any)
	require.Len(t, created, 1, res.String())
	assert.Equal(t, "test.im-gw", created[0].(map[string]any)["user"])
	res = cli(t, "", append(c.as(repoUser), "--env", testEnv, "--service", "im-repo", "get", "db")...)
	assert.Equal(t, 0, res.code, "im-repo's password still works: %s", res)
	res = cli(t, "", append(c.as(configcli.OperatorUser), "--env", testEnv, "auth", "init", "--services", "im-x")...)
	assert.Equal(t, 3, res.code, "only root manages users: %s", res)
	assert.Contains(t, res.err, "permission denied")
}

func (c *cluster) auditPrefix() string { return configcli.DefaultAuditPrefix }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
