// Package devstack runs real infrastructure for development and tests: an
// embedded etcd server (go.etcd.io/etcd/server/v3/embed), or a multi-member
// cluster of them, with fast raft ticks on loopback ports chosen by the
// kernel; Redis (redis-server from PATH on a free port, else miniredis; also
// a 3-master cluster and a Sentinel setup); Kafka through kfake on real TCP
// ports; and the names of the SQL databases tests use (SQLite files, the
// machine's MariaDB and PostgreSQL).
//
// It imports none of the im-infra modules, so any of them can use it in tests.
// A server can be stopped (gracefully or as a crash) and started again on
// the same port and data directory, and its clients can be cut off by a
// refusing or a blackholing proxy, which is how fault tests simulate
// outages, leader loss and network partitions. Redis and Kafka can be
// stopped, killed and restarted the same way.
package devstack
