// Package locking is coordination on etcd leases: distributed locks with
// fencing tokens, leader election and small unique instance IDs.
//
// # What it holds
//
//   - Locker and Lock: Acquire (waits, in arrival order), TryAcquire,
//     Unlock, Done, Token and Guard (a write that commits only while the
//     lock is held). Keys follow etcd's concurrency.Mutex layout, so the two
//     exclude each other.
//   - Elector and Election: NewElection(name) per thing only one instance
//     may do; Campaign, Resign, Leader, Observe, Done and Guard. Keys follow
//     etcd's concurrency.Election layout.
//   - IDAllocator and InstanceID: the smallest free integer in 1..Max
//     (snowflake worker IDs, shard slots), held while the holder lives.
//   - Config: config component "locking" (prefixes and ID range at start;
//     TTLs and releaseTimeout live).
//   - Module: provides *Locker, *Elector and *IDAllocator on the
//     *clientv3.Client named "etcd"; coord.Module includes it.
//
// # Why it is built this way
//
// A lock, a leadership or an ID is only as good as its holder's knowledge
// that it still has it. Every one is held by a lease that this package
// renews itself, by one rule (MinTTL documents it): a renewal every TTL/4;
// the lease is declared lost, and Done closed, when no renewal has been
// confirmed for 3/4 of the TTL, counted from when that renewal was sent.
// So a holder rides out a stall of up to half the TTL, and hears of a loss
// at least TTL/4 (500ms at the minimum TTL of 2s) before etcd can expire
// the lease and give the lock to someone else. clientv3's own keepalive
// (and concurrency.Session on it) renews on a fixed 500ms tick, re-opens a
// broken stream only after 500ms, and gives a lease up only after the
// whole TTL, so its holder can still believe in a lock etcd has already
// handed on.
//
// Done is a warning, not a fence: a holder paused at the wrong moment (GC,
// a slow disk) can act after its lease expired. Guard is the fence: it runs
// the protected writes in one transaction that commits only while the
// holder's key still exists with its create revision, and Token (that
// revision) increases strictly from one holder to the next, for resources
// outside etcd that can remember the highest token they have seen.
//
// Releases must happen when they matter most, after a request timed out:
// `defer lock.Unlock(reqCtx)` is the common case. So Unlock, Resign, ID
// Release and every Close run on a context detached from the caller's and
// bounded by releaseTimeout. Locker reuses leases (Unlock deletes the key
// and keeps a lease that provably lived), so a repeated lock costs two etcd
// writes, like concurrency.Mutex on a long-lived session.
//
// # How it fails
//
//   - Bad input (a name with '/', a TTL below MinTTL, a prefix without a
//     leading '/', an ID range out of 1..65536) is a VALIDATION
//     *lifecycle.InfraError naming the field, before any I/O.
//   - etcd unreachable while holding: renewals fail; after 3/4 of the TTL
//     Done closes, a WARN line says which lock, leadership or ID was lost,
//     and renewals stop for good (the key must not outlive the holder's
//     belief). Guard then fails with ErrLockLost or ErrNotLeader.
//   - etcd unreachable while waiting: a waiter or candidate whose lease
//     dies queues again on a fresh one; one whose ctx ends revokes its
//     lease so it leaves no key behind (or the key expires within the TTL).
//   - Leader loss in a cluster: renewals retry every 25ms against the
//     survivors; leases live through the election (TestLeaderLoss).
//   - ErrLockHeld (TryAcquire), ErrLockLost, ErrNoLeader, ErrNotLeader and
//     ErrIDsExhausted match with errors.Is; other errors are
//     *lifecycle.InfraError with component "locking": TIMEOUT when the
//     caller's ctx ended, CONNECTION for etcd failures.
package locking
