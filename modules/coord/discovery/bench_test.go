package discovery

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// The design document's target for discovery is < 5 ms. Each benchmark
// reports p50/p99 in milliseconds for coord and for a raw clientv3
// baseline doing the same etcd work, as sub-benchmarks on one embedded etcd
// in one run, so the cost of this package is the difference between the
// two.

const benchInstances = 10

// BenchmarkDiscover measures Discover of a 10-instance service (a
// linearizable prefix Get plus decoding and sorting) beside the same prefix
// Get on clientv3.
func BenchmarkDiscover(b *testing.B) {
	e := coordtest.StartEtcd(b)
	cli := coordtest.RawClient(b, e.Endpoints()...)
	reg := regTestRegistry(b, cli, testOpts{TTL: time.Minute})
	ctx := coordtest.Ctx(b, 10*time.Minute)
	for i := range benchInstances {
		require.NoError(b, reg.Register(ctx, ServiceInstance{
			ID: fmt.Sprintf("i-%02d", i), Name: "bench-disc", Addr: fmt.Sprintf("10.0.0.%d:9000", i+1),
			Metadata: map[string]string{"zone": "z1", "version": "1.0.0"},
		}))
	}

	b.Run("coord", func(b *testing.B) {
		d := NewDiscovery(cli)
		samples := make([]time.Duration, 0, 1<<16)
		b.ReportAllocs()
		for b.Loop() {
			start := time.Now()
			got, err := d.Discover(ctx, "bench-disc")
			samples = append(samples, time.Since(start))
			if err != nil || len(got) != benchInstances {
				b.Fatalf("discover: %d instances, %v", len(got), err)
			}
		}
		b.StopTimer()
		coordtest.ReportLatency(b, samples)
	})

	b.Run("raw-get", func(b *testing.B) {
		prefix := ServiceKeyPrefix + "bench-disc/"
		samples := make([]time.Duration, 0, 1<<16)
		b.ReportAllocs()
		for b.Loop() {
			start := time.Now()
			resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
			samples = append(samples, time.Since(start))
			if err != nil || len(resp.Kvs) != benchInstances {
				b.Fatalf("get: %v", err)
			}
		}
		b.StopTimer()
		coordtest.ReportLatency(b, samples)
	})
}

// BenchmarkRegistryRegisterToWatch measures from the start of a
// registration to the event on a watch: for coord, Register (lease grant +
// put) until Discovery.Watch sends InstanceAdded; for raw, Grant + Put with
// the lease on clientv3 until a raw prefix Watch delivers the put. The
// deregistration after each round is not timed.
func BenchmarkRegistryRegisterToWatch(b *testing.B) {
	e := coordtest.StartEtcd(b)
	cli := coordtest.RawClient(b, e.Endpoints()...)

	b.Run("coord", func(b *testing.B) {
		reg := regTestRegistry(b, cli, testOpts{TTL: time.Minute})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch, err := NewDiscovery(cli).Watch(ctx, "bench-watch")
		require.NoError(b, err)
		inst := ServiceInstance{ID: "w", Name: "bench-watch", Addr: "10.0.0.1:9000"}
		samples := make([]time.Duration, 0, 1<<14)
		b.ReportAllocs()
		for b.Loop() {
			start := time.Now()
			if err := reg.Register(ctx, inst); err != nil {
				b.Fatal(err)
			}
			if ev := <-ch; ev.Type != InstanceAdded {
				b.Fatalf("got %v, want added", ev.Type)
			}
			samples = append(samples, time.Since(start))
			b.StopTimer()
			if err := reg.Deregister(ctx, inst.ID); err != nil {
				b.Fatal(err)
			}
			if ev := <-ch; ev.Type != InstanceRemoved {
				b.Fatalf("got %v, want removed", ev.Type)
			}
			b.StartTimer()
		}
		b.StopTimer()
		coordtest.ReportLatency(b, samples)
	})

	b.Run("raw", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		prefix := ServiceKeyPrefix + "bench-watch-raw/"
		wch := cli.Watch(ctx, prefix, clientv3.WithPrefix())
		value, err := encode(ServiceInstance{ID: "w", Name: "bench-watch-raw", Addr: "10.0.0.1:9000"})
		require.NoError(b, err)
		samples := make([]time.Duration, 0, 1<<14)
		b.ReportAllocs()
		for b.Loop() {
			start := time.Now()
			g, err := cli.Grant(ctx, 60)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := cli.Put(ctx, prefix+"w", value, clientv3.WithLease(g.ID)); err != nil {
				b.Fatal(err)
			}
			<-wch
			samples = append(samples, time.Since(start))
			b.StopTimer()
			if _, err := cli.Revoke(ctx, g.ID); err != nil {
				b.Fatal(err)
			}
			<-wch
			b.StartTimer()
		}
		b.StopTimer()
		coordtest.ReportLatency(b, samples)
	})
}
