package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// maxShownValue bounds how much of a changed value a log line shows.
const maxShownValue = 80

var secretType = reflect.TypeFor[Secret]()

// diffFields lists the fields that differ between old and new as
// `path: old → new`, by JSON path, in a stable order. Secrets show only that
// they changed. Structs and string-keyed maps are compared field by field;
// anything else (slices, durations, scalars) as a whole.
func diffFields(old, new any) []string {
	var out []string
	diffValues(reflect.ValueOf(old), reflect.ValueOf(new), "", &out)
	return out
}

func diffValues(a, b reflect.Value, path string, out *[]string) {
	if !a.IsValid() || !b.IsValid() {
		if a.IsValid() != b.IsValid() {
			*out = append(*out, describeChange(path, a, b))
		}
		return
	}
	t := a.Type()
	switch {
	case t == secretType:
		if a.String() != b.String() {
			*out = append(*out, nameOf(path)+": changed (secret)")
		}
		return
	case t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(unmarshalerType):
		fields := structFields(t)
		for _, name := range slices.Sorted(maps.Keys(fields)) {
			idx := fields[name]
			fa, okA := fieldIfReachable(a, idx)
			fb, okB := fieldIfReachable(b, idx)
			if !okA || !okB {
				if okA != okB {
					*out = append(*out, describeChange(join(path, name), fa, fb))
				}
				continue
			}
			diffValues(fa, fb, join(path, name), out)
		}
		return
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				*out = append(*out, describeChange(path, a, b))
			}
			return
		}
		diffValues(a.Elem(), b.Elem(), path, out)
		return
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		keys := map[string]bool{}
		for _, m := range []reflect.Value{a, b} {
			for _, k := range m.MapKeys() {
				keys[k.String()] = true
			}
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			kv := reflect.ValueOf(k).Convert(t.Key())
			diffValues(a.MapIndex(kv), b.MapIndex(kv), join(path, k), out)
		}
		return
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*out = append(*out, describeChange(path, a, b))
	}
}

func fieldIfReachable(v reflect.Value, idx []int) (reflect.Value, bool) {
	f, err := v.FieldByIndexErr(idx)
	return f, err == nil
}

func nameOf(path string) string {
	if path == "" {
		return "(whole config)"
	}
	return path
}

func describeChange(path string, a, b reflect.Value) string {
	return fmt.Sprintf("%s: %s → %s", nameOf(path), showValue(a), showValue(b))
}

// showValue prints a value as JSON, where Secret is masked, shortened.
func showValue(v reflect.Value) string {
	if !v.IsValid() {
		return "(unset)"
	}
	b, err := json.Marshal(v.Interface())
	s := string(b)
	if err != nil {
		s = fmt.Sprintf("%v", v.Interface())
	}
	if len(s) > maxShownValue {
		s = strings.ToValidUTF8(s[:maxShownValue], "") + "…"
	}
	return s
}
