package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gochat/im-infra/lifecycle"
)

// Schema is what a component's Config provides: its defaults and its
// validation. Defaults is called on the zero value, so it must not depend on
// the receiver.
type Schema[T any] interface {
	Defaults() T
	Validate() error
}

// Layer is one JSON document applied on top of the layers below it, with the
// key it came from (used only to name the key in errors).
type Layer struct {
	Key  string
	Data []byte
}

// Parse builds a component's config: defaults, then each layer merged on
// top in order, then Validate. The merge rules: objects and maps merge key
// by key, recursively; arrays and scalars replace whole; null and an empty
// document contribute nothing. Decoding is strict: an unknown field (also
// one spelt with the wrong case) is a CONFIG error naming the field path and
// the key. It is what Value uses and what a tool can call to check a set of
// documents before writing one of them.
func Parse[T Schema[T]](component string, layers ...Layer) (T, error) {
	var zero T
	cfg := zero.Defaults()
	for _, l := range layers {
		if l.Data == nil {
			continue
		}
		if err := mergeDocument(l.Data, &cfg); err != nil {
			return zero, decodeError(component, l.Key, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return zero, validationError(component, keyOf(layers), err)
	}
	return cfg, nil
}

func keyOf(layers []Layer) string {
	var keys []string
	for _, l := range layers {
		if l.Data != nil && !isEmptyJSON(l.Data) {
			keys = append(keys, l.Key)
		}
	}
	return strings.Join(keys, " + ")
}

// decodeError turns encoding/json's errors into a CONFIG InfraError that
// names the field and the key.
func decodeError(component, key string, err error) error {
	var (
		syn *json.SyntaxError
		unk *unknownFieldError
		fp  *fieldPathError
	)
	field, msg := "", err.Error()
	switch {
	case errors.As(err, &syn):
		msg = fmt.Sprintf("malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &unk):
		field, msg = unk.path, "unknown field"
	case errors.As(err, &fp):
		field, msg = fp.path, fp.msg
	default:
		msg = strings.TrimPrefix(msg, "json: ")
	}
	return &lifecycle.InfraError{
		Type:      lifecycle.TypeConfig,
		Component: component,
		Op:        "decode",
		Field:     field,
		Message:   fmt.Sprintf("key %s: %s", key, msg),
	}
}

// validationError keeps a component's own InfraError (with its field) and
// adds the component and key; any other error becomes a VALIDATION error.
func validationError(component, key string, err error) error {
	var ie *lifecycle.InfraError
	if errors.As(err, &ie) {
		c := *ie
		if c.Component == "" {
			c.Component = component
		}
		if c.Op == "" {
			c.Op = "validate"
		}
		if key != "" {
			c.Message = fmt.Sprintf("key %s: %s", key, c.Message)
		}
		return &c
	}
	msg := "invalid config"
	if key != "" {
		msg = fmt.Sprintf("key %s: invalid config", key)
	}
	return &lifecycle.InfraError{Type: lifecycle.TypeValidation, Component: component, Op: "validate", Message: msg, Cause: err}
}
