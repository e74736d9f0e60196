package coord

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEmbeddedEtcdRestart(t *testing.T) {
	e := startEtcd(t)
	cli := rawClient(t, e)
	ctx := context.Background()
	_, err := cli.Put(ctx, "k", "v1")
	require.NoError(t, err)
	e.Stop()
	require.NoError(t, e.Restart())
	resp, err := cli.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v1", string(resp.Kvs[0].Value))
}
