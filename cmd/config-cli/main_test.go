package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/gochat/im-infra/configcli"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := configcli.CLI{Components: components, Out: &out, Err: &out}.Run(context.Background(), args)
	return code, out.String()
}

// The stock CLI's components register cleanly and check the repository's
// own dev documents.
func TestStockComponents(t *testing.T) {
	code, out := run(t, "--help")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "Known components: admin, cache, clog, db, greeter, locking, metrics, mq, registry")

	code, out = run(t, "validate", "--path", filepath.Join("..", "..", "configs", "dev"))
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "document(s) valid")
}
