package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestStartupErrors runs the built service with each bad input an operator
// can give it at start: it must exit non-zero within 5 s and print exactly
// one error line that names the problem, with no fx provide list, no
// repeated error and no stack trace.
func TestStartupErrors(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "service")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	refused := freeAddr(t) // nothing listens: etcd refuses connections

	base := map[string]string{
		"IMINFRA_SERVICE":            "example",
		"IMINFRA_ENV":                "dev",
		"IMINFRA_ETCD_ENDPOINTS":     "http://" + refused,
		"IMINFRA_ETCD_PROBE_TIMEOUT": "300ms",
		"IMINFRA_CONFIG_SNAPSHOT":    filepath.Join(t.TempDir(), "snap.json"),
		"IMINFRA_ADMIN_ADDR":         "127.0.0.1:0",
	}
	tests := []struct {
		name string
		env  map[string]string
		want []string // every one of these is on the error line
	}{
		{"bad service name", map[string]string{"IMINFRA_SERVICE": "Bad_Name"}, []string{`"service"`, "not a DNS label"}},
		{"unknown env", map[string]string{"IMINFRA_ENV": "qa"}, []string{`"env"`, `unknown env \"qa\"`, "IMINFRA_ENVS"}},
		{"no etcd endpoints", map[string]string{"IMINFRA_ETCD_ENDPOINTS": ""}, []string{`"endpoints"`, "IMINFRA_ETCD_ENDPOINTS"}},
		{"admin port taken", map[string]string{"IMINFRA_ADMIN_ADDR": taken.Addr().String()}, []string{`"addr"`, taken.Addr().String(), "address already in use"}},
		{"missing TLS file", map[string]string{"IMINFRA_ETCD_TLS_CA": "/no/such/ca.pem"}, []string{`"tls.caFile"`, "/no/such/ca.pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
			for k, v := range base {
				if o, ok := tt.env[k]; ok {
					v = o
				}
				env = append(env, k+"="+v)
			}
			for k, v := range tt.env {
				if _, ok := base[k]; !ok {
					env = append(env, k+"="+v)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = env
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			began := time.Now()
			err := cmd.Run()
			took := time.Since(began)
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "exits non-zero (not killed by the 5s timeout): %s", out.String())
			assert.Equal(t, 1, exit.ExitCode())
			assert.Less(t, took, 5*time.Second)

			var errorLines []string
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				if strings.Contains(line, "\tERROR\t") || strings.Contains(line, `"level":"error"`) {
					errorLines = append(errorLines, line)
				}
			}
			require.Len(t, errorLines, 1, "exactly one error line; output:\n%s", out.String())
			for _, w := range tt.want {
				assert.Contains(t, errorLines[0], w)
			}
			for _, noise := range []string{"stacktrace", "goroutine ", "[Fx]", "could not build", "received non-nil error"} {
				assert.NotContains(t, out.String(), noise)
			}
			t.Logf("%s (%s)", errorLines[0], took.Round(time.Millisecond))
		})
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}
