package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// The merge rules, applied by mergeInto for each layer on top of the ones
// below it, starting from Defaults():
//
//   - a JSON object merges into a struct or a map key by key, recursively:
//     a key the layer does not mention keeps the value below;
//   - an array replaces the whole slice, a scalar replaces the value, and a
//     type with its own UnmarshalJSON (Duration, Secret) replaces the value;
//   - null, and an empty document, contribute nothing: the value below stays.
//
// encoding/json alone does not do this: decoding a layer onto the value
// below reuses slice elements (an array of objects leaks the lower layer's
// fields into the upper's) and replaces map elements (a map of objects
// loses the lower layer's fields). So the walk over objects is explicit, and
// encoding/json only decodes leaves into fresh values.

// fieldPathError is a decode error at a JSON path ("limits.max").
type fieldPathError struct {
	path string
	msg  string
}

func (e *fieldPathError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

// isEmptyJSON reports whether a document or value contributes nothing.
func isEmptyJSON(raw []byte) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// mergeDocument decodes one layer onto dst (a pointer to the config).
func mergeDocument(data []byte, dst any) error {
	if isEmptyJSON(data) {
		return nil
	}
	if !json.Valid(data) {
		// A syntax error names the byte offset; Decoder finds it and also
		// reports trailing data after the first value.
		dec := json.NewDecoder(bytes.NewReader(data))
		var v any
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return errors.New("trailing data after the JSON document")
		}
		return errors.New("malformed JSON")
	}
	v := reflect.ValueOf(dst).Elem()
	if trimmed := bytes.TrimSpace(data); trimmed[0] != '{' {
		return &fieldPathError{msg: fmt.Sprintf("want a JSON object, got %s", jsonKind(trimmed))}
	}
	return mergeInto(data, v, "")
}

// mergesAsObject reports whether values of t are merged key by key.
func mergesAsObject(t reflect.Type) bool {
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		return false
	}
	switch t.Kind() {
	case reflect.Struct:
		return true
	case reflect.Map:
		return t.Key().Kind() == reflect.String
	case reflect.Pointer:
		return mergesAsObject(t.Elem()) && t.Elem().Kind() == reflect.Struct
	}
	return false
}

// mergeInto applies raw onto the settable value dst at path.
func mergeInto(raw json.RawMessage, dst reflect.Value, path string) error {
	if isEmptyJSON(raw) {
		return nil
	}
	t := dst.Type()
	if !mergesAsObject(t) {
		return decodeLeaf(raw, dst, path)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return &fieldPathError{path: path, msg: fmt.Sprintf("wrong type: got JSON %s, want an object", jsonKind(raw))}
	}
	// Sorted, so the same document always reports the same field.
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	switch t.Kind() {
	case reflect.Pointer:
		// Copy before merging: the pointee may be shared with the value below.
		next := reflect.New(t.Elem())
		if !dst.IsNil() {
			next.Elem().Set(dst.Elem())
		}
		if err := mergeObjectIntoStruct(obj, keys, next.Elem(), path); err != nil {
			return err
		}
		dst.Set(next)
		return nil
	case reflect.Struct:
		return mergeObjectIntoStruct(obj, keys, dst, path)
	default: // map with string keys
		if dst.IsNil() {
			dst.Set(reflect.MakeMapWithSize(t, len(obj)))
		}
		for _, k := range keys {
			if isEmptyJSON(obj[k]) {
				continue
			}
			elem := reflect.New(t.Elem()).Elem()
			if cur := dst.MapIndex(reflect.ValueOf(k).Convert(t.Key())); cur.IsValid() && mergesAsObject(t.Elem()) {
				elem.Set(cur)
				if t.Elem().Kind() == reflect.Map && !cur.IsNil() {
					// Clone a nested map, so merging does not write into
					// the lower layer's map.
					elem.Set(cloneMap(cur))
				}
			}
			if err := mergeInto(obj[k], elem, join(path, k)); err != nil {
				return err
			}
			dst.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), elem)
		}
		return nil
	}
}

func cloneMap(m reflect.Value) reflect.Value {
	c := reflect.MakeMapWithSize(m.Type(), m.Len())
	iter := m.MapRange()
	for iter.Next() {
		c.SetMapIndex(iter.Key(), iter.Value())
	}
	return c
}

func mergeObjectIntoStruct(obj map[string]json.RawMessage, keys []string, dst reflect.Value, path string) error {
	fields := structFields(dst.Type())
	for _, k := range keys {
		idx, ok := fields[k]
		if !ok {
			return &unknownFieldError{path: join(path, k)}
		}
		f, err := fieldByIndexAlloc(dst, idx)
		if err != nil {
			return &fieldPathError{path: join(path, k), msg: err.Error()}
		}
		if err := mergeInto(obj[k], f, join(path, k)); err != nil {
			return err
		}
	}
	return nil
}

// fieldByIndexAlloc is FieldByIndex that allocates nil embedded struct pointers.
func fieldByIndexAlloc(v reflect.Value, index []int) (reflect.Value, error) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !v.CanSet() {
					return reflect.Value{}, errors.New("cannot set embedded pointer to unexported struct")
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, nil
}

// JSONFields maps the exact JSON names of struct type t's fields (embedded
// structs flattened, as encoding/json does) to their types: the fields
// Parse accepts in a document. Tools that walk raw documents by a
// component's type (config-cli masks secrets so) use it, so they read
// fields exactly as Parse does.
func JSONFields(t reflect.Type) map[string]reflect.Type {
	idx := structFields(t)
	out := make(map[string]reflect.Type, len(idx))
	for name, index := range idx {
		out[name] = t.FieldByIndex(index).Type
	}
	return out
}

var fieldCache sync.Map // reflect.Type -> map[string][]int

// structFields maps the exact JSON names of t's exported fields (embedded
// structs flattened, as encoding/json does) to their index paths.
func structFields(t reflect.Type) map[string][]int {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string][]int)
	}
	out := map[string][]int{}
	collectFields(t, nil, out)
	fieldCache.Store(t, out)
	return out
}

func collectFields(t reflect.Type, prefix []int, out map[string][]int) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		index := append(slices.Clone(prefix), i)
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				inner := map[string][]int{}
				collectFields(ft, index, inner)
				for k, v := range inner {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = index
	}
}

// decodeLeaf decodes raw into a fresh value of dst's type and stores it:
// a leaf replaces what was below it. Objects inside it (array elements) are
// checked for unknown fields with their exact spelling.
func decodeLeaf(raw json.RawMessage, dst reflect.Value, path string) error {
	if err := checkFields(raw, dst.Type()); err != nil {
		var unk *unknownFieldError
		if errors.As(err, &unk) {
			return &unknownFieldError{path: join(path, unk.path)}
		}
		return err
	}
	fresh := reflect.New(dst.Type())
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(fresh.Interface()); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			where := path
			if typ.Field != "" {
				where = join(path, typ.Field)
			}
			return &fieldPathError{path: where, msg: fmt.Sprintf("wrong type: got JSON %s, want %s", typ.Value, typ.Type)}
		}
		return &fieldPathError{path: path, msg: strings.TrimPrefix(err.Error(), "json: ")}
	}
	dst.Set(fresh.Elem())
	return nil
}

// jsonKind names the kind of a JSON value for error messages.
func jsonKind(raw []byte) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}
