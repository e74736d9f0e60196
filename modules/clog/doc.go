// Package clog is im-infra's logging: zap, with one swappable core under
// every logger.
//
// # Why a swappable core
//
// A service logs before its configuration exists: constructors run in phase
// 1, and the logging config arrives from the config center in phase 2. With
// plain zap, loggers handed out early keep the bootstrap core forever. Here
// every logger — the app's root, ModuleLogger loggers, the package facade,
// and anything derived with With or Named — writes through a core that looks
// up the current state on each call. Each fx app has its own state; the
// facade follows the app installed last, so apps in one process (parallel
// tests) stay apart. Bootstrap installs a console (dev) or JSON core on stderr with
// service/env/instance fields; Apply swaps in the production core built from
// Config; a later Apply (a config change) swaps again. A logger created
// before a swap follows it, including its With fields and its module's
// level.
//
// Logger is *zap.Logger (a type alias) and Field is zap.Field, so anything
// that takes a zap logger takes a clog one and nothing is hidden.
//
// # Why it stays as fast as zap
//
// The state is one atomic pointer; a swap publishes a new immutable state.
// Each logger's core caches, per state, the level that applies to its module
// and the underlying core with its With fields already encoded, so the hot
// path is two pointer loads and a compare: no lock, no map lookup, no
// allocation. Fields are encoded once per config generation, not per line.
// The entry is written straight to the production core, so clog adds
// nothing to encoding or output. Benchmarks in bench_test.go put it beside
// raw zap on the same encoder.
//
// Disabled levels cost what they cost in zap: nothing but the check, plus
// the []Field that zap's variadic methods make the caller allocate when
// fields are passed. Guard expensive or hot debug logging with Check:
//
//	if ce := log.Check(zapcore.DebugLevel, "cache miss"); ce != nil {
//		ce.Write(clog.String("key", key))
//	}
//
// Callers are always captured, so that the caller setting can change live;
// caller=false only keeps them out of the output.
//
// # Per-module levels
//
// ModuleLogger(log, "cache") returns a logger whose lines carry module=cache and whose
// level is Config.Levels["cache"] when set, else the global level. Setting
// levels.cache=debug in the config center turns on debug for that module
// alone, within one config watch round trip, without a restart.
//
// # Failure behaviour
//
// Apply validates first: an invalid config (unknown level, file output
// without a path, an unopenable file) is refused with a *lifecycle.InfraError
// and the current core stays. Module logs such a refusal as a warning and
// keeps logging; config.Value already refuses documents that do not
// validate, keeping the last good one. A rotating file that the new config
// no longer uses is closed after the swap; unchanged file settings keep the
// same file open.
//
// # Trace correlation
//
// TraceFields(ctx) returns trace_id and span_id of the OpenTelemetry span in
// ctx; WithContext(ctx) is L() with those fields.
//
// # Fx
//
// Module provides the app's root *Logger and *config.Value[Config] and applies
// the config on start and on every change. FxEventLogger routes fx's own
// events at debug level.
package clog
