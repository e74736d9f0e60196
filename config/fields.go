package config

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
)

// unknownFieldError names a field that the target type does not have, by its
// full dotted path ("limits.max").
type unknownFieldError struct{ path string }

func (e *unknownFieldError) Error() string { return "unknown field " + e.path }

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// checkFields walks a JSON document against t and reports the first object
// key that t has no field for. encoding/json alone is not enough: it matches
// field names case-insensitively, so a "poolsize" typo would be silently
// accepted as "poolSize".
func checkFields(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil // syntax errors are reported by the real decode
	}
	return walkFields(doc, t, "")
}

func walkFields(doc any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := doc.(map[string]any)
		if !ok {
			return nil // a type mismatch; the real decode names it
		}
		fields := structFields(t)
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			v := obj[k]
			idx, ok := fields[k]
			if !ok {
				return &unknownFieldError{path: join(path, k)}
			}
			if err := walkFields(v, t.FieldByIndex(idx).Type, join(path, k)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if obj, ok := doc.(map[string]any); ok {
			for _, k := range slices.Sorted(maps.Keys(obj)) {
				if err := walkFields(obj[k], t.Elem(), join(path, k)); err != nil {
					return err
				}
			}
		}
	case reflect.Slice, reflect.Array:
		if arr, ok := doc.([]any); ok {
			for _, v := range arr {
				if err := walkFields(v, t.Elem(), path); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
