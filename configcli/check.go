package configcli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// change is one key to write (Data) or delete (Delete).
type change struct {
	Key    string
	Data   []byte
	Delete bool
	Source string // the local file Data came from, if any
}

// problem is one thing wrong with a set of documents.
type problem struct {
	File      string `json:"file,omitempty"` // the local file(s), when the documents came from files
	Key       string `json:"key"`            // the etcd key(s)
	Component string `json:"component,omitempty"`
	Field     string `json:"field,omitempty"`
	Message   string `json:"message"`
}

func (p problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteString(" (")
		b.WriteString(p.Key)
		b.WriteString(")")
	} else {
		b.WriteString(p.Key)
	}
	if p.Field != "" {
		fmt.Fprintf(&b, `: field "%s"`, p.Field)
	}
	b.WriteString(": ")
	b.WriteString(p.Message)
	return b.String()
}

// checkResult is what check found.
type checkResult struct {
	problems []problem
	notes    []string // things not checked here (env references, encrypted values without a key)
	used     []string // existing keys whose documents took part in a check
}

// check validates a set of changes over the documents before them, the way
// the running services will see the result: each changed document is
// decoded strictly with its component's type, then, for every service
// whose config the change affects, the whole set (defaults, global layer,
// service layer) is merged and validated. Changing a global document
// affects every service with a document of that component, and those
// without one (global alone over defaults). Every problem is reported,
// each with its file or key and field.
func (r *runner) check(env string, before map[string]docState, changes []change, progress func(done, total int)) checkResult {
	var res checkResult
	after := maps.Clone(before)
	changed := map[string]bool{}
	for _, ch := range changes {
		changed[ch.Key] = true
		if ch.Delete {
			delete(after, ch.Key)
		} else {
			after[ch.Key] = docState{data: ch.Data, source: ch.Source}
		}
	}
	noted := map[string]bool{}
	note := func(s string) {
		if !noted[s] {
			noted[s] = true
			res.notes = append(res.notes, s)
		}
	}
	addProblem := func(p problem) { res.problems = append(res.problems, p) }

	// Each changed document on its own: JSON, unknown fields, types.
	decoded := map[string]error{} // key -> decode error (nil: decodes)
	touched := map[string]bool{}  // components whose services must be re-checked
	for i, ch := range changes {
		if progress != nil {
			progress(i+1, len(changes))
		}
		kEnv, _, name, ok := parseConfigKey(ch.Key)
		if !ok || kEnv != env {
			addProblem(problem{File: ch.Source, Key: ch.Key, Message: fmt.Sprintf("not a config key of env %s (/config/%s/{service}/{component})", env, env)})
			continue
		}
		comp, known := r.reg.lookup(name)
		if !known {
			if !r.g.allowUnknown {
				addProblem(problem{File: ch.Source, Key: ch.Key, Component: name,
					Message: fmt.Sprintf("unknown component %q: this build knows %s (pass --allow-unknown to write it unchecked)", name, strings.Join(r.reg.names(), ", "))})
			} else if !ch.Delete {
				if msg := notObject(ch.Data); msg != "" {
					addProblem(problem{File: ch.Source, Key: ch.Key, Component: name, Message: msg})
				}
			}
			continue
		}
		touched[name] = true
		if ch.Delete {
			continue
		}
		err := decodeOnly(comp, ch.Key, prepare(comp, ch.Data, note))
		decoded[ch.Key] = err
		if err != nil {
			field, msg := describe(err)
			addProblem(problem{File: ch.Source, Key: ch.Key, Component: name, Field: field, Message: msg})
		}
	}

	// Every affected service's whole set of layers.
	used := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(touched)) {
		comp, _ := r.reg.lookup(name)
		global := config.GlobalKey(env, name)
		var targets []string // service names; "" is the global layer alone
		if changed[global] {
			targets = append(targets, "")
		}
		for _, k := range slices.Sorted(maps.Keys(unionKeys(after, changed))) {
			e, svc, c, ok := parseConfigKey(k)
			if !ok || e != env || c != name || svc == config.GlobalService {
				continue
			}
			if changed[global] || changed[k] {
				targets = append(targets, svc)
			}
		}
		for _, svc := range targets {
			keys := []string{global}
			if svc != "" {
				keys = append(keys, config.Key(env, svc, name))
			}
			var layers []config.Layer
			var files []string
			broken := false
			for _, k := range keys {
				d, ok := after[k]
				if !ok {
					continue
				}
				if !changed[k] {
					used[k] = true
				}
				if d.source != "" {
					files = append(files, d.source)
				}
				data := prepare(comp, d.data, note)
				err, seen := decoded[k]
				if !seen {
					// A document already in etcd: checked once, reported
					// once, since it would make this set fail too.
					err = decodeOnly(comp, k, data)
					decoded[k] = err
					if err != nil {
						field, msg := describe(err)
						addProblem(problem{Key: k, Component: name, Field: field, Message: "the document already in etcd is invalid: " + msg})
					}
				}
				if err != nil {
					broken = true
				}
				layers = append(layers, config.Layer{Key: k, Data: data})
			}
			if broken {
				continue
			}
			if _, err := comp.parse(layers); err != nil {
				field, msg := describe(err)
				keyDesc := keys[len(keys)-1]
				if svc != "" && len(layers) > 1 {
					keyDesc = keys[1] + " over " + keys[0]
				}
				if svc == "" {
					if _, defErr := comp.parse(nil); defErr != nil {
						// The defaults alone are no valid config either (a
						// component that needs an address): each service
						// must give its own, and the global layer cannot be
						// blamed for what it leaves out.
						note(fmt.Sprintf("%s: the global layer alone is not a valid config (field %q: %s); every service that runs %s needs a document of its own", name, field, msg, name))
						continue
					}
					msg += " (services with no document of their own run on the global layer alone)"
				}
				addProblem(problem{File: strings.Join(files, " + "), Key: keyDesc, Component: name, Field: field, Message: msg})
			}
		}
	}
	res.used = slices.Sorted(maps.Keys(used))
	return res
}

