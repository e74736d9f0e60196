// Package coord is im-infra's etcd layer: the connection to etcd, the
// config.Source that the whole config floor reads through, and the config
// center API. Its subpackages build on the same connection: discovery
// (service registry, discovery and the gRPC resolver) and locking (locks
// with fencing tokens, leader election and instance IDs).
//
// # What it holds
//
//   - Config and LoadConfig: how a process reaches etcd (endpoints, auth,
//     TLS, timeouts), read from IMINFRA_ETCD_* through lifecycle.Environ,
//     because etcd cannot tell a process where etcd is.
//   - Client: owns the *clientv3.Client. NewClient never touches the
//     network; Start probes etcd once and starts a monitor that keeps
//     Connected current and, through Recovered, tells waiting config Values
//     the moment etcd answers again. Raw hands out the underlying client for
//     anything coord does not wrap.
//   - Source: config.Source on etcd. Load reads every key in one
//     transaction (one revision); Watch follows exactly the keys asked for,
//     one etcd watch per key, from the next revision. It is also a
//     config.RecoveryNotifier.
//   - Center: get, set, list, watch, compare-and-set and history of keys,
//     for tools (config-cli) and services.
//   - HealthChecker: "coord" in /readyz: healthy while etcd answers,
//     degraded while it does not.
//   - Module: the one fx entry point. It provides the above, the raw client
//     named "etcd" (EtcdName), and includes discovery.Module and
//     locking.Module. fx builds only what something asks for: a service
//     that never asks for a lock builds no Locker and loads no "locking"
//     config.
//
// # Why it is built this way
//
// A service must start, and keep serving, with etcd down: it runs on its
// last-known-good snapshot or on defaults and says so in /readyz, and
// applies etcd's config as soon as etcd answers. Everything here follows
// from that. The client is built in phase 1 without I/O (clientv3 dials
// lazily, and coord fetches the auth token on the first request instead of
// in clientv3.New, which would block construction for up to dialTimeout).
// The probe does not wait for a connection (gRPC WaitForReady(false)): a
// port that refuses connections fails it in milliseconds, so such a service
// is up, degraded, in about a millisecond; only an endpoint that accepts
// and never answers (a blackhole) costs probeTimeout. While the last probe
// failed, Source.Load fails fast too, instead of each config Value waiting
// out a request timeout of its own.
//
// After an outage, two backoffs in series (gRPC's reconnect and each
// Value's retry) would delay the return to etcd's config by up to a second.
// Instead, while etcd is down the monitor forces a reconnect every
// recoveryProbeInterval (50ms) and, the moment a probe succeeds, closes the
// Recovered channel every waiting Value selects on: every Value reloads
// within tens of milliseconds of etcd answering (see BENCHMARKS.md).
//
// Source watches each key on its own rather than the key range between a
// service's global and service documents, because that range holds every
// other service's documents (secrets included), and under etcd RBAC that
// grants a service only /config/{env}/global/ and /config/{env}/{service}/
// a range watch is refused outright. The per-key watches share one gRPC
// stream; each key's changes arrive in order, which is all config.Value
// needs (it re-validates the whole set of layers on every change).
//
// # How it fails
//
//   - Invalid bootstrap settings are VALIDATION *lifecycle.InfraErrors
//     naming the field (endpoints[1], dialTimeout, tls.keyFile); unreadable
//     TLS files and rejected credentials are CONFIG errors. No password ever
//     appears in an error, a log line or fmt output, not even one typed
//     into an endpoint URL.
//   - etcd down at start: the start hook logs one warning and the app
//     starts; "coord" is degraded; Values run on snapshot or defaults. When
//     etcd answers, the monitor logs it, Recovered wakes the Values, and
//     "coord" turns healthy.
//   - etcd lost while running: the monitor probes at once when the
//     connection breaks (else within 2s, plus probeTimeout for an etcd gone
//     silent) and turns "coord" degraded. Source.Watch then returns, so
//     each Value waits to reload and is woken by Recovered, rather than
//     waiting for clientv3 to resume the watch after a backoff of its own.
//     WithRequireLeader makes a member cut off from its cluster end its
//     watches instead of going silent. A compacted revision is a CONNECTION
//     error wrapping rpctypes.ErrCompacted: the Value reloads.
//   - Leader loss in a cluster: watches are cancelled ("no leader") and
//     re-established on the new leader; a config update written after the
//     election is applied (TestLeaderLoss).
//   - Stop: the client's hooks are registered before those of everything
//     that uses it, so it closes last, after deregistration, unlock and ID
//     release.
//
// Errors are *lifecycle.InfraError with component "coord", the operation as
// Op and the key as Field: TIMEOUT when a deadline ended the call,
// CONNECTION for other etcd failures.
package coord
