package configcli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gochat/im-infra/configcli"
	"github.com/gochat/im-infra/modules/clog"
)

// A service's own CLI knows its components; validate checks a directory of
// documents with them, offline. Main does the same on os.Args and exits
// with the code.
func Example() {
	dir, _ := os.MkdirTemp("", "configcli-example-")
	defer os.RemoveAll(dir)
	_ = os.MkdirAll(filepath.Join(dir, "im-repo"), 0o755)
	_ = os.WriteFile(filepath.Join(dir, "im-repo", "clog.json"), []byte(`{"level":"verbose"}`), 0o600)

	var out bytes.Buffer
	code := configcli.CLI{
		Components: []configcli.Component{configcli.ComponentOf[clog.Config]("clog")},
		Out:        &out,
		Err:        &out,
	}.Run(context.Background(), []string{"validate", "--path", dir})
	fmt.Print(strings.ReplaceAll(out.String(), dir, "DIR"))
	fmt.Println("exit code", code)
	// Output:
	//   DIR/im-repo/clog.json (/config/local/im-repo/clog): field "level": unknown level "verbose": want debug, info, warn or error
	// config-cli: validation failed
	// exit code 1
}
