package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/rueidis"

	"github.com/gochat/im-infra/lifecycle"
)

// Errors callers match with errors.Is. They are not InfraErrors: a missing
// key or a busy lock is an answer, not an infrastructure failure.
var (
	// ErrMiss: the key (or hash field, or sorted-set member) does not exist.
	ErrMiss = errors.New("cache: miss")
	// ErrLockHeld: TryLock found the lock held by another owner.
	ErrLockHeld = errors.New("cache: lock is held by another owner")
	// ErrLockLost: the lock is no longer held by this owner (it expired
	// after the owner could not extend it, or another owner took it over),
	// or Unlock found it already gone.
	ErrLockLost = errors.New("cache: lock lost")
	// ErrLockReleased is what Lock.Err returns after Unlock.
	ErrLockReleased = errors.New("cache: lock released")
)

// errNotStarted is the cause of calls made before the client connected.
var errNotStarted = errors.New("cache client is not started (the fx app has not run its start hooks, or Close was called)")

// transient Redis error prefixes: the server is there but cannot serve the
// command right now (loading, failing over, cluster reconfiguring).
var transientPrefixes = []string{"LOADING", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "BUSY ", "NOREPLICAS", "MOVED", "ASK"}

// classify maps an error from rueidis to a status for metrics.
func classify(err error) status {
	switch {
	case err == nil:
		return statusOK
	case rueidis.IsRedisNil(err):
		return statusMiss
	case errors.Is(err, context.DeadlineExceeded):
		return statusTimeout
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		if isTransient(re.Error()) {
			return statusConnection
		}
		return statusError
	}
	if errors.Is(err, context.Canceled) {
		return statusError
	}
	return statusConnection
}

func isTransient(msg string) bool {
	for _, p := range transientPrefixes {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// wrap turns an error of a call on key into what callers get: ErrMiss for a
// nil reply, the caller's own context.Canceled as is, and otherwise an
// InfraError naming the command and the key (never a value or a secret):
// TIMEOUT for a deadline, CONNECTION for an unreachable or unavailable
// server, CONFIG for refused credentials, VALIDATION for a command the
// server rejected (WRONGTYPE, a script error, ...).
func wrap(c command, key string, err error) error {
	if err == nil {
		return nil
	}
	if rueidis.IsRedisNil(err) {
		return ErrMiss
	}
	op := commandNames[c]
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &lifecycle.InfraError{Type: lifecycle.TypeTimeout, Component: ModuleName, Op: op, Field: key,
			Message: "timed out (commandTimeout or the caller's deadline)", Cause: err}
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("cache: %s %q: %w", op, key, err)
	case errors.Is(err, rueidis.ErrClosing), errors.Is(err, errNotStarted):
		return &lifecycle.InfraError{Type: lifecycle.TypeConnection, Component: ModuleName, Op: op, Field: key,
			Message: "client is closed or not started", Cause: err}
	}
	var ie *lifecycle.InfraError
	if errors.As(err, &ie) {
		return err
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		msg := re.Error()
		switch {
		case isAuthError(msg):
			return &lifecycle.InfraError{Type: lifecycle.TypeConfig, Component: ModuleName, Op: op, Field: "password",
				Message: "Redis refused the credentials; check username and password", Cause: err}
		case isTransient(msg):
			return &lifecycle.InfraError{Type: lifecycle.TypeConnection, Component: ModuleName, Op: op, Field: key,
				Message: "server cannot serve the command now", Cause: err}
		case strings.HasPrefix(msg, "CROSSSLOT"):
			return &lifecycle.InfraError{Type: lifecycle.TypeValidation, Component: ModuleName, Op: op, Field: key,
				Message: "keys are in different hash slots; give them one hash tag, e.g. {user:1}", Cause: err}
		}
		return &lifecycle.InfraError{Type: lifecycle.TypeValidation, Component: ModuleName, Op: op, Field: key,
			Message: "server rejected the command", Cause: err}
	}
	return &lifecycle.InfraError{Type: lifecycle.TypeConnection, Component: ModuleName, Op: op, Field: key,
		Message: "connection failed", Cause: err}
}

func isAuthError(msg string) bool {
	return strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH") ||
		strings.Contains(msg, "invalid password") || strings.Contains(msg, "invalid username-password")
}

// encodeError reports a value that Encode refused, naming the key.
func encodeError(c command, key string, err error) error {
	return &lifecycle.InfraError{Type: lifecycle.TypeValidation, Component: ModuleName, Op: commandNames[c], Field: key,
		Message: "value cannot be stored", Cause: err}
}

// crossSlotError reports a multi-key call whose keys a cluster cannot
// serve in one command.
func crossSlotError(c command, a, b string, sa, sb uint16) error {
	return &lifecycle.InfraError{Type: lifecycle.TypeValidation, Component: ModuleName, Op: commandNames[c], Field: a,
		Message: fmt.Sprintf("keys %q and %q are in different hash slots (%d, %d); a multi-key call in a cluster needs one hash tag in every key, e.g. {user:1}:name and {user:1}:age", a, b, sa, sb)}
}
