package configcli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
)

func key(service, component string) string { return config.Key(testEnv, service, component) }

// goodTree is a valid set of documents for env test.
var goodTree = map[string]string{
	"global/clog.json":    `{"level":"info","format":"json"}`,
	"im-repo/clog.json":   `{"levels":{"repo":"debug"}}`,
	"im-repo/db.json":     `{"addr":"db-1:3306","password":"pw-repo","poolSize":20}`,
	"im-logic/db.json":    `{"addr":"db-2:3306","poolSize":5}`,
	"im-logic/admin.json": `{"drainDelay":"2s"}`,
}

func treeKeys() []string {
	return []string{key("global", "clog"), key("im-repo", "clog"), key("im-repo", "db"), key("im-logic", "db"),
		key("im-logic", "admin"), key("im-logic", "clog"), key("im-repo", "admin"), key("global", "cache")}
}

func TestImport(t *testing.T) {
	c := startCluster(t)

	t.Run("a good import is one revision", func(t *testing.T) {
		dir := writeTree(t, goodTree)
		res := c.op(t, "import", "--path", dir, "--output", "json")
		require.Equal(t, 0, res.code, res.String())
		out := res.decode(t)
		rev := int64(out["revision"].(float64))
		assert.EqualValues(t, len(goodTree), out["written"])

		got := c.snapshot(t, treeKeys()...)
		for p, doc := range goodTree {
			svc, comp, _ := strings.Cut(strings.TrimSuffix(p, ".json"), "/")
			k := got[key(svc, comp)]
			require.True(t, k.exists, p)
			assert.Equal(t, doc, k.value, p)
			assert.Equal(t, rev, k.modRev, "%s was written in the import's one revision", p)
		}
		// The audit record went in the same transaction.
		audit := c.snapshot(t, out["audit"].(string))[out["audit"].(string)]
		require.True(t, audit.exists)
		assert.Equal(t, rev, audit.modRev)
		assert.Contains(t, audit.value, `"op":"import"`)
		assert.Contains(t, audit.value, `"user":"config-operator"`)
		assert.NotContains(t, audit.value, "pw-repo", "an audit record holds no values")
	})

	t.Run("a bad file writes nothing", func(t *testing.T) {
		dir := writeTree(t, map[string]string{
			"global/clog.json":    `{"level":"warn"}`,                  // good
			"im-repo/db.json":     `{"addr":"db-9:3306","poolsize":3}`, // unknown (mis-cased) field
			"im-logic/db.json":    `{"poolSize":"ten"}`,                // wrong type
			"im-repo/admin.json":  `{"drainDelay":"-1s"}`,              // fails Validate
			"im-logic/clog.json":  `{"level":"debug"}`,                 // good, new key
			"global/cache.json":   `{"addr":"redis:6379"}`,             // unknown component
			"im-logic/admin.json": `{"drainDelay":"3s","pprof":true}`,  // good change
		})
		before := c.snapshot(t, treeKeys()...)
		audits := c.countPrefix(t, "/audit/")
		res := c.op(t, "import", "--path", dir)
		require.Equal(t, 1, res.code, res.String())

		// Every problem, each with its file and field.
		for _, want := range []string{
			filepath.Join(dir, "im-repo", "db.json") + ` (` + key("im-repo", "db") + `): field "poolsize": unknown field`,
			filepath.Join(dir, "im-logic", "db.json") + ` (` + key("im-logic", "db") + `): field "poolSize": wrong type`,
			filepath.Join(dir, "im-repo", "admin.json") + ` (` + key("im-repo", "admin") + `): field "drainDelay": must not be negative`,
			filepath.Join(dir, "global", "cache.json") + ` (` + key("global", "cache") + `): unknown component "cache"`,
			"4 problem(s) found; nothing was written",
		} {
			assert.Contains(t, res.err, want)
		}
		// Nothing was written, key by key.
		assert.Equal(t, before, c.snapshot(t, treeKeys()...))
		assert.Equal(t, audits, c.countPrefix(t, "/audit/"), "no audit record either")
	})

	t.Run("documents are checked over the ones already in etcd", func(t *testing.T) {
		// im-repo/clog in etcd gives a file path; a global output=file is
		// valid for im-repo but not for services without a document.
		res := c.op(t, "--service", "im-repo", "set", "clog", `{"file":{"path":"/var/log/repo.log"}}`)
		require.Equal(t, 0, res.code, res.String())
		before := c.snapshot(t, treeKeys()...)
		dir := writeTree(t, map[string]string{"global/clog.json": `{"output":"file"}`})
		res = c.op(t, "import", "--path", dir)
		require.Equal(t, 1, res.code, res.String())
		assert.Contains(t, res.err, `field "file.path": required when output is file (services with no document of their own run on the global layer alone)`)
		assert.NotContains(t, res.err, key("im-repo", "clog")+" over", "im-repo has its path")
		assert.Equal(t, before, c.snapshot(t, treeKeys()...))

		// A service document valid only over etcd's global one.
		dir = writeTree(t, map[string]string{"im-logic/clog.json": `{"output":"file"}`})
		res = c.op(t, "import", "--path", dir)
		require.Equal(t, 1, res.code, res.String())
		assert.Contains(t, res.err, key("im-logic", "clog")+" over "+config.GlobalKey(testEnv, "clog"))
		assert.Contains(t, res.err, `field "file.path"`)
	})

	t.Run("dry run shows the diff, secrets masked, and writes nothing", func(t *testing.T) {
		dir := writeTree(t, map[string]string{
			"im-repo/db.json":    `{"addr":"db-1:3306","password":"pw-new","poolSize":30}`,
			"im-logic/clog.json": `{"level":"warn"}`,
		})
		before := c.snapshot(t, treeKeys()...)
		res := c.op(t, "import", "--path", dir, "--dry-run")
		require.Equal(t, 0, res.code, res.String())
		assert.Contains(t, res.out, "update "+key("im-repo", "db"))
		assert.Contains(t, res.out, "poolSize: 20 → 30")
		assert.Contains(t, res.out, "password: changed (secret)")
		assert.Contains(t, res.out, "create "+key("im-logic", "clog"))
		assert.Contains(t, res.out, `+ level: "warn"`)
		assert.NotContains(t, res.out+res.err, "pw-new")
		assert.NotContains(t, res.out+res.err, "pw-repo")
		assert.Equal(t, before, c.snapshot(t, treeKeys()...))
	})

	t.Run("a write larger than one transaction is refused, never split", func(t *testing.T) {
		dir := writeTree(t, map[string]string{
			"im-repo/admin.json": `{"pprof":true}`, "im-logic/clog.json": `{"level":"warn"}`, "global/admin.json": `{}`,
		})
		before := c.snapshot(t, treeKeys()...)
		res := c.op(t, "import", "--path", dir, "--max-txn-ops", "3")
		require.Equal(t, 1, res.code, res.String())
		assert.Contains(t, res.err, "more than etcd allows in one (--max-txn-ops 3")
		assert.Contains(t, res.err, "nothing was written")
		assert.Equal(t, before, c.snapshot(t, treeKeys()...))

		// 127 documents and the audit record fill one transaction exactly.
		files := map[string]string{"global/admin.json": `{"pprof":false}`}
		for i := range 63 {
			files[fmt.Sprintf("fit-%02d/db.json", i)] = `{"poolSize":1}`
			files[fmt.Sprintf("fit-%02d/admin.json", i)] = `{}`
		}
		res = c.op(t, "import", "--path", writeTree(t, files), "--output", "json")
		require.Equal(t, 0, res.code, res.String())
		assert.EqualValues(t, 127, res.decode(t)["written"])

		// etcd's own limit (128 by default), when the flag is set above it.
		files = map[string]string{}
		for i := range 65 {
			files[fmt.Sprintf("big-%02d/db.json", i)] = `{"poolSize":1}`
			files[fmt.Sprintf("big-%02d/admin.json", i)] = `{}`
		}
		dir = writeTree(t, files)
		count := c.countPrefix(t, "/config/")
		res = c.op(t, "import", "--path", dir, "--max-txn-ops", "1000")
		require.Equal(t, 1, res.code, res.String())
		assert.Contains(t, res.err, "checked 50/130 documents", "a long import shows progress")
		assert.Contains(t, res.err, "writing 130 keys in one transaction")
		assert.Contains(t, res.err, "etcd refused the transaction: more operations than its --max-txn-ops; nothing was written")
		assert.Equal(t, count, c.countPrefix(t, "/config/"))
	})

	t.Run("export, diff and import round trip", func(t *testing.T) {
		dir := t.TempDir()
		res := c.op(t, "export", "--path", dir)
		require.Equal(t, 0, res.code, res.String())
		b, err := os.ReadFile(filepath.Join(dir, "im-repo", "db.json"))
		require.NoError(t, err)
		assert.Equal(t, goodTree["im-repo/db.json"], string(b), "exported exactly as stored")
		st, err := os.Stat(filepath.Join(dir, "im-repo", "db.json"))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

		res = c.op(t, "diff", "--path", dir)
		require.Equal(t, 0, res.code, res.String())
		assert.Contains(t, res.out, "no differences")
		res = c.op(t, "import", "--path", dir)
		require.Equal(t, 0, res.code, res.String())
		assert.Contains(t, res.out, "nothing to write")

		require.NoError(t, os.WriteFile(filepath.Join(dir, "im-repo", "db.json"), []byte(`{"addr":"db-1:3306","password":"pw-other","poolSize":21}`), 0o600))
		require.NoError(t, os.Remove(filepath.Join(dir, "im-logic", "admin.json")))
		res = c.op(t, "diff", "--path", dir)
		require.Equal(t, 0, res.code, res.String())
		assert.Contains(t, res.out, "~ "+key("im-repo", "db"))
		assert.Contains(t, res.out, "poolSize: 20 → 21")
		assert.Contains(t, res.out, "password: changed (secret)")
		assert.Contains(t, res.out, "- "+key("im-logic", "admin")+" (only in etcd)")
		assert.NotContains(t, res.out, "pw-other")

		res = c.op(t, "export", "--path", dir)
		require.Equal(t, 1, res.code, "a file that differs is not replaced without --force: %s", res)
		res = c.op(t, "export", "--path", dir, "--force")
		require.Equal(t, 0, res.code, res.String())
	})
}
