// Package discovery is service registry and discovery on etcd: a Registry
// that keeps this process's instances registered, a Discovery that finds
// and follows the instances of a service, and the gRPC resolver that
// balances calls over them ("etcd:///name").
//
// # What it holds
//
//   - ServiceInstance and ServiceKey: an instance lives at
//     /services/{name}/{id}; its value is a superset of etcd's
//     naming/endpoints JSON, so etcd's own tools read it.
//   - Registry: Register, Deregister, Close, Registered; one goroutine per
//     instance keeps it in etcd. Its settings are config component
//     "registry" (Config: ttl, retryMin, retryMax, requestTimeout, all
//     live).
//   - HealthChecker: "registry" in /readyz, degraded while an instance is
//     not in etcd.
//   - Discovery: Discover (a linearizable read) and Watch (the current set,
//     then every change, across restarts and compactions).
//   - ResolverBuilder: the gRPC resolver.Builder for scheme "etcd", passed
//     with grpc.WithResolvers (it needs a client, so it is not registered
//     globally).
//   - Module: provides *Registry, *Discovery and *ResolverBuilder on the
//     *clientv3.Client named "etcd"; coord.Module includes it.
//
// # Why it is built this way
//
// An instance that peers cannot discover gets no traffic, and nothing in
// the instance itself would notice: so the Registry never gives up on a
// registration and never loses one silently. It registers again after a
// lost lease (an etcd outage longer than the TTL, a revoked lease) and
// writes the key again, under the same lease, when someone deletes it while
// the lease lives; each loss and each recovery is a log line, and in
// between Registered is false and "registry" is degraded.
//
// A service that registers in its OnStart must start with etcd down, like
// the rest of the platform: Register returns as soon as the first attempt
// failed (at once when no connection can be made: the attempts do not wait
// for one) and keeps trying in the background.
//
// Peers must stop routing to an instance before it stops serving: the fx
// module leaves the registry when the app's stop begins
// (lifecycle.Readiness.OnDrain), so during the drain delay resolvers
// already see the instance gone while it still answers in-flight calls.
//
// The resolver follows the Registry's key layout with the same watcher as
// Discovery.Watch, which etcd's naming/resolver cannot read and which stops
// following for good after one watch error. While etcd is unreachable the
// resolver keeps the last known instances rather than emptying the
// connection.
//
// # How it fails
//
//   - Bad input (a service name that is not a DNS label, an ID with '/',
//     an address that is not host:port, a config TTL below MinTTL) is a
//     VALIDATION *lifecycle.InfraError naming the field, before any I/O.
//   - etcd down at Register: nil, registration in the background,
//     "registry" degraded until it lands.
//   - Lease lost: logged (WARN), re-registered with jittered backoff and no
//     attempt limit (INFO when back); Reregistrations counts recoveries.
//   - Key deleted under a live lease: logged (WARN), restored under the same
//     lease (INFO), counted the same way.
//   - Deregister and Close run on a context detached from the caller's and
//     bounded by requestTimeout, so they work after the caller's ctx ended;
//     a second call is harmless. If etcd cannot be reached, the key expires
//     with its lease within the TTL.
//   - Discovery.Watch and the resolver re-establish a failed watch from the
//     last revision seen, and re-read the set (sending the difference) after
//     a compaction.
//
// Registry errors carry component "registry", discovery and resolver
// errors component "discovery".
package discovery
