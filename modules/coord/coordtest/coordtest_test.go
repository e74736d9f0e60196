package coordtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/gochat/im-infra/modules/coord/coordtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A Path cuts one client off (refused or blackholed) while a client on
// the direct endpoint keeps working, and heals.
func TestPathPartitionsOneClient(t *testing.T) {
	e := coordtest.StartEtcd(t)
	path := coordtest.NewPath(t, e.DirectEndpoint())
	cut := coordtest.RawClient(t, path.Endpoints()...)
	other := coordtest.RawClient(t, e.Endpoints()...)
	ctx := coordtest.Ctx(t, 10*time.Second)

	for _, partition := range []func(){path.Blackhole, path.Refuse} {
		partition()
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := cut.Get(short, "k")
		cancel()
		require.Error(t, err, "the client on the path is cut off")
		_, err = other.Put(ctx, "k", "v")
		require.NoError(t, err, "everyone else still reaches etcd")
		path.Heal(t)
		resp, err := cut.Get(ctx, "k")
		require.NoError(t, err, "healed")
		assert.Equal(t, "v", string(resp.Kvs[0].Value))
	}
}
