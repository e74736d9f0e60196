package coord

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/gochat/im-infra/devstack"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startEtcd runs an embedded etcd for one test and stops it at cleanup.
func startEtcd(t testing.TB) *devstack.Etcd {
	t.Helper()
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	require.NoError(t, err)
	t.Cleanup(e.Close)
	return e
}

// rawClient is a plain clientv3 client on e, closed at cleanup.
func rawClient(t testing.TB, e *devstack.Etcd) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   e.Endpoints(),
		DialTimeout: 2 * time.Second,
		Logger:      nopLogger(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = cli.Get(ctx, "probe")
	require.NoError(t, err)
	return cli
}

// reportLatency adds the p50 and p99 of samples, in milliseconds, to b's
// results.
func reportLatency(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	at := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}
