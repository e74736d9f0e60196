package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
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

// Parse builds a component's config: defaults, then each layer decoded on
// top in order (a missing field keeps the value below, an object merges, an
// array replaces), then Validate. Decoding is strict: an unknown field is a
// CONFIG error naming the field and the key. It is what Value uses and what a
// tool can call to check a document before writing it.
func Parse[T Schema[T]](component string, layers ...Layer) (T, error) {
	var zero T
	cfg := zero.Defaults()
	for _, l := range layers {
		if l.Data == nil {
			continue
		}
		if err := decodeStrict(l.Data, &cfg); err != nil {
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
		if l.Data != nil {
			keys = append(keys, l.Key)
		}
	}
	return strings.Join(keys, " + ")
}

func decodeStrict(data []byte, into any) error {
	if err := checkFields(data, reflect.TypeOf(into)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty document")
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}

// decodeError turns encoding/json's errors into a CONFIG InfraError that
// names the field and the key.
func decodeError(component, key string, err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		unk *unknownFieldError
	)
	field, msg := "", err.Error()
	switch {
	case errors.As(err, &syn):
		msg = fmt.Sprintf("malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &unk):
		field, msg = unk.path, "unknown field"
	case errors.As(err, &typ):
		field = typ.Field
		msg = fmt.Sprintf("wrong type: got JSON %s, want %s", typ.Value, typ.Type)
	case strings.HasPrefix(msg, `json: unknown field "`):
		field = strings.TrimSuffix(strings.TrimPrefix(msg, `json: unknown field "`), `"`)
		msg = "unknown field"
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
