package configcli

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/gochat/im-infra/config"
)

// maskedValue replaces a secret in every output.
const maskedValue = "******"

// secretName is how a field of a component this build does not know is
// recognised as a secret: by its name.
var secretName = regexp.MustCompile(`(?i)(pass(word|wd|phrase)?|secret|token|credential|private.?key|api.?key|dsn)`)

// maskDocument decodes a stored document and masks its secrets: every
// string in a config.Secret field of comp's type (for a component the
// build does not know, every string whose field name looks like a secret),
// and every "enc:" string anywhere. "${VAR}" references stay visible: they
// name where a secret comes from, not the secret. comp may be nil.
func maskDocument(data []byte, comp *Component) (any, error) {
	doc, err := decodeJSON(data)
	if err != nil {
		return nil, err
	}
	maskSecret := func(_, v string) any {
		if v == "" || isEnvReference(v) {
			return v
		}
		return maskedValue
	}
	if comp != nil {
		doc = walkSecrets(doc, comp.typ, "", maskSecret)
	} else {
		doc = maskByName(doc, false)
	}
	return maskEncrypted(doc), nil
}

func isEnvReference(s string) bool {
	_, ok := config.EnvReference(s)
	return ok
}

// maskByName masks strings under keys that look like secrets.
func maskByName(doc any, secret bool) any {
	switch v := doc.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = maskByName(e, secret || secretName.MatchString(k))
		}
	case []any:
		for i, e := range v {
			v[i] = maskByName(e, secret)
		}
	case string:
		if secret && v != "" && !isEnvReference(v) {
			return maskedValue
		}
	}
	return doc
}

// maskEncrypted masks every "enc:" string in doc.
func maskEncrypted(doc any) any {
	switch v := doc.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = maskEncrypted(e)
		}
	case []any:
		for i, e := range v {
			v[i] = maskEncrypted(e)
		}
	case string:
		if strings.HasPrefix(v, config.EncryptedPrefix) {
			return maskedValue
		}
	}
	return doc
}

// showDocument renders a stored document for people: indented JSON, secrets
// masked unless reveal. A value that is not JSON is described, not shown,
// unless reveal (it may be anything).
func showDocument(data []byte, comp *Component, reveal bool) (any, string) {
	if reveal {
		doc, err := decodeJSON(data)
		if err != nil {
			return string(data), string(data)
		}
		return doc, indentJSON(doc)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, "(empty document)"
	}
	doc, err := maskDocument(data, comp)
	if err != nil {
		s := fmt.Sprintf("(not valid JSON, %d bytes; --reveal shows it)", len(data))
		return s, s
	}
	return doc, indentJSON(doc)
}

func indentJSON(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// fieldChange is one difference between two documents, by JSON path.
type fieldChange struct {
	Path   string `json:"path"`
	Old    any    `json:"old,omitempty"`
	New    any    `json:"new,omitempty"`
	Secret bool   `json:"secret,omitempty"` // a masked value changed
}

func (c fieldChange) String() string {
	path := c.Path
	if path == "" {
		path = "(document)"
	}
	switch {
	case c.Secret:
		return path + ": changed (secret)"
	case c.Old == nil:
		return "+ " + path + ": " + compact(c.New)
	case c.New == nil:
		return "- " + path + ": " + compact(c.Old)
	}
	return path + ": " + compact(c.Old) + " → " + compact(c.New)
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// diffDocuments lists the differences between two stored documents (nil:
// absent), field by field: objects are compared key by key, anything else
// as a whole. Secrets are masked as in maskDocument; a change hidden by the
// mask is reported as a secret change.
func diffDocuments(old, new []byte, comp *Component) []fieldChange {
	rawOld, rawNew := leaves(old, nil, true), leaves(new, nil, true)
	shownOld, shownNew := leaves(old, comp, false), leaves(new, comp, false)
	paths := map[string]bool{}
	for _, m := range []map[string]any{rawOld, rawNew} {
		for p := range m {
			paths[p] = true
		}
	}
	var out []fieldChange
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		ro, inOld := rawOld[p]
		rn, inNew := rawNew[p]
		if inOld && inNew && reflect.DeepEqual(ro, rn) {
			continue
		}
		c := fieldChange{Path: p, Old: shownOld[p], New: shownNew[p]}
		if inOld && inNew && reflect.DeepEqual(c.Old, c.New) {
			c = fieldChange{Path: p, Secret: true}
		}
		out = append(out, c)
	}
	return out
}

// leaves flattens a document into JSON path -> value: objects key by key,
// anything else (arrays, scalars) whole. Masked unless raw. A document that
// is not JSON is one leaf at "" describing it.
func leaves(data []byte, comp *Component, raw bool) map[string]any {
	out := map[string]any{}
	if data == nil || len(strings.TrimSpace(string(data))) == 0 {
		return out
	}
	var doc any
	var err error
	if raw {
		doc, err = decodeJSON(data)
	} else {
		doc, err = maskDocument(data, comp)
	}
	if err != nil {
		if raw {
			out[""] = string(data)
		} else {
			out[""] = fmt.Sprintf("(not valid JSON, %d bytes)", len(data))
		}
		return out
	}
	flatten(doc, "", out)
	return out
}

func flatten(doc any, path string, out map[string]any) {
	obj, ok := doc.(map[string]any)
	if !ok || (len(obj) == 0 && path != "") {
		if doc != nil || path != "" {
			out[path] = doc
		}
		return
	}
	for k, v := range obj {
		flatten(v, joinPath(path, k), out)
	}
}
