// Package devstack runs real infrastructure in-process for development and
// tests: an embedded etcd server (go.etcd.io/etcd/server/v3/embed) with fast
// raft ticks on a loopback port chosen by the kernel.
//
// It imports none of the im-infra modules, so any of them can use it in tests.
// A server can be stopped and started again on the same port and data
// directory, which is how fault tests simulate an etcd outage.
package devstack
