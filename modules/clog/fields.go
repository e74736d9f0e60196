package clog

import (
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Field constructors. They are functions rather than variables holding zap's
// so that the compiler can inline them exactly like zap's own.

// String constructs a field with a string value.
func String(key, val string) Field { return zap.String(key, val) }

// Strings constructs a field with a []string value.
func Strings(key string, val []string) Field { return zap.Strings(key, val) }

// Int constructs a field with an int value.
func Int(key string, val int) Field { return zap.Int(key, val) }

// Int64 constructs a field with an int64 value.
func Int64(key string, val int64) Field { return zap.Int64(key, val) }

// Uint64 constructs a field with a uint64 value.
func Uint64(key string, val uint64) Field { return zap.Uint64(key, val) }

// Float64 constructs a field with a float64 value.
func Float64(key string, val float64) Field { return zap.Float64(key, val) }

// Bool constructs a field with a bool value.
func Bool(key string, val bool) Field { return zap.Bool(key, val) }

// Duration constructs a field with a time.Duration value, printed as "1.5s".
func Duration(key string, val time.Duration) Field { return zap.Duration(key, val) }

// Time constructs a field with a time.Time value.
func Time(key string, val time.Time) Field { return zap.Time(key, val) }

// Stringer constructs a field whose value is val.String(), computed only if
// the entry is written.
func Stringer(key string, val fmt.Stringer) Field { return zap.Stringer(key, val) }

// Any constructs a field from any value, choosing the cheapest encoding zap has for it.
func Any(key string, val any) Field { return zap.Any(key, val) }

// Err constructs the conventional "error" field; nil yields a field that is skipped.
func Err(err error) Field { return zap.Error(err) }

// NamedError constructs an error field under key.
func NamedError(key string, err error) Field { return zap.NamedError(key, err) }
