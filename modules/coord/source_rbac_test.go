package coord

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// countingSource counts Loads: each one after the first is a reload.
type countingSource struct {
	config.Source
	loads atomic.Int64
}

func (s *countingSource) Load(ctx context.Context, keys ...string) ([]config.Document, int64, error) {
	s.loads.Add(1)
	return s.Source.Load(ctx, keys...)
}

// enableRBAC turns etcd auth on with a root user and a user "svc" (password
// pw) whose only role grants read/write on prefixes.
func enableRBAC(t *testing.T, admin *clientv3.Client, pw string, prefixes ...string) {
	t.Helper()
	ctx := coordtest.Ctx(t, 10*time.Second)
	_, err := admin.UserAdd(ctx, "root", "root-pw")
	require.NoError(t, err)
	_, err = admin.UserGrantRole(ctx, "root", "root")
	require.NoError(t, err)
	_, err = admin.UserAdd(ctx, "svc", pw)
	require.NoError(t, err)
	_, err = admin.RoleAdd(ctx, "svc-config")
	require.NoError(t, err)
	for _, p := range prefixes {
		_, err = admin.RoleGrantPermission(ctx, "svc-config", p, clientv3.GetPrefixRangeEnd(p), clientv3.PermissionType(clientv3.PermReadWrite))
		require.NoError(t, err)
	}
	_, err = admin.UserGrantRole(ctx, "svc", "svc-config")
	require.NoError(t, err)
	_, err = admin.AuthEnable(ctx)
	require.NoError(t, err)
}

// Issue 6 item 3: under RBAC that grants a service only
// /config/{env}/global/ and /config/{env}/{svc}/, the Source watches exactly
// the keys a Value needs: updates arrive through the watch, and nothing
// reloads in a loop.
func TestSourceWatchesOnlyItsKeysUnderRBAC(t *testing.T) {
	const pw = "svc-pw"
	e := coordtest.StartEtcd(t)
	enableRBAC(t, coordtest.RawClient(t, e.Endpoints()...), pw, "/config/dev/global/", "/config/dev/svc/")
	root, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), Username: "root", Password: "root-pw", DialTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = root.Close() })
	ctx := coordtest.Ctx(t, 30*time.Second)
	// A document of another service sorts between the two keys.
	_, err = root.Put(ctx, "/config/dev/other/comp", `{"n":99}`)
	require.NoError(t, err)

	cfg := cliConfig(e)
	cfg.Username, cfg.Password = "svc", pw
	c := cliNew(t, cfg)
	require.NoError(t, c.Start(ctx))
	src := &countingSource{Source: NewSource(c)}
	v := config.NewValue[cfgSchema]("comp", src, cfgIdentity)
	require.NoError(t, v.Start(ctx))
	t.Cleanup(func() { _ = v.Stop(context.Background()) })

	for i, key := range []string{config.GlobalKey("dev", "comp"), config.Key("dev", "svc", "comp"), config.GlobalKey("dev", "comp")} {
		want := 10 + i
		_, err := root.Put(ctx, key, fmt.Sprintf(`{"n":%d}`, want))
		require.NoError(t, err)
		if key == config.GlobalKey("dev", "comp") && i == 2 {
			want = 11 // the service layer wins over the global one
		}
		require.Eventually(t, func() bool { return v.Get().N == want }, 5*time.Second, 5*time.Millisecond, "update %d", i)
	}
	_, err = root.Put(ctx, "/config/dev/other/comp", `{"n":98}`)
	require.NoError(t, err)
	time.Sleep(time.Second)
	assert.Equal(t, 11, v.Get().N, "another service's document never reaches this one")
	assert.EqualValues(t, 1, src.loads.Load(), "one load at start and no reloads: updates came through the watch")
	assert.False(t, v.Degraded())
}
