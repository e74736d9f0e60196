// Package cache is im-infra's Redis module, built on rueidis.
//
// TODO
package cache

// ModuleName names the module in config keys, logs, health and errors.
const ModuleName = "cache"
