package coord

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

// NewResolverBuilder returns a gRPC resolver.Builder for ResolverScheme that
// reads the Registry's key layout. Pass it to grpc.NewClient with
// grpc.WithResolvers (or resolver.Register it once) and choose a balancer:
//
//	conn, err := grpc.NewClient("etcd:///im-repo",
//		grpc.WithResolvers(coord.NewResolverBuilder(cli)),
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
//		grpc.WithTransportCredentials(creds))
//
// Each resolver follows etcd with the same watch as Discovery.Watch, so it
// survives etcd restarts and compactions; while etcd is unreachable it keeps
// the last known instances instead of emptying the connection. Build does no
// I/O, so dialing never blocks on etcd. It logs through cli's logger
// (clientv3.Config.Logger).
//
// etcd's own naming/resolver would also read these keys' values but not
// this layout, and it stops following for good after a watch error; hence
// this one.
func NewResolverBuilder(cli *clientv3.Client) resolver.Builder {
	return &regResolverBuilder{cli: cli}
}

type regResolverBuilder struct {
	cli *clientv3.Client
}

// Scheme implements resolver.Builder.
func (b *regResolverBuilder) Scheme() string { return ResolverScheme }

// Build implements resolver.Builder. The goroutine it starts is owned by the
// returned resolver and ends in Close.
func (b *regResolverBuilder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	name := target.Endpoint()
	if err := regValidateName(name); err != nil {
		return nil, err
	}
	log := b.cli.GetLogger()
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("resolver", ResolverScheme+":///"+name))
	w := regNewWatcher(b.cli, log, name)
	reported := false
	w.onLoadError = func(err error) {
		// Only before the first state: afterwards gRPC keeps dialing the
		// last known instances, which is better than failing calls.
		if !reported {
			cc.ReportError(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &regResolver{cancel: cancel}
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
			_ = cc.UpdateState(resolver.State{Endpoints: regEndpoints(w.known)})
			return true
		})
	}()
	return r, nil
}

// regResolver is the resolver.Resolver for one gRPC channel.
type regResolver struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ResolveNow is a no-op: the watch already pushes every change.
func (r *regResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops the watch and waits for its goroutine.
func (r *regResolver) Close() {
	r.cancel()
	r.wg.Wait()
}

// regInstanceAttr carries a ServiceInstance in endpoint attributes; Equal
// makes it comparable although its metadata map is not.
type regInstanceAttr struct{ inst ServiceInstance }

func (a regInstanceAttr) Equal(o any) bool {
	b, ok := o.(regInstanceAttr)
	return ok && regSameInstance(a.inst, b.inst)
}

type regInstanceAttrKey struct{}

func regEndpoints(set map[string]ServiceInstance) []resolver.Endpoint {
	eps := make([]resolver.Endpoint, 0, len(set))
	for _, inst := range regSorted(set) {
		eps = append(eps, resolver.Endpoint{
			Addresses:  []resolver.Address{{Addr: inst.Addr}},
			Attributes: attributes.New(regInstanceAttrKey{}, regInstanceAttr{inst: inst}),
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
	a, ok := ep.Attributes.Value(regInstanceAttrKey{}).(regInstanceAttr)
	return a.inst, ok
}
