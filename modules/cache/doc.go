// Package cache is im-infra's Redis module, built on rueidis.
//
// TODO
package cache
