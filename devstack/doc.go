// Package devstack runs real infrastructure in-process for development and
// tests: an embedded etcd server (go.etcd.io/etcd/server/v3/embed), or a
// multi-member cluster of them, with fast raft ticks on loopback ports
// chosen by the kernel.
//
// It imports none of the im-infra modules, so any of them can use it in tests.
// A server can be stopped (gracefully or as a crash) and started again on
// the same port and data directory, and its clients can be cut off by a
// refusing or a blackholing proxy, which is how fault tests simulate etcd
// outages, leader loss and network partitions.
package devstack
