// Package discovery is service registry and discovery on etcd.
package discovery
