package configcli

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/devstack"
)

// A write commits only if nothing it was checked against changed: a put
// anywhere in the env, or a delete of a document the check read, makes it
// fail (and apply check again); a write elsewhere does not.
func TestCommitGuards(t *testing.T) {
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	require.NoError(t, err)
	defer e.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := &runner{out: io.Discard, err: io.Discard, g: globals{timeout: 5 * time.Second, auditPrefix: DefaultAuditPrefix, maxTxnOps: DefaultMaxTxnOps}}
	for k, v := range map[string]string{"/config/test/a/db": `{}`, "/config/test/global/db": `{}`} {
		_, err := cli.Put(ctx, k, v)
		require.NoError(t, err)
	}
	p := plan{op: "set", env: "test"}
	changes := []change{{Key: "/config/test/a/db", Data: []byte(`{"x":1}`)}}
	used := []string{"/config/test/global/db"}

	tests := []struct {
		name      string
		meanwhile func()
		conflict  bool
	}{
		{"a put elsewhere in the env", func() { _, _ = cli.Put(ctx, "/config/test/b/clog", `{}`) }, true},
		{"a delete of a document the check read", func() { _, _ = cli.Delete(ctx, "/config/test/global/db") }, true},
		{"a put in another env", func() { _, _ = cli.Put(ctx, "/config/prod/a/db", `{}`) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, rev, err := r.readEnv(ctx, cli, "test")
			require.NoError(t, err)
			tc.meanwhile()
			wrote, auditKey, err := r.commit(ctx, cli, p, before, rev, changes, used)
			if tc.conflict {
				assert.ErrorIs(t, err, errConflict)
				n, _ := cli.Get(ctx, DefaultAuditPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
				assert.Zero(t, n.Count, "no audit record either")
				return
			}
			require.NoError(t, err)
			got, err := cli.Get(ctx, "/config/test/a/db")
			require.NoError(t, err)
			assert.Equal(t, `{"x":1}`, string(got.Kvs[0].Value))
			assert.Equal(t, wrote, got.Kvs[0].ModRevision)
			audit, err := cli.Get(ctx, auditKey)
			require.NoError(t, err)
			assert.Equal(t, wrote, audit.Kvs[0].ModRevision, "the audit record is in the same revision")
		})
	}
}