func unionKeys(after map[string]docState, changed map[string]bool) map[string]bool {
	out := make(map[string]bool, len(after)+len(changed))
	for k := range after {
		out[k] = true
	}
	for k := range changed {
		out[k] = true
	}
	return out
}

// decodeOnly decodes one document with comp's type and reports only
// decoding errors (malformed JSON, unknown fields, wrong types): whether the
// config is valid depends on the other layers.
func decodeOnly(comp Component, key string, data []byte) error {
	_, err := comp.parse([]config.Layer{{Key: key, Data: data}})
	var ie *lifecycle.InfraError
	if errors.As(err, &ie) && ie.Op == "decode" {
		return err
	}
	return nil
}

// describe splits a config error into the field and a message without the
// "key ...:" prefix Parse adds (the problem names the key itself).
func describe(err error) (field, msg string) {
	var ie *lifecycle.InfraError
	if !errors.As(err, &ie) {
		return "", err.Error()
	}
	msg = ie.Message
	if rest, ok := strings.CutPrefix(msg, "key "); ok {
		if _, after, found := strings.Cut(rest, ": "); found {
			msg = after
		}
	}
	if ie.Cause != nil {
		msg += ": " + ie.Cause.Error()
	}
	return ie.Field, msg
}

// notObject says why data is not a document (a JSON object, or empty or
// null, which contribute nothing), or "".
func notObject(data []byte) string {
	t := bytes.TrimSpace(data)
	if len(t) == 0 || string(t) == "null" {
		return ""
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(t, &obj); err != nil {
		if !json.Valid(t) {
			return "malformed JSON"
		}
		return "not a JSON object"
	}
	return ""
}

// prepare stands in for what only the service's own environment can supply,
// so a document is checked here as it will be there:
//   - a secret "${VAR}" whose variable is not set here is replaced by a
//     placeholder (the service reads it from its environment);
//   - an "enc:" secret, when IMINFRA_CONFIG_KEY is not set here, likewise.
//
// With the key set, encrypted values are decrypted for real, so a value
// made with another key is caught before it is written. Each stand-in is
// noted.
func prepare(comp Component, data []byte, note func(string)) []byte {
	doc, err := decodeJSON(data)
	if err != nil {
		return data
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return data
	}
	replaced := false
	walkSecrets(obj, comp.typ, "", func(path, v string) any {
		if name, ok := config.EnvReference(v); ok {
			if _, set := os.LookupEnv(name); !set {
				note(fmt.Sprintf("%s: field %s comes from $%s in the service's environment; not checked here", comp.name, path, name))
				replaced = true
				return "(from $" + name + ")"
			}
			return v
		}
		if strings.HasPrefix(v, config.EncryptedPrefix) && os.Getenv(config.EnvConfigKey) == "" {
			note(fmt.Sprintf("%s: field %s is encrypted and %s is not set here: checked without decrypting", comp.name, path, config.EnvConfigKey))
			replaced = true
			return "(encrypted; " + config.EnvConfigKey + " is not set here)"
		}
		return v
	})
	if !replaced {
		return data
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return data
	}
	return out
}

// decodeJSON decodes any JSON value, keeping numbers exact.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON document")
	}
	return v, nil
}
