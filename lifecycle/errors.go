package lifecycle

import (
	"errors"
	"strings"
)

// ErrorType classifies an infrastructure failure so callers can decide how to
// react (retry a CONNECTION or TIMEOUT, fix a CONFIG or VALIDATION error)
// without parsing messages.
type ErrorType string

// The error types every module uses.
const (
	TypeConfig     ErrorType = "CONFIG"
	TypeConnection ErrorType = "CONNECTION"
	TypeTimeout    ErrorType = "TIMEOUT"
	TypeValidation ErrorType = "VALIDATION"
	TypeInternal   ErrorType = "INTERNAL"
)

// Sentinels that match any *InfraError of their type with errors.Is:
//
//	if errors.Is(err, lifecycle.ErrValidation) { ... }
var (
	ErrConfig     = &InfraError{Type: TypeConfig}
	ErrConnection = &InfraError{Type: TypeConnection}
	ErrTimeout    = &InfraError{Type: TypeTimeout}
	ErrValidation = &InfraError{Type: TypeValidation}
	ErrInternal   = &InfraError{Type: TypeInternal}
)

// InfraError is the error every im-infra module returns for an infrastructure
// failure. Component names the module ("coord", "clog", "cache"), Op the
// operation ("load", "connect"), Field the config field or key at fault when
// there is one. Message and Cause must never carry a secret.
type InfraError struct {
	Type      ErrorType
	Component string
	Op        string
	Field     string
	Message   string
	Cause     error
}

// NewError returns an InfraError without a cause.
func NewError(typ ErrorType, component, op, message string) *InfraError {
	return &InfraError{Type: typ, Component: component, Op: op, Message: message}
}

// WrapError returns an InfraError caused by cause.
func WrapError(typ ErrorType, component, op string, cause error, message string) *InfraError {
	return &InfraError{Type: typ, Component: component, Op: op, Message: message, Cause: cause}
}

// ConfigError reports a configuration that cannot be used (bad syntax, unknown field).
func ConfigError(component, field, message string, cause error) *InfraError {
	return &InfraError{Type: TypeConfig, Component: component, Op: "config", Field: field, Message: message, Cause: cause}
}

// ValidationError reports a value that parsed but is not acceptable.
func ValidationError(component, field, message string) *InfraError {
	return &InfraError{Type: TypeValidation, Component: component, Op: "validate", Field: field, Message: message}
}

// ConnectionError reports a server that could not be reached or dropped the connection.
func ConnectionError(component, op string, cause error) *InfraError {
	return &InfraError{Type: TypeConnection, Component: component, Op: op, Message: "connection failed", Cause: cause}
}

// TimeoutError reports an operation that did not finish in its time budget.
func TimeoutError(component, op string, cause error) *InfraError {
	return &InfraError{Type: TypeTimeout, Component: component, Op: op, Message: "timed out", Cause: cause}
}

// InternalError reports a bug or an impossible state.
func InternalError(component, op, message string, cause error) *InfraError {
	return &InfraError{Type: TypeInternal, Component: component, Op: op, Message: message, Cause: cause}
}

// WithField returns a copy of e that names field.
func (e *InfraError) WithField(field string) *InfraError {
	c := *e
	c.Field = field
	return &c
}

// Error reads "component: op [TYPE] field "f": message: cause".
func (e *InfraError) Error() string {
	var b strings.Builder
	if e.Component != "" {
		b.WriteString(e.Component)
		b.WriteString(": ")
	}
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteByte(' ')
	}
	b.WriteByte('[')
	b.WriteString(string(e.Type))
	b.WriteByte(']')
	if e.Field != "" {
		b.WriteString(` field "`)
		b.WriteString(e.Field)
		b.WriteByte('"')
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Cause != nil {
		b.WriteString(": ")
		b.WriteString(e.Cause.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *InfraError) Unwrap() error { return e.Cause }

// Is reports whether target is an InfraError sentinel of the same type, or an
// InfraError whose non-empty fields all equal e's.
func (e *InfraError) Is(target error) bool {
	t, ok := target.(*InfraError)
	if !ok || t == nil || e == nil {
		// A typed nil target would otherwise panic inside errors.Is.
		return false
	}
	return t.Type == e.Type &&
		(t.Component == "" || t.Component == e.Component) &&
		(t.Op == "" || t.Op == e.Op) &&
		(t.Field == "" || t.Field == e.Field) &&
		(t.Message == "" || t.Message == e.Message) &&
		t.Cause == nil
}

// TypeOf returns the ErrorType of the first InfraError in err's chain, or "" if none.
func TypeOf(err error) ErrorType {
	var ie *InfraError
	if errors.As(err, &ie) {
		return ie.Type
	}
	return ""
}
