package config

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
)

// Secret holds a password, token or credential. It never shows its value:
// String, every fmt verb, JSON and zap all print "******" (empty stays
// empty, so a missing secret is still visible). Reveal returns the value for
// the one place that needs it.
//
// In a document a Secret may be written as "${ENV_VAR}" and is then read
// from that environment variable when the document is decoded, so secrets
// need not be stored in etcd at all.
type Secret string

const masked = "******"

var envRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String masks the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return masked
}

// GoString masks the value for %#v.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// Format masks the value for every fmt verb.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(s.String()))
}

// MarshalJSON writes the masked value, so config dumps are safe to log.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText masks the value for encoders that use encoding.TextMarshaler (zap, slog).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalJSON reads a literal value or expands "${ENV_VAR}".
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("want a string")
	}
	if m := envRef.FindStringSubmatch(v); m != nil {
		val, ok := os.LookupEnv(m[1])
		if !ok {
			return fmt.Errorf("environment variable %s is not set", m[1])
		}
		v = val
	}
	*s = Secret(v)
	return nil
}
