// Package config is im-infra's typed, validated, hot-reloadable component
// configuration.
//
// Each component owns a Config struct with Defaults() and Validate() and
// reads it through a Value[T]: defaults, then the env-wide document at
// /config/{env}/global/{component}, then the service's own at
// /config/{env}/{service}/{component}. Documents are JSON, decoded strictly
// (an unknown or mis-cased field is an error naming the field and the key),
// with Duration for "5s"-style durations and Secret for values that must
// never print.
//
// Layers merge explicitly: objects and maps key by key, recursively;
// arrays and scalars replace whole; null and empty documents contribute
// nothing. A Value keeps the latest document of every layer and validates
// the whole set on each change: a valid set is published, an invalid one is
// refused with a warning and the last valid config stays until a later
// change makes the set valid. Once writes stop, Get equals Parse of the
// current layers whenever that is valid. Readers call Get, one atomic load;
// Subscribe delivers the current value and then every change, in order.
//
// ProvideValue makes a Value for fx and registers its own start and stop
// hooks, so a Value in the graph is always loaded and watched.
//
// Documents come from a Source: etcd in production (modules/coord), a
// directory (DirSource) in development, memory (MemorySource) in tests. When
// the source is unreachable at boot, a Value starts within its load timeout
// from the last-known-good Snapshot file, or else from defaults, reports
// Degraded and retries until the source answers.
package config
