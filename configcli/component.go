package configcli

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/gochat/im-infra/config"
)

// Component is a config component the CLI knows: the name its documents are
// stored under (/config/{env}/{service}/{name}) and the component's own
// config type, which checks documents exactly as the running service does
// (config.Parse: defaults, then the global layer, then the service's, strict
// decoding, then Validate) and says which fields are secrets.
type Component struct {
	name     string
	typ      reflect.Type
	parse    func(layers []config.Layer) (any, error)
	defaults func() any
}

// ComponentOf registers config type T under name, the component name its
// module passes to config.ProvideValue:
//
//	configcli.ComponentOf[clog.Config]("clog")
func ComponentOf[T config.Schema[T]](name string) Component {
	return Component{
		name:     name,
		typ:      reflect.TypeFor[T](),
		parse:    func(layers []config.Layer) (any, error) { return config.Parse[T](name, layers...) },
		defaults: func() any { var zero T; return zero.Defaults() },
	}
}

// Name is the component's name.
func (c Component) Name() string { return c.name }

// nameRe is what a component or service name may look like: a DNS label,
// so it is one path element of a key.
var nameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// registry is the set of components a CLI was built with.
type registry struct {
	byName map[string]Component
}

func newRegistry(components []Component) (registry, error) {
	r := registry{byName: map[string]Component{}}
	for _, c := range components {
		if c.parse == nil {
			return r, fmt.Errorf("component %q was not made with configcli.ComponentOf", c.name)
		}
		if !nameRe.MatchString(c.name) || c.name == config.GlobalService {
			return r, fmt.Errorf("component name %q is not a DNS label (or is the reserved %q)", c.name, config.GlobalService)
		}
		if _, dup := r.byName[c.name]; dup {
			return r, fmt.Errorf("component %q is registered twice", c.name)
		}
		r.byName[c.name] = c
	}
	return r, nil
}

func (r registry) lookup(name string) (Component, bool) {
	c, ok := r.byName[name]
	return c, ok
}

// names lists the known components, sorted.
func (r registry) names() []string {
	out := make([]string, 0, len(r.byName))
	for n := range r.byName {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

var (
	secretType      = reflect.TypeFor[config.Secret]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// walkSecrets walks a decoded JSON document (map[string]any, []any, ...)
// alongside t and replaces every string that sits in a config.Secret field
// with fn(path, value). Parts of the document that t does not describe are
// left alone: strict decoding reports them.
func walkSecrets(doc any, t reflect.Type, path string, fn func(path, value string) any) any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == secretType {
		if s, ok := doc.(string); ok {
			return fn(path, s)
		}
		return doc
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return doc
	}
	switch t.Kind() {
	case reflect.Struct:
		if obj, ok := doc.(map[string]any); ok {
			fields := config.JSONFields(t)
			for k, v := range obj {
				if ft, ok := fields[k]; ok {
					obj[k] = walkSecrets(v, ft, joinPath(path, k), fn)
				}
			}
		}
	case reflect.Map:
		if obj, ok := doc.(map[string]any); ok && t.Key().Kind() == reflect.String {
			for k, v := range obj {
				obj[k] = walkSecrets(v, t.Elem(), joinPath(path, k), fn)
			}
		}
	case reflect.Slice, reflect.Array:
		if arr, ok := doc.([]any); ok {
			for i, v := range arr {
				arr[i] = walkSecrets(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i), fn)
			}
		}
	}
	return doc
}

// secretValues collects the values of every non-empty config.Secret in v by
// the same paths walkSecrets uses.
func secretValues(v reflect.Value, path string, out map[string]string) {
	if !v.IsValid() {
		return
	}
	t := v.Type()
	if t == secretType {
		if s := v.String(); s != "" {
			out[path] = s
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			secretValues(v.Elem(), path, out)
		}
	case reflect.Struct:
		if reflect.PointerTo(t).Implements(unmarshalerType) {
			return
		}
		for name := range config.JSONFields(t) {
			if f, err := fieldByJSONName(v, name); err == nil {
				secretValues(f, joinPath(path, name), out)
			}
		}
	case reflect.Map:
		if t.Key().Kind() == reflect.String {
			iter := v.MapRange()
			for iter.Next() {
				secretValues(iter.Value(), joinPath(path, iter.Key().String()), out)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			secretValues(v.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

// fieldByJSONName finds the field of struct v named name in JSON, looking
// through embedded structs; it fails on a nil embedded pointer.
func fieldByJSONName(v reflect.Value, name string) (reflect.Value, error) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		n, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && n == "" {
			inner := v.Field(i)
			if inner.Kind() == reflect.Pointer {
				if inner.IsNil() {
					continue
				}
				inner = inner.Elem()
			}
			if inner.Kind() == reflect.Struct {
				if fv, err := fieldByJSONName(inner, name); err == nil {
					return fv, nil
				}
				continue
			}
		}
		if n == "" {
			n = f.Name
		}
		if n == name && f.IsExported() {
			return v.Field(i), nil
		}
	}
	return reflect.Value{}, fmt.Errorf("no field %q", name)
}

// plainJSON encodes a typed config as JSON with its secrets in clear (a
// Secret's own MarshalJSON masks them), for init's defaults and for
// `get --effective --reveal`.
func plainJSON(v any, reveal bool) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || !reveal {
		return b, err
	}
	secrets := map[string]string{}
	secretValues(reflect.ValueOf(v), "", secrets)
	if len(secrets) == 0 {
		return b, nil
	}
	doc, err := decodeJSON(b)
	if err != nil {
		return nil, err
	}
	doc = walkSecrets(doc, reflect.TypeOf(v), "", func(path, value string) any {
		if s, ok := secrets[path]; ok {
			return s
		}
		return value
	})
	return json.Marshal(doc)
}

func joinPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
