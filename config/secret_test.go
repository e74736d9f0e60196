package config_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

func newKey(t *testing.T) string {
	t.Helper()
	k, err := config.NewSecretKey()
	require.NoError(t, err)
	return k
}

func TestNewSecretKey(t *testing.T) {
	k := newKey(t)
	raw, err := base64.StdEncoding.DecodeString(k)
	require.NoError(t, err)
	assert.Len(t, raw, 32)
	assert.NotEqual(t, k, newKey(t), "keys are random")
}

func TestEncryptedSecretRoundTrip(t *testing.T) {
	key := newKey(t)
	enc, err := config.EncryptSecret("s3cret-pw", key)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(enc, "enc:v1:"), enc)
	assert.NotContains(t, enc, "s3cret-pw")
	again, err := config.EncryptSecret("s3cret-pw", key)
	require.NoError(t, err)
	assert.NotEqual(t, enc, again, "a fresh nonce each time")

	t.Setenv(config.EnvConfigKey, key)
	cfg, err := config.Parse[testConfig]("cache", config.Layer{Key: serviceKey, Data: []byte(`{"password":"` + enc + `"}`)})
	require.NoError(t, err)
	assert.Equal(t, "s3cret-pw", cfg.Password.Reveal())
	assert.Equal(t, "******", cfg.Password.String())
}

func TestEncryptedSecretFromEnvVar(t *testing.T) {
	key := newKey(t)
	enc, err := config.EncryptSecret("via-env", key)
	require.NoError(t, err)
	t.Setenv(config.EnvConfigKey, key)
	t.Setenv("IMINFRA_TEST_ENC_SECRET", enc)
	cfg, err := config.Parse[testConfig]("cache", config.Layer{Key: serviceKey, Data: []byte(`{"password":"${IMINFRA_TEST_ENC_SECRET}"}`)})
	require.NoError(t, err)
	assert.Equal(t, "via-env", cfg.Password.Reveal())
}

// A key is rotated by listing the new key first: old values still decrypt,
// new ones are made with the new key only.
func TestEncryptedSecretKeyRotation(t *testing.T) {
	oldKey, newK := newKey(t), newKey(t)
	oldEnc, err := config.EncryptSecret("old", oldKey)
	require.NoError(t, err)
	newEnc, err := config.EncryptSecret("new", newK+","+oldKey)
	require.NoError(t, err)

	for _, c := range []struct{ enc, want string }{{oldEnc, "old"}, {newEnc, "new"}} {
		got, err := config.DecryptSecret(c.enc, newK+", "+oldKey)
		require.NoError(t, err)
		assert.Equal(t, c.want, got)
	}
	_, err = config.DecryptSecret(newEnc, oldKey)
	require.Error(t, err, "the new value was encrypted with the new key only")
}

func TestEncryptedSecretErrors(t *testing.T) {
	key := newKey(t)
	enc, err := config.EncryptSecret("plain-text-pw", key)
	require.NoError(t, err)
	body := strings.TrimPrefix(enc, "enc:v1:")
	raw, _ := base64.StdEncoding.DecodeString(body)
	raw[len(raw)-1] ^= 1
	tampered := "enc:v1:" + base64.StdEncoding.EncodeToString(raw)

	tests := []struct {
		name, value, key, want string
	}{
		{"missing key", enc, "", "IMINFRA_CONFIG_KEY is not set"},
		{"wrong key", enc, newKey(t), "does not decrypt with IMINFRA_CONFIG_KEY"},
		{"key not base64", enc, "not a key!", "key #1 is not a key"},
		{"key too short", enc, base64.StdEncoding.EncodeToString([]byte("short")), "key #1 is not a key"},
		{"altered value", tampered, key, "does not decrypt"},
		{"not base64", "enc:v1:%%%", key, "not standard base64"},
		{"too short", "enc:v1:AAAA", key, "too short"},
		{"unknown version", "enc:v9:AAAA", key, `unsupported format "enc:v9"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(config.EnvConfigKey, tc.key)
			_, err := config.Parse[testConfig]("cache", config.Layer{Key: serviceKey, Data: []byte(`{"password":"` + tc.value + `"}`)})
			require.Error(t, err)
			var ie *lifecycle.InfraError
			require.True(t, errors.As(err, &ie))
			assert.Equal(t, lifecycle.TypeConfig, ie.Type)
			assert.Equal(t, "password", ie.Field, "the error names the field")
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), serviceKey, "and the key")
			assert.NotContains(t, err.Error(), "plain-text-pw")
			if tc.key != "" {
				assert.NotContains(t, err.Error(), tc.key, "the key never shows")
			}
		})
	}
}

func TestEncryptSecretRefusesBadKey(t *testing.T) {
	for _, k := range []string{"", " , ", "c2hvcnQ="} {
		_, err := config.EncryptSecret("x", k)
		require.Error(t, err, k)
		assert.Contains(t, err.Error(), config.EnvConfigKey)
	}
}

func TestEnvReference(t *testing.T) {
	for s, want := range map[string]string{"${DB_PW}": "DB_PW", "${_x1}": "_x1", "$DB_PW": "", "${DB-PW}": "", "pre${A}": "", "${A}post": ""} {
		name, ok := config.EnvReference(s)
		assert.Equal(t, want != "", ok, s)
		assert.Equal(t, want, name, s)
	}
}
