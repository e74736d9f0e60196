package config

import (
	"context"
	"fmt"
)

// Document is the content of one config key at one revision. Data is nil when
// the key does not exist (never written, or deleted): the layer below then
// applies.
type Document struct {
	Key      string
	Data     []byte
	Revision int64
}

// Exists reports whether the key held a document.
func (d Document) Exists() bool { return d.Data != nil }

// Source is where config documents live: etcd in production
// (modules/coord), a directory or memory in dev and tests.
//
// Load and Watch together must not lose an update: every change made after
// the revision Load returns is delivered by a Watch started from it.
type Source interface {
	// Name identifies the source in logs and health ("etcd", "dir", "memory").
	Name() string
	// Load reads keys as one consistent snapshot. A missing key yields a
	// Document with nil Data, not an error; an error means the source could
	// not answer (unreachable, timed out) and should be a CONNECTION or
	// TIMEOUT *lifecycle.InfraError.
	Load(ctx context.Context, keys ...string) (docs []Document, revision int64, err error)
	// Watch calls fn, from one goroutine, with the current document of a
	// key each time it changes after revision: each key's changes in
	// revision order, different keys in any order (a Value re-validates the
	// whole set of layers on every change, so only the latest document of
	// each key matters). It blocks until ctx ends (returning ctx.Err()) or
	// the watch fails; after a failure the caller reloads and watches again,
	// so a source never needs to hide compaction or lost connections.
	Watch(ctx context.Context, revision int64, fn func(Document), keys ...string) error
}

// Key is where a service's document for a component lives:
// /config/{env}/{service}/{component}.
func Key(env, service, component string) string {
	return fmt.Sprintf("/config/%s/%s/%s", env, service, component)
}

// GlobalKey is where the env-wide document for a component lives, below the
// service's own: /config/{env}/global/{component}.
func GlobalKey(env, component string) string {
	return Key(env, GlobalService, component)
}

// GlobalService is the reserved service name of the env-wide layer.
const GlobalService = "global"
