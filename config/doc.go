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
// A Value never publishes a config that did not parse and validate: an
// invalid document is refused with a warning, the last good value stays, and
// a later good document applies as usual. Readers call Get, one atomic load.
//
// Documents come from a Source: etcd in production (modules/coord), a
// directory (DirSource) in development, memory (MemorySource) in tests. When
// the source is unreachable at boot, a Value starts within its load timeout
// from the last-known-good Snapshot file, or else from defaults, reports
// Degraded and retries until the source answers.
package config
