package configcli_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

func TestGetMasksSecrets(t *testing.T) {
	c := startCluster(t)
	res := c.op(t, "--service", "im-repo", "set", "db", `{"addr":"db:3306","password":"pw-literal","poolSize":4}`)
	require.Equal(t, 0, res.code, res.String())

	for _, args := range [][]string{
		{"--service", "im-repo", "get", "db"},
		{"get", "--key", key("im-repo", "db")},
		{"--service", "im-repo", "get", "db", "--output", "json"},
		{"--service", "im-repo", "get", "db", "--effective"},
		{"--service", "im-repo", "history", "db", "--values"},
		{"export", "--path", t.TempDir(), "--output", "json"}, // files hold it; the output does not
	} {
		res := c.op(t, args...)
		require.Equal(t, 0, res.code, "%v: %s", args, res)
		assert.NotContains(t, res.out+res.err, "pw-literal", "%v", args)
		if args[0] != "export" {
			assert.Contains(t, res.out, "******", "%v", args)
		}
	}
	res = c.op(t, "--service", "im-repo", "get", "db", "--effective")
	assert.Contains(t, res.out, `"timeout": "5s"`, "the effective config includes the defaults")
	res = c.op(t, "--service", "im-repo", "get", "db", "--reveal")
	assert.Contains(t, res.out, `"password": "pw-literal"`)
	res = c.op(t, "--service", "im-repo", "get", "db", "--effective", "--reveal")
	assert.Contains(t, res.out, `"password": "pw-literal"`)

	// A reference to the service's environment names no secret: it shows,
	// and it is not checked here when the variable is not set here.
	res = c.op(t, "--service", "im-logic", "set", "db", `{"password":"${IMINFRA_TEST_DB_PW_UNSET}"}`)
	require.Equal(t, 0, res.code, res.String())
	assert.Contains(t, res.err, "field password comes from $IMINFRA_TEST_DB_PW_UNSET in the service's environment; not checked here")
	res = c.op(t, "--service", "im-logic", "get", "db")
	assert.Contains(t, res.out, `"password": "${IMINFRA_TEST_DB_PW_UNSET}"`)
	res = c.op(t, "--service", "im-logic", "get", "db", "--effective", "--reveal")
	require.Equal(t, 0, res.code, res.String())
	assert.Contains(t, res.out, `"password": "(from $IMINFRA_TEST_DB_PW_UNSET)"`)
}

func TestEncryptedPasswordRoundTrip(t *testing.T) {
	c := startCluster(t, "im-repo")
	goodKey, err := config.NewSecretKey()
	require.NoError(t, err)
	otherKey, err := config.NewSecretKey()
	require.NoError(t, err)
	// The CLI and the running module read the key from the process
	// environment, as they do in production.
	t.Setenv(config.EnvConfigKey, goodKey)
	v, _ := c.serviceValue(t, "im-repo")

	res := cli(t, "db-pass-123\n", "encrypt")
	require.Equal(t, 0, res.code, res.String())
	enc := strings.TrimSpace(res.out)
	require.True(t, strings.HasPrefix(enc, "enc:v1:"), enc)
	assert.NotContains(t, res.out+res.err, "db-pass-123")

	doc := `{"poolSize":3,"password":"` + enc + `"}`
	res = c.op(t, "--service", "im-repo", "set", "db", doc)
	require.Equal(t, 0, res.code, res.String())
	eventually(t, 10*time.Second, func() bool { return v.Get().Password.Reveal() == "db-pass-123" },
		"the running module decrypts the password")
	assert.Equal(t, doc, c.snapshot(t, key("im-repo", "db"))[key("im-repo", "db")].value, "etcd holds only ciphertext")
	res = c.op(t, "--service", "im-repo", "get", "db", "--reveal")
	assert.Contains(t, res.out, enc, "--reveal shows what is stored: still encrypted")
	res = c.op(t, "--service", "im-repo", "get", "db")
	assert.NotContains(t, res.out, "enc:v1:", "masked")

	// A wrong key: the CLI refuses the document, naming the field.
	t.Setenv(config.EnvConfigKey, otherKey)
	res = c.op(t, "--service", "im-repo", "set", "db", `{"poolSize":4,"password":"`+enc+`"}`)
	require.Equal(t, 1, res.code, res.String())
	assert.Contains(t, res.err, `field "password": encrypted value does not decrypt with IMINFRA_CONFIG_KEY (wrong key, or the value was altered)`)
	for _, secret := range []string{"db-pass-123", goodKey, otherKey} {
		assert.NotContains(t, res.out+res.err, secret)
	}
	// ... and so does a running module whose key is wrong: a CONFIG error
	// naming the field, the last valid config staying in force.
	_, err = c.root.Put(ctx(t, 5*time.Second), key("im-repo", "db"), `{"poolSize":5,"password":"`+enc+`"}`)
	require.NoError(t, err)
	eventually(t, 10*time.Second, func() bool { return v.Status().Refusal != nil }, "the module refuses the document")
	refusal := v.Status().Refusal.Err
	var ie *lifecycle.InfraError
	require.True(t, errors.As(refusal, &ie))
	assert.Equal(t, lifecycle.TypeConfig, ie.Type)
	assert.Equal(t, "password", ie.Field)
	assert.Contains(t, refusal.Error(), "does not decrypt")
	for _, secret := range []string{"db-pass-123", goodKey, otherKey} {
		assert.NotContains(t, refusal.Error(), secret)
	}
	assert.Equal(t, 3, v.Get().PoolSize, "the last valid config stays")
	assert.Equal(t, "db-pass-123", v.Get().Password.Reveal())

	// No key at all where the CLI runs: the value is written unchecked,
	// with a note, and the module names what is missing.
	t.Setenv(config.EnvConfigKey, "")
	res = c.op(t, "--service", "im-repo", "set", "db", `{"poolSize":6,"password":"`+enc+`"}`)
	require.Equal(t, 0, res.code, res.String())
	assert.Contains(t, res.err, "field password is encrypted and IMINFRA_CONFIG_KEY is not set here: checked without decrypting")
	eventually(t, 10*time.Second, func() bool {
		r := v.Status().Refusal
		return r != nil && strings.Contains(r.Err.Error(), "IMINFRA_CONFIG_KEY is not set")
	}, "the module names the missing key")
	res = cli(t, "x", "encrypt")
	assert.Equal(t, 2, res.code, res.String())
	assert.Contains(t, res.err, "IMINFRA_CONFIG_KEY is not set")
}
