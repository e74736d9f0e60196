// Package coord is im-infra's etcd layer: the etcd client's lifecycle, the
// config.Source on etcd, the config center API, service registry and
// discovery (with a gRPC resolver), distributed locks with fencing tokens,
// leader election and instance-ID allocation.
package coord
