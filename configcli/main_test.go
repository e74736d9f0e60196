package configcli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/configcli"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/fxinfra"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// dbConfig is a component of the usual shape, with a secret.
type dbConfig struct {
	Addr     string            `json:"addr"`
	Password config.Secret     `json:"password"`
	PoolSize int               `json:"poolSize"`
	Timeout  config.Duration   `json:"timeout"`
	Tags     map[string]string `json:"tags,omitempty"`
}

func (dbConfig) Defaults() dbConfig {
	return dbConfig{Addr: "127.0.0.1:3306", PoolSize: 10, Timeout: config.Duration(5 * time.Second)}
}

func (c dbConfig) Validate() error {
	if c.PoolSize <= 0 {
		return lifecycle.ValidationError("db", "poolSize", fmt.Sprintf("must be > 0, got %d", c.PoolSize))
	}
	if c.Addr == "" {
		return lifecycle.ValidationError("db", "addr", "must not be empty")
	}
	return nil
}

// storeConfig is a component whose defaults are not a valid config: each
// service must give its own DSN.
type storeConfig struct {
	DSN     config.Secret `json:"dsn"`
	MaxOpen int           `json:"maxOpen"`
}

func (storeConfig) Defaults() storeConfig { return storeConfig{MaxOpen: 10} }

func (c storeConfig) Validate() error {
	if c.DSN == "" {
		return lifecycle.ValidationError("store", "dsn", "required")
	}
	return nil
}

// components is what the CLI under test knows: two of im-infra's own, one
// with a secret, and one that needs a setting per service.
var components = []configcli.Component{
	configcli.ComponentOf[clog.Config]("clog"),
	configcli.ComponentOf[fxinfra.AdminConfig]("admin"),
	configcli.ComponentOf[dbConfig]("db"),
	configcli.ComponentOf[storeConfig]("store"),
}

const testEnv = "test"

// result is one run of the CLI.
type result struct {
	code     int
	out, err string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.out, r.err)
}

// decode reads the JSON document a command printed with --output json.
func (r result) decode(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.out), &m), r.String())
	return m
}

// cli runs the CLI in process with stdin.
func cli(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	return cliCtx(context.Background(), t, stdin, args...)
}

func cliCtx(ctx context.Context, t testing.TB, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := configcli.CLI{Components: components, In: strings.NewReader(stdin), Out: &out, Err: &errOut}.Run(ctx, args)
	return result{code: code, out: out.String(), err: errOut.String()}
}

// cluster is an etcd with auth on: root, the operator and one user per
// service, made by the CLI's own auth init.
type cluster struct {
	endpoints []string
	passwords map[string]string
	root      *clientv3.Client
	// operator is the operator's client, logged in once, which op runs the
	// CLI on; nil: op connects as the CLI does (real etcd, where a login
	// is cheap).
	operator *clientv3.Client
}

const rootPassword = "root-pw"

// startCluster starts an embedded etcd and runs auth init on it for
// services (each service user costs a bcrypt hash, about a second under
// -race, so a test names only those it runs).
func startCluster(t *testing.T, services ...string) *cluster {
	t.Helper()
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	require.NoError(t, err)
	t.Cleanup(e.Close)
	c := initAuth(t, e.Endpoints(), services...)
	c.operator = c.client(t, configcli.OperatorUser)
	return c
}

func initAuth(t *testing.T, endpoints []string, services ...string) *cluster {
	t.Helper()
	t.Setenv(configcli.EnvRootPassword, rootPassword)
	c := &cluster{endpoints: endpoints, passwords: map[string]string{"root": rootPassword}}
	res := cli(t, "", "auth", "init", "--endpoints", strings.Join(endpoints, ","), "--env", testEnv,
		"--services", strings.Join(services, ","), "--output", "json")
	require.Equal(t, 0, res.code, res.String())
	var out struct {
		Created []struct{ User, Password string }
	}
	require.NoError(t, json.Unmarshal([]byte(res.out), &out), res.String())
	for _, u := range out.Created {
		if u.Password != "" {
			c.passwords[u.User] = u.Password
		}
	}
	require.Contains(t, c.passwords, configcli.OperatorUser)
	c.root = c.client(t, "root")
	return c
}

// as returns the connection flags of user.
func (c *cluster) as(user string) []string {
	return []string{"--endpoints", strings.Join(c.endpoints, ","), "--user", user, "--password", c.passwords[user]}
}

// op runs the CLI as the operator in env test.
func (c *cluster) op(t testing.TB, args ...string) result {
	t.Helper()
	args = append(append(c.as(configcli.OperatorUser), "--env", testEnv), args...)
	if c.operator == nil {
		return cli(t, "", args...)
	}
	var out, errOut bytes.Buffer
	code := configcli.CLI{Components: components, Out: &out, Err: &errOut}.RunWithClient(context.Background(), c.operator, args)
	return result{code: code, out: out.String(), err: errOut.String()}
}

// client is a raw etcd client of user.
func (c *cluster) client(t testing.TB, user string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints, Username: user, Password: c.passwords[user],
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// ctx is a test context bounded by d.
func ctx(t testing.TB, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// writeTree writes files (relative path -> content) under a temp dir.
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(content), 0o600))
	}
	return dir
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: "+msg, append([]any{d}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kv is one key as etcd holds it.
type kv struct {
	value  string
	modRev int64
	exists bool
}

// snapshot reads keys (as root) one by one.
func (c *cluster) snapshot(t testing.TB, keys ...string) map[string]kv {
	t.Helper()
	root := c.root
	out := map[string]kv{}
	for _, k := range keys {
		resp, err := root.Get(ctx(t, 5*time.Second), k)
		require.NoError(t, err)
		if len(resp.Kvs) > 0 {
			out[k] = kv{value: string(resp.Kvs[0].Value), modRev: resp.Kvs[0].ModRevision, exists: true}
		} else {
			out[k] = kv{}
		}
	}
	return out
}

// countPrefix counts the keys under prefix (as root).
func (c *cluster) countPrefix(t testing.TB, prefix string) int64 {
	t.Helper()
	resp, err := c.root.Get(ctx(t, 5*time.Second), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	return resp.Count
}
