package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
)

// Encode turns a value into the bytes stored in Redis, the way every write
// of this package does:
//
//   - string and []byte are stored as they are;
//   - integers, floats and bool (and named types of them, such as
//     time.Duration) are stored as decimal text ("42", "1.5", "1"/"0"),
//     so INCRBY and Lua scripts can work on them;
//   - anything else is stored as JSON (structs, maps, slices, pointers,
//     and types with their own MarshalJSON, such as time.Time).
//
// A value that JSON cannot encode (a channel, a func, a complex number, a
// cycle) gives an error that says so. Untyped nil is refused: delete the
// key instead.
func Encode(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case bool:
		return encodeBool(x), nil
	case nil:
		return "", errors.New("cannot store nil; delete the key instead")
	case json.Marshaler:
		return encodeJSON(v)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String:
		return rv.String(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(rv.Uint(), 10), nil
	case reflect.Float32:
		return strconv.FormatFloat(rv.Float(), 'f', -1, 32), nil
	case reflect.Float64:
		return strconv.FormatFloat(rv.Float(), 'f', -1, 64), nil
	case reflect.Bool:
		return encodeBool(rv.Bool()), nil
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return string(rv.Bytes()), nil
		}
	}
	return encodeJSON(v)
}

func encodeBool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func encodeJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("cannot encode a %T: %w", v, err)
	}
	return string(b), nil
}

// Decode reads data, as returned by Get, GetCached, GetOrLoad, HGet and
// friends, into dst, a non-nil pointer. It is the inverse of Encode:
// *string and *[]byte take the bytes, numbers and bools parse the text
// (bools accept "1"/"0" and "true"/"false"), anything else decodes JSON.
func Decode(data string, dst any) error {
	switch d := dst.(type) {
	case *string:
		*d = data
		return nil
	case *[]byte:
		*d = []byte(data)
		return nil
	case *int64:
		n, err := strconv.ParseInt(data, 10, 64)
		if err == nil {
			*d = n
		}
		return numErr(err, data, dst)
	case *int:
		n, err := strconv.ParseInt(data, 10, strconv.IntSize)
		if err == nil {
			*d = int(n)
		}
		return numErr(err, data, dst)
	case *float64:
		f, err := strconv.ParseFloat(data, 64)
		if err == nil {
			*d = f
		}
		return numErr(err, data, dst)
	case *bool:
		b, err := decodeBool(data)
		if err == nil {
			*d = b
		}
		return err
	case json.Unmarshaler:
		return d.UnmarshalJSON([]byte(data))
	case nil:
		return errors.New("cannot decode into nil")
	}
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("cannot decode into a %T: want a non-nil pointer", dst)
	}
	e := rv.Elem()
	switch e.Kind() {
	case reflect.String:
		e.SetString(data)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(data, 10, e.Type().Bits())
		if err == nil {
			e.SetInt(n)
		}
		return numErr(err, data, dst)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n, err := strconv.ParseUint(data, 10, e.Type().Bits())
		if err == nil {
			e.SetUint(n)
		}
		return numErr(err, data, dst)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(data, e.Type().Bits())
		if err == nil {
			e.SetFloat(f)
		}
		return numErr(err, data, dst)
	case reflect.Bool:
		b, err := decodeBool(data)
		if err == nil {
			e.SetBool(b)
		}
		return err
	case reflect.Slice:
		if e.Type().Elem().Kind() == reflect.Uint8 {
			e.SetBytes([]byte(data))
			return nil
		}
	}
	if err := json.Unmarshal([]byte(data), dst); err != nil {
		return fmt.Errorf("cannot decode into a %T: %w", dst, err)
	}
	return nil
}

func decodeBool(s string) (bool, error) {
	switch s {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, fmt.Errorf("cannot decode %q into a bool: want 1, 0, true or false", truncate(s))
}

func numErr(err error, data string, dst any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("cannot decode %q into a %T: %w", truncate(data), dst, errors.Unwrap(err))
}

// truncate keeps error messages short when a stored value is large.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
