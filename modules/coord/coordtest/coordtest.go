package coordtest

import (
	"context"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/devstack"
)

// StartEtcd runs a single-member embedded etcd for t and closes it at
// cleanup.
func StartEtcd(t testing.TB) *devstack.Etcd {
	t.Helper()
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	if err != nil {
		t.Fatalf("coordtest: start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// StartCluster runs a 3-member embedded etcd cluster for t and closes it at
// cleanup.
func StartCluster(t testing.TB) *devstack.EtcdCluster {
	t.Helper()
	c, err := devstack.StartEtcdCluster(devstack.EtcdClusterOptions{Size: 3})
	if err != nil {
		t.Fatalf("coordtest: start etcd cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// RawClient is a plain clientv3 client on endpoints, closed at cleanup. It
// returns once the client has read from etcd, so a test never measures
// the first dial.
func RawClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("coordtest: client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "coordtest-probe"); err != nil {
		t.Fatalf("coordtest: etcd at %v does not answer: %v", endpoints, err)
	}
	return cli
}

// Ctx is a context cancelled after d or at cleanup, whichever is first.
func Ctx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Path is a private way from one client to every member of a cluster: one
// proxy per member. Partition it (Blackhole or Close) to cut that client
// off while the cluster and every other client carry on; Heal reconnects.
type Path struct {
	proxies []*devstack.Proxy
}

// NewPath builds a Path to the members behind directEndpoints (see
// devstack.EtcdCluster.DirectEndpoints), closed at cleanup.
func NewPath(t testing.TB, directEndpoints ...string) *Path {
	t.Helper()
	p := &Path{}
	for _, ep := range directEndpoints {
		host := ep[len("http://"):]
		px, err := devstack.NewProxy(host)
		if err != nil {
			t.Fatalf("coordtest: proxy to %s: %v", ep, err)
		}
		t.Cleanup(px.Close)
		p.proxies = append(p.proxies, px)
	}
	return p
}

// Endpoints are the client URLs leading through the Path.
func (p *Path) Endpoints() []string {
	out := make([]string, len(p.proxies))
	for i, px := range p.proxies {
		out[i] = "http://" + px.Addr()
	}
	return out
}

// Blackhole makes the network lose every packet on the Path: connections
// stall and new ones are never answered.
func (p *Path) Blackhole() {
	for _, px := range p.proxies {
		px.Blackhole()
	}
}

// Refuse drops every connection on the Path and refuses new ones.
func (p *Path) Refuse() {
	for _, px := range p.proxies {
		px.Close()
	}
}

// Heal ends a Blackhole or Refuse.
func (p *Path) Heal(t testing.TB) {
	t.Helper()
	for _, px := range p.proxies {
		if err := px.Open(); err != nil {
			t.Fatalf("coordtest: heal: %v", err)
		}
	}
}

// ReportLatency adds the p50 and p99 of samples, in milliseconds, to b's
// results as p50-ms and p99-ms.
func ReportLatency(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	at := func(q float64) float64 {
		return float64(s[int(q*float64(len(s)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}
