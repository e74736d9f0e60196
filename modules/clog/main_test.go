package clog

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// lumberjack starts a compaction goroutine per file on first write and
	// has no way to stop it (see fileSink).
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}

// isolate restores the package state when the test ends, closing any file
// the test applied.
func isolate(t *testing.T) {
	t.Helper()
	prev := facadeHub().cur.Load()
	t.Cleanup(func() {
		_ = facadeHub().update(func(*state) (*state, error) {
			again := *prev
			return &again, nil
		})
	})
}

// fileConfig is a JSON config writing to a fresh file in t's temp dir.
func fileConfig(t *testing.T) (Config, string) {
	t.Helper()
	cfg := Config{}.Defaults()
	cfg.Output = OutputFile
	cfg.File.Path = filepath.Join(t.TempDir(), "app.log")
	return cfg, cfg.File.Path
}

// readLines decodes every JSON line of path.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "line %q", sc.Text())
		out = append(out, m)
	}
	require.NoError(t, sc.Err())
	return out
}

// messages returns the msg of every line of path.
func messages(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, l := range readLines(t, path) {
		out = append(out, l["msg"].(string))
	}
	return out
}
