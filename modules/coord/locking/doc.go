// Package locking is distributed locks with fencing tokens, leader election
// and instance IDs on etcd.
package locking
