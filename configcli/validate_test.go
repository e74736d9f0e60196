package configcli_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// validate needs no etcd: the repository's own dev documents pass (those of
// components this test's build does not know are let through; the stock
// CLI's test checks every one), and a tree with problems lists every one of
// them.
func TestValidateOffline(t *testing.T) {
	res := cli(t, "", "validate", "--allow-unknown", "--path", filepath.Join("..", "configs", "dev"))
	require.Equal(t, 0, res.code, res.String())
	assert.Contains(t, res.out, "document(s) valid")

	dir := writeTree(t, map[string]string{
		"README.md":           "not a document",
		"global/clog.json":    `{"level":"loud"}`,
		"im-repo/db.json":     `{"poolSize":1,"tags":{"a":1}}`,
		"im-repo/notes.txt":   "skipped",
		"Bad_Service/db.json": `{}`,
		"im-logic/db.json":    `{"poolSize":2} {}`,
		"im-gw/clog.json":     `{"output":"file","file":{"path":"/var/log/gw.log"}}`,
	})
	res = cli(t, "", "validate", "--path", dir)
	require.Equal(t, 1, res.code, res.String())
	for _, want := range []string{
		filepath.Join(dir, "Bad_Service") + " (-): directory name is not a service name",
		filepath.Join(dir, "im-repo", "db.json") + ` (/config/local/im-repo/db): field "tags.a": wrong type: got JSON number, want string`,
		filepath.Join(dir, "im-logic", "db.json") + " (/config/local/im-logic/db): trailing data after the JSON document",
		filepath.Join(dir, "global", "clog.json") + ` (/config/local/global/clog): field "level": unknown level "loud"`,
		"note: skipped " + filepath.Join(dir, "README.md"),
		"note: skipped " + filepath.Join(dir, "im-repo", "notes.txt"),
	} {
		assert.Contains(t, res.err, want)
	}

	res = cli(t, "", "validate", "--path", dir, "--output", "json")
	require.Equal(t, 1, res.code)
	out := res.decode(t)
	assert.Equal(t, false, out["ok"])
	assert.EqualValues(t, 1, out["exitCode"])
	problems := out["problems"].([]any)
	require.NotEmpty(t, problems)
	assert.Equal(t, "tags.a", problems[2].(map[string]any)["field"])

	res = cli(t, "", "validate", "--path", filepath.Join(dir, "missing"))
	assert.Equal(t, 2, res.code, res.String())
}
