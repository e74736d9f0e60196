package discovery

import (
	"context"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
)

// ResolverScheme is the gRPC target scheme the resolver answers:
// "etcd:///im-repo" resolves to the live instances of service im-repo.
const ResolverScheme = "etcd"

// ResolverBuilder is the gRPC resolver.Builder for ResolverScheme. It reads
// the Registry's key layout. Pass it to grpc.NewClient with
// grpc.WithResolvers and choose a balancer:
//
//	conn, err := grpc.NewClient("etcd:///im-repo",
//		grpc.WithResolvers(builder),
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
//		grpc.WithTransportCredentials(creds))
//
// It is not registered globally (resolver.Register) because it needs a
// client, and two apps in one process each have their own.
//
// Each resolver follows etcd with the same watch as Discovery.Watch, so it
// survives etcd restarts and compactions; while etcd is unreachable it keeps
// the last known instances instead of emptying the connection. Build does no
// I/O, so dialing never blocks on etcd.
//
// etcd's own naming/resolver would also read these keys' values but not
// this layout, and it stops following for good after a watch error; hence
// this one.
type ResolverBuilder struct {
	cli *clientv3.Client
	log *zap.Logger
}

var _ resolver.Builder = (*ResolverBuilder)(nil)

// NewResolverBuilder returns the resolver.Builder for ResolverScheme on cli.
func NewResolverBuilder(cli *clientv3.Client, opts ...Option) *ResolverBuilder {
	return &ResolverBuilder{cli: cli, log: buildOptions(opts).log}
}

// Scheme implements resolver.Builder.
func (b *ResolverBuilder) Scheme() string { return ResolverScheme }

// Build implements resolver.Builder. The goroutine it starts is owned by the
// returned resolver and ends in Close.
func (b *ResolverBuilder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	name := target.Endpoint()
	if err := validateName(name); err != nil {
		return nil, err
	}
	log := b.log.With(zap.String("resolver", ResolverScheme+":///"+name))
	w := newWatcher(b.cli, log, name)
	reported := false
	w.onLoadError = func(err error) {
		// Only before the first state: afterwards gRPC keeps dialing the
		// last known instances, which is better than failing calls.
		if !reported {
			cc.ReportError(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &etcdResolver{cancel: cancel}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		w.run(ctx, 0, func(events []DiscoveryEvent, loaded bool) bool {
			if len(events) == 0 && !loaded {
				return true
			}
			reported = true
			// An error here means the balancer rejected the state (e.g. no
			// instances at all); gRPC then asks ResolveNow and the next change
			// produces a new state anyway.
			_ = cc.UpdateState(resolver.State{Endpoints: endpointsOf(w.known)})
			return true
		})
	}()
	return r, nil
}

// etcdResolver is the resolver.Resolver for one gRPC channel.
type etcdResolver struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ResolveNow is a no-op: the watch already pushes every change.
func (r *etcdResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops the watch and waits for its goroutine.
func (r *etcdResolver) Close() {
	r.cancel()
	r.wg.Wait()
}

// instanceAttr carries a ServiceInstance in endpoint attributes; Equal
// makes it comparable although its metadata map is not.
type instanceAttr struct{ inst ServiceInstance }

func (a instanceAttr) Equal(o any) bool {
	b, ok := o.(instanceAttr)
	return ok && sameInstance(a.inst, b.inst)
}

type instanceAttrKey struct{}

func endpointsOf(set map[string]ServiceInstance) []resolver.Endpoint {
	eps := make([]resolver.Endpoint, 0, len(set))
	for _, inst := range sortedInstances(set) {
		eps = append(eps, resolver.Endpoint{
			Addresses:  []resolver.Address{{Addr: inst.Addr}},
			Attributes: attributes.New(instanceAttrKey{}, instanceAttr{inst: inst}),
		})
	}
	return eps
}

// InstanceFromEndpoint returns the ServiceInstance behind a resolved
// endpoint, for custom balancers that route on Metadata (zone, weight).
func InstanceFromEndpoint(ep resolver.Endpoint) (ServiceInstance, bool) {
	if ep.Attributes == nil {
		return ServiceInstance{}, false
	}
	a, ok := ep.Attributes.Value(instanceAttrKey{}).(instanceAttr)
	return a.inst, ok
}
