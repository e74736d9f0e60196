package lifecycle

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInfraErrorIsSentinels(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		sentinel error
		want     bool
	}{
		{"config", ConfigError("coord", "endpoints", "bad", nil), ErrConfig, true},
		{"validation", ValidationError("lifecycle", "service", "bad"), ErrValidation, true},
		{"connection", ConnectionError("cache", "dial", io.EOF), ErrConnection, true},
		{"timeout", TimeoutError("db", "ping", nil), ErrTimeout, true},
		{"internal", InternalError("mq", "produce", "boom", nil), ErrInternal, true},
		{"other type", ValidationError("lifecycle", "service", "bad"), ErrConfig, false},
		{"wrapped by fmt", fmt.Errorf("boot: %w", TimeoutError("db", "ping", nil)), ErrTimeout, true},
		{"plain error", io.EOF, ErrInternal, false},
		{"typed nil target", ValidationError("lifecycle", "env", "x"), (*InfraError)(nil), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, errors.Is(tt.err, tt.sentinel))
		})
	}
}

func TestInfraErrorIsMatchesNonEmptyFields(t *testing.T) {
	err := ValidationError("lifecycle", "env", "unknown env")
	assert.ErrorIs(t, err, &InfraError{Type: TypeValidation, Component: "lifecycle"})
	assert.ErrorIs(t, err, &InfraError{Type: TypeValidation, Field: "env"})
	assert.NotErrorIs(t, err, &InfraError{Type: TypeValidation, Field: "service"})
	assert.NotErrorIs(t, err, &InfraError{Type: TypeValidation, Component: "coord"})
}

func TestInfraErrorUnwrapAndAs(t *testing.T) {
	cause := io.ErrUnexpectedEOF
	err := fmt.Errorf("start: %w", ConnectionError("coord", "connect", cause))

	assert.ErrorIs(t, err, cause, "the cause stays reachable through Unwrap")
	var ie *InfraError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, "coord", ie.Component)
	assert.Equal(t, TypeConnection, ie.Type)
	assert.Equal(t, cause, ie.Unwrap())
	assert.Equal(t, TypeConnection, TypeOf(err))
	assert.Equal(t, ErrorType(""), TypeOf(io.EOF))
}

func TestInfraErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  *InfraError
		want string
	}{
		{"full", &InfraError{Type: TypeConfig, Component: "cache", Op: "load", Field: "addr", Message: "bad value", Cause: io.EOF},
			`cache: load [CONFIG] field "addr": bad value: EOF`},
		{"no field no cause", NewError(TypeInternal, "mq", "produce", "queue full"), "mq: produce [INTERNAL]: queue full"},
		{"wrapped", WrapError(TypeTimeout, "db", "ping", io.EOF, "no answer"), "db: ping [TIMEOUT]: no answer: EOF"},
		{"type only", &InfraError{Type: TypeTimeout}, "[TIMEOUT]"},
		{"validation helper", ValidationError("lifecycle", "env", "unknown"), `lifecycle: validate [VALIDATION] field "env": unknown`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.err.Error())
		})
	}
}

func TestInfraErrorWithFieldCopies(t *testing.T) {
	orig := NewError(TypeValidation, "cache", "validate", "must be positive")
	withField := orig.WithField("pool_size")

	assert.Equal(t, "pool_size", withField.Field)
	assert.Empty(t, orig.Field, "WithField must not modify the receiver")
	assert.Contains(t, withField.Error(), `field "pool_size"`)

	sentinelCopy := ErrValidation.WithField("x")
	assert.Empty(t, ErrValidation.Field, "sentinels stay untouched")
	assert.ErrorIs(t, sentinelCopy, ErrValidation)
}
