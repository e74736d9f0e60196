// Package coordtest is the test kit of coord and its subpackages: an
// embedded etcd (one member or a cluster) stopped at cleanup, raw clientv3
// clients that are known to answer, a context bounded for the test, and a
// partitionable path from one client to a cluster.
//
// It imports devstack and clientv3 only, so coord's own internal tests (and
// those of discovery and locking) can use it without an import cycle.
package coordtest
