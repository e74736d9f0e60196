// Package cache is im-infra's Redis module: the design document's Cache
// interface, grown to what IM services use, on github.com/redis/rueidis.
//
// # What it is
//
// Cache (implemented by *Client) covers strings and counters, hashes, sets,
// sorted sets, lists, Lua scripts and pipelines, plus three things a
// service would otherwise write itself:
//
//   - GetCached reads through rueidis' server-assisted client-side cache
//     (RESP3 CLIENT TRACKING): a hit costs no round trip, and Redis
//     invalidates the copy when the key changes anywhere. This is the
//     design document's multi-level cache, memory in front of Redis.
//   - GetOrLoad is cache-aside: one load per key in a process, a claim in
//     Redis so other processes wait instead of loading too, loader errors
//     never cached, and Invalidate for writers.
//   - Lock and TryLock are Redis locks with an owner token, automatic
//     extension, a Done channel that closes before the TTL could let
//     another owner in, and a fencing token.
//
// Keys get the configured prefix; values go through Encode and come back
// through Decode; a missing key is ErrMiss. Client() hands out the rueidis
// client for anything else.
//
// # Why it is built this way
//
// rueidis pipelines concurrent calls over a few connections per node and
// caches on the client with server invalidation, which is where the
// throughput and the sub-microsecond cached reads come from (see
// BENCHMARKS.md). The wrapper adds what a service needs around each call
// and stays out of the hot path: a precomputed metric attribute set per
// command and status, one atomic load for the live config, and a shared
// deadline for calls made without one, so bounding them costs no
// allocation. rueidisaside and rueidislock would have provided cache-aside
// and locks, but they are separate Go modules that cannot be fetched here;
// the versions in this package are small, tested against real Redis, and
// integrated with the prefix, the timeouts and the metrics.
//
// # How it fails
//
// Every call is bounded by commandTimeout even under context.Background().
// Failures are *lifecycle.InfraError with Component "cache" and Op the
// command: TIMEOUT when the bound or the caller's deadline passed,
// CONNECTION when Redis cannot be reached or cannot serve now (loading,
// failing over), CONFIG for refused credentials, VALIDATION for a command
// Redis rejected (WRONGTYPE, a script error, keys in different cluster
// slots) or a value Encode refused. Errors name the key as the caller gave
// it and never carry a value or a password. rueidis reconnects by itself:
// the same client works again once Redis is back, with no restart. The
// first failure of an outage and the recovery are logged once each. The
// health checker "cache" PINGs and reports unhealthy while that fails.
package cache
