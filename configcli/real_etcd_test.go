package configcli_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/devstack"
)

// realEtcdBinary is Debian's etcd-server (3.4 on bookworm), which CI
// installs; the project did not build or start it.
const realEtcdBinary = "/usr/bin/etcd"

// startRealEtcd runs realEtcdBinary on free ports in a temp dir and kills
// it at cleanup. It skips when the binary is absent, unless
// IMINFRA_TEST_REQUIRE_REAL=1.
func startRealEtcd(t *testing.T, tlsArgs ...string) string {
	t.Helper()
	if _, err := os.Stat(realEtcdBinary); err != nil {
		if devstack.RequireReal() {
			t.Fatalf("%s is required (IMINFRA_TEST_REQUIRE_REAL=1): %v", realEtcdBinary, err)
		}
		t.Skipf("%s not installed (apt-get install etcd-server)", realEtcdBinary)
	}
	var lastErr error
	// A port picked free can be taken before etcd binds it: try again.
	for attempt := 0; attempt < 3; attempt++ {
		endpoint, err := tryStartRealEtcd(t, tlsArgs)
		if err == nil {
			return endpoint
		}
		lastErr = err
	}
	t.Fatalf("start %s: %v", realEtcdBinary, lastErr)
	return ""
}

// tryStartRealEtcd starts etcd; with tlsArgs (server certificate flags) its
// client URL is https and the readiness probe only waits for the port.
func tryStartRealEtcd(t *testing.T, tlsArgs []string) (string, error) {
	dir := t.TempDir()
	scheme := "http://"
	if len(tlsArgs) > 0 {
		scheme = "https://"
	}
	client, peer := scheme+freeAddr(t), "http://"+freeAddr(t)
	logFile, err := os.Create(filepath.Join(dir, "etcd.log"))
	require.NoError(t, err)
	cmd := exec.Command(realEtcdBinary,
		"--name", "configcli-test", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "configcli-test="+peer, "--log-level", "error")
	cmd.Args = append(cmd.Args, tlsArgs...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = logFile.Close()
	}

	raw, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer func() { _ = raw.Close() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			stop()
			log, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
			return "", fmt.Errorf("etcd exited: %v: %s", err, log)
		default:
		}
		if len(tlsArgs) > 0 {
			if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(client, scheme), time.Second); err == nil {
				_ = conn.Close()
				t.Cleanup(stop)
				return client, nil
			}
		} else if st, err := raw.Status(ctx(t, time.Second), client); err == nil {
			t.Logf("real etcd %s at %s", st.Version, client)
			t.Cleanup(stop)
			return client, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("etcd not ready in 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// The commands work against an etcd the project did not start: Debian's
// etcd 3.4 server with the 3.7 client. auth init, import (one revision),
// get (masked), history (a watch replay), rollback applied by a running
// service, and the audit records.
func TestAgainstRealEtcd(t *testing.T) {
	endpoint := startRealEtcd(t)
	c := initAuth(t, []string{endpoint}, "im-repo")
	v, _ := c.serviceValue(t, "im-repo")

	res := c.op(t, "import", "--path", writeTree(t, goodTree), "--output", "json")
	rev1 := revisionOf(t, res)
	got := c.snapshot(t, treeKeys()...)
	for p := range goodTree {
		svc, comp, _ := strings.Cut(strings.TrimSuffix(p, ".json"), "/")
		assert.Equal(t, rev1, got[key(svc, comp)].modRev, "%s in the import's one revision", p)
	}
	eventually(t, 10*time.Second, func() bool { return v.Get().PoolSize == 20 }, "imported config applied")

	res = c.op(t, "--service", "im-repo", "get", "db")
	require.Equal(t, 0, res.code, res.String())
	assert.Contains(t, res.out, `"password": "******"`)
	assert.NotContains(t, res.out, "pw-repo")

	bad := c.op(t, "import", "--path", writeTree(t, map[string]string{"im-repo/db.json": `{"poolSize":"x"}`, "im-logic/db.json": `{"poolSize":8}`}))
	require.Equal(t, 1, bad.code, bad.String())
	assert.Equal(t, got, c.snapshot(t, treeKeys()...), "a bad file writes nothing")

	res = c.op(t, "--service", "im-repo", "set", "db", `{"addr":"db-3:3306","poolSize":40}`)
	require.Equal(t, 0, res.code, res.String())
	eventually(t, 10*time.Second, func() bool { return v.Get().PoolSize == 40 }, "set applied")

	res = c.op(t, "--service", "im-repo", "history", "db", "--output", "json")
	require.Equal(t, 0, res.code, res.String())
	entries := res.decode(t)["entries"].([]any)
	require.Len(t, entries, 2, res.String())
	assert.EqualValues(t, rev1, entries[1].(map[string]any)["revision"])
	assert.Equal(t, "import", entries[1].(map[string]any)["op"])

	res = c.op(t, "--service", "im-repo", "rollback", "db", "--to-revision", itoa(rev1))
	require.Equal(t, 0, res.code, res.String())
	eventually(t, 10*time.Second, func() bool { return v.Get().PoolSize == 20 && v.Get().Addr == "db-1:3306" },
		"the running service applies the rollback")

	res = c.op(t, "audit", "--output", "json")
	require.Equal(t, 0, res.code, res.String())
	var ops []string
	for _, r := range res.decode(t)["records"].([]any) {
		ops = append(ops, r.(map[string]any)["op"].(string))
	}
	assert.Equal(t, []string{"import", "set", "rollback"}, ops)
}

// --cacert, --cert and --key reach etcd through coord: a server that
// demands client certificates answers with them, and refuses without.
func TestTLSFlagsAgainstRealEtcd(t *testing.T) {
	dir := t.TempDir()
	pki, err := devstack.WriteTestPKI(dir)
	require.NoError(t, err)
	endpoint := startRealEtcd(t, "--cert-file", pki.ServerCert, "--key-file", pki.ServerKey,
		"--trusted-ca-file", pki.CA, "--client-cert-auth")

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"mutual TLS", []string{"--cacert", pki.CA, "--cert", pki.ClientCert, "--tls-key", pki.ClientKey}, 0, "no audit records"},
		{"from the environment", nil, 0, "no audit records"},
		{"no client certificate", []string{"--cacert", pki.CA}, 3, "did not answer within 2s"},
		{"certificate without its key", []string{"--cacert", pki.CA, "--cert", pki.ClientCert}, 2,
			"on config-cli audit, --key names an etcd key; give the TLS key with --tls-key or IMINFRA_ETCD_TLS_KEY"},
		{"unreadable CA", []string{"--cacert", filepath.Join(dir, "missing.pem")}, 2, "--cacert: cannot read the CA file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.args == nil {
				t.Setenv("IMINFRA_ETCD_TLS_CA", pki.CA)
				t.Setenv("IMINFRA_ETCD_TLS_CERT", pki.ClientCert)
				t.Setenv("IMINFRA_ETCD_TLS_KEY", pki.ClientKey)
			}
			res := cli(t, "", append([]string{"--endpoints", endpoint, "--timeout", "2s", "audit"}, tc.args...)...)
			assert.Equal(t, tc.code, res.code, res.String())
			assert.Contains(t, res.out+res.err, tc.want)
			if tc.name == "mutual TLS" {
				// export has no --key of its own: there the global
				// --key is the TLS key.
				res = cli(t, "", "--endpoints", endpoint, "--env", testEnv, "export", "--path", t.TempDir(),
					"--cacert", pki.CA, "--cert", pki.ClientCert, "--key", pki.ClientKey)
				assert.Equal(t, 0, res.code, res.String())
			}
		})
	}
}
