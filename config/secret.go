package config

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Secret holds a password, token or credential. It never shows its value:
// String, every fmt verb, JSON and zap all print "******" (empty stays
// empty, so a missing secret is still visible). Reveal returns the value for
// the one place that needs it.
//
// In a document a Secret may be written three ways:
//
//   - a literal: "hunter2";
//   - "${ENV_VAR}": read from that environment variable when the document
//     is decoded, so the secret need not be stored in etcd at all;
//   - "enc:v1:<base64>": encrypted with AES-256-GCM (EncryptSecret,
//     `config-cli encrypt`) and decrypted when the document is decoded with
//     the key in IMINFRA_CONFIG_KEY, so etcd and the snapshot file hold only
//     ciphertext.
//
// An "${ENV_VAR}" whose value is itself an "enc:" value is decrypted too. A
// missing or wrong key fails the decode with an error that names neither
// the key nor the plaintext; Parse turns it into a CONFIG error naming the
// field.
type Secret string

const masked = "******"

var envRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

// EnvConfigKey names the environment variable that holds the key of
// encrypted secrets: the standard base64 encoding of 32 random bytes
// (NewSecretKey makes one). It may list several keys separated by commas:
// EncryptSecret uses the first, decryption tries each in turn, so a key is
// rotated by putting the new one first, re-encrypting, then dropping the old.
const EnvConfigKey = "IMINFRA_CONFIG_KEY"

// EncryptedPrefix starts every encrypted secret ("enc:v1:...").
const EncryptedPrefix = "enc:"

// encV1 is the only format so far: AES-256-GCM, a random 12-byte nonce
// followed by the ciphertext and tag, in standard base64.
const encV1 = EncryptedPrefix + "v1:"

// encAAD binds a ciphertext to its format: a value cannot be moved to
// another use of the same key that authenticates different data.
var encAAD = []byte("im-infra config secret v1")

const secretKeyLen = 32

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

// UnmarshalJSON reads a literal value, expands "${ENV_VAR}" and decrypts an
// "enc:" value with the key in IMINFRA_CONFIG_KEY.
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("want a string")
	}
	if name, ok := EnvReference(v); ok {
		val, set := os.LookupEnv(name)
		if !set {
			return fmt.Errorf("environment variable %s is not set", name)
		}
		v = val
	}
	if strings.HasPrefix(v, EncryptedPrefix) {
		plain, err := DecryptSecret(v, os.Getenv(EnvConfigKey))
		if err != nil {
			return err
		}
		v = plain
	}
	*s = Secret(v)
	return nil
}

// EnvReference reports whether s is a "${ENV_VAR}" reference, as a Secret
// reads it, and names the variable.
func EnvReference(s string) (name string, ok bool) {
	m := envRef.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// NewSecretKey returns a fresh random key for EnvConfigKey.
func NewSecretKey() (string, error) {
	k := make([]byte, secretKeyLen)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("config: generate secret key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// EncryptSecret encrypts plaintext with the first key of keys (the text of
// EnvConfigKey) and returns an "enc:v1:" value for a Secret field. Each call
// uses a fresh nonce, so the same plaintext encrypts differently every time.
func EncryptSecret(plaintext, keys string) (string, error) {
	all, err := parseSecretKeys(keys)
	if err != nil {
		return "", err
	}
	aead, err := newAEAD(all[0])
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("config: encrypt: %w", err)
	}
	sealed := aead.Seal(nonce, nonce, []byte(plaintext), encAAD)
	return encV1 + base64.StdEncoding.EncodeToString(sealed), nil
}

// DecryptSecret decrypts an "enc:" value with keys (the text of
// EnvConfigKey), trying each key in turn. Its errors name neither the key
// nor the plaintext.
func DecryptSecret(value, keys string) (string, error) {
	rest, ok := strings.CutPrefix(value, encV1)
	if !ok {
		version, _, _ := strings.Cut(strings.TrimPrefix(value, EncryptedPrefix), ":")
		if len(version) > 8 {
			version = version[:8] + "…"
		}
		return "", fmt.Errorf("encrypted value has unsupported format %q: want %s<base64>", EncryptedPrefix+version, encV1)
	}
	sealed, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return "", errors.New("encrypted value is malformed: the part after " + encV1 + " is not standard base64")
	}
	if strings.TrimSpace(keys) == "" {
		return "", fmt.Errorf("value is encrypted but %s is not set: set it to the key the value was encrypted with", EnvConfigKey)
	}
	all, err := parseSecretKeys(keys)
	if err != nil {
		return "", err
	}
	for _, k := range all {
		aead, err := newAEAD(k)
		if err != nil {
			return "", err
		}
		if len(sealed) < aead.NonceSize()+aead.Overhead() {
			return "", errors.New("encrypted value is malformed: too short")
		}
		plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], encAAD)
		if err == nil {
			return string(plain), nil
		}
	}
	return "", fmt.Errorf("encrypted value does not decrypt with %s (wrong key, or the value was altered)", EnvConfigKey)
}

// parseSecretKeys decodes the comma-separated keys of EnvConfigKey. Its
// errors say which key is unusable by position, never by content.
func parseSecretKeys(keys string) ([][]byte, error) {
	var out [][]byte
	for i, k := range strings.Split(keys, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(b) != secretKeyLen {
			return nil, fmt.Errorf("%s key #%d is not a key: want the standard base64 encoding of %d random bytes", EnvConfigKey, i+1, secretKeyLen)
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s is not set: set it to the standard base64 encoding of %d random bytes", EnvConfigKey, secretKeyLen)
	}
	return out, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("config: secret key: %w", err)
	}
	return cipher.NewGCM(block)
}
